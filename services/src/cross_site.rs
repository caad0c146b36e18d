//! Requests a browser was tricked into sending: a page on another site posting to the shop
//! (cross-site request forgery, including `fetch(…, {mode: 'no-cors'})` with a `text/plain`
//! body), or a hostile name resolved to the shop's loopback address (DNS rebinding).
//!
//! Three checks, before any handler runs, in every role:
//! - a request that changes something and carries a body must say `Content-Type:
//!   application/json` (UTF-8): else 415, nothing appended. A browser cannot send that type
//!   across sites without asking first (a CORS preflight, which the shop never grants).
//! - a request that changes something from a browser `Origin` other than the shop's own (the
//!   origin whose authority is the request's `Host`) or one of `ORDERSHOP_ALLOWED_ORIGINS` is
//!   refused with 403.
//! - a role that listens on a loopback address answers only requests addressed to it by a
//!   loopback name or an IP address (`localhost`, `127.0.0.1`, `[::1]`), or by a name listed in
//!   `ORDERSHOP_ALLOWED_HOSTS`: else 403. A rebinding page's requests name its own host.

use crate::auth::is_mutating;
use crate::error::ApiError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use std::sync::Arc;

/// What the checks accept beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossSite {
    /// `ORDERSHOP_ALLOWED_ORIGINS`: origins (`https://admin.example.com`) that may send
    /// commands besides the shop's own.
    pub allowed_origins: Vec<String>,
    /// `ORDERSHOP_ALLOWED_HOSTS`: host names a loopback role answers to besides loopback ones.
    pub allowed_hosts: Vec<String>,
    /// Whether the role listens on a loopback address (only then is `Host` checked).
    pub loopback_only: bool,
}

impl CrossSite {
    /// Why the request is refused, if it is.
    pub fn check(
        &self,
        mutating: bool,
        host: Option<&str>,
        origin: Option<&str>,
        has_body: bool,
        content_type: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.loopback_only {
            if let Some(host) = host {
                if !self.host_allowed(host) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden_host",
                        format!(
                            "this shop listens on a loopback address and answers only requests \
                             addressed to localhost or an IP address, not to `{host}` (add it to \
                             ORDERSHOP_ALLOWED_HOSTS to allow it)"
                        ),
                    ));
                }
            }
        }
        if !mutating {
            return Ok(());
        }
        if let Some(origin) = origin {
            if !self.origin_allowed(origin, host) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    format!(
                        "requests that change data are not accepted from the browser origin \
                         `{origin}` (add it to ORDERSHOP_ALLOWED_ORIGINS to allow it)"
                    ),
                ));
            }
        }
        if has_body && !is_json(content_type) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "the body must be JSON sent as `Content-Type: application/json`, not {}",
                    content_type
                        .map_or_else(|| "without a content type".to_owned(), |t| format!("`{t}`"))
                ),
            ));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name == "localhost"
            || name.ends_with(".localhost")
            || name.parse::<std::net::IpAddr>().is_ok()
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&name))
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/');
        let same = origin
            .split_once("://")
            .is_some_and(|(_, authority)| host.is_some_and(|h| authority.eq_ignore_ascii_case(h)));
        same || self
            .allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// The host name of a `Host` header value, without its port (`[::1]:5000` → `::1`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// `application/json`, with no charset or a UTF-8 one.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

/// Middleware: refuses what [`CrossSite::check`] refuses.
pub async fn guard(
    rules: Arc<CrossSite>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let headers = req.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || text(header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let verdict = rules.check(
        is_mutating(req.method()),
        text(header::HOST),
        text(header::ORIGIN),
        has_body,
        text(header::CONTENT_TYPE),
    );
    if let Err(e) = verdict {
        let response = e.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> CrossSite {
        CrossSite {
            loopback_only: true,
            ..CrossSite::default()
        }
    }

    fn status(result: Result<(), ApiError>) -> u16 {
        result.map_or_else(|e| e.status.as_u16(), |()| 200)
    }

    #[test]
    fn commands_need_a_json_body() {
        let rules = CrossSite::default();
        let json = Some("application/json");
        assert_eq!(status(rules.check(true, None, None, true, json)), 200);
        for ok in [
            "application/json; charset=utf-8",
            "Application/JSON;charset=\"UTF-8\"",
        ] {
            assert_eq!(
                status(rules.check(true, None, None, true, Some(ok))),
                200,
                "{ok}"
            );
        }
        for bad in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/json; charset=latin1"),
            Some("application/jsonx"),
            None,
        ] {
            assert_eq!(
                status(rules.check(true, None, None, true, bad)),
                415,
                "{bad:?}"
            );
        }
        // No body (a DELETE, an action): no type needed; reads are not checked.
        assert_eq!(status(rules.check(true, None, None, false, None)), 200);
        assert_eq!(
            status(rules.check(false, None, None, true, Some("text/plain"))),
            200
        );
    }

    #[test]
    fn a_foreign_origin_cannot_change_anything() {
        let mut rules = loopback();
        let host = Some("localhost:5000");
        let json = Some("application/json");
        assert_eq!(
            status(rules.check(true, host, Some("http://localhost:5000"), true, json)),
            200
        );
        for foreign in ["http://evil.example", "null", "http://localhost:5001"] {
            assert_eq!(
                status(rules.check(true, host, Some(foreign), true, json)),
                403,
                "{foreign}"
            );
        }
        // Reads from anywhere (the feed and the lists are guarded by the token, if set).
        assert_eq!(
            status(rules.check(false, host, Some("http://evil.example"), false, None)),
            200
        );
        rules
            .allowed_origins
            .push("https://admin.example.com/".into());
        assert_eq!(
            status(rules.check(true, host, Some("https://admin.example.com"), true, json)),
            200
        );
    }

    #[test]
    fn a_loopback_shop_answers_only_loopback_names() {
        let mut rules = loopback();
        for ok in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "shop.localhost",
            "10.1.2.3",
        ] {
            assert_eq!(
                status(rules.check(false, Some(ok), None, false, None)),
                200,
                "{ok}"
            );
        }
        assert_eq!(
            status(rules.check(false, Some("rebind.evil.example:5000"), None, false, None)),
            403
        );
        rules.allowed_hosts.push("shop.internal".into());
        assert_eq!(
            status(rules.check(false, Some("shop.internal:5000"), None, false, None)),
            200
        );
        // Not on loopback: any name (behind a proxy, in docker-compose).
        let open = CrossSite::default();
        assert_eq!(
            status(open.check(false, Some("gateway:5000"), None, false, None)),
            200
        );
    }
}
