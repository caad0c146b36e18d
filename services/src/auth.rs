//! The optional API token (`ORDERSHOP_API_TOKEN`): when it is set, every mutating request
//! (any method but GET, HEAD and OPTIONS) must carry `Authorization: Bearer <token>`, or it is
//! answered 401 before any handler runs. Reads, `/health`, `/metrics`, `/openapi.json` and
//! `/docs` stay open.
//!
//! Every role checks it, not only the gateway: a client that reaches a domain service directly
//! cannot bypass it. The gateway sends its own copy of the token to the services it forwards to
//! (`gateway::forward`), so all roles of one shop must be given the same token.
//!
//! The comparison is constant-time in the token's content (`subtle::ConstantTimeEq` over the
//! bytes); only whether the lengths are equal can show in the timing. The header is never
//! logged: the request log line carries method, path, route and status only, and the value the
//! gateway sends is marked sensitive.

use crate::config::ApiToken;
use crate::error::ApiError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use subtle::ConstantTimeEq;

/// True for the methods that may change something.
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether an `Authorization` header value presents `expected`: the `Bearer` scheme (any case),
/// then the token, compared in constant time.
pub fn authorizes(expected: &ApiToken, authorization: Option<&[u8]>) -> Result<(), ApiError> {
    let Some(value) = authorization else {
        return Err(ApiError::unauthorized(
            "this shop requires `Authorization: Bearer <token>` on requests that change data",
        ));
    };
    let presented = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
        _ => {
            return Err(ApiError::unauthorized(
                "the Authorization header must use the Bearer scheme",
            ))
        }
    };
    if bool::from(expected.expose().as_bytes().ct_eq(presented)) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("the bearer token is not valid"))
    }
}

/// Middleware: answers 401 to a mutating request without the right token, when one is set.
pub async fn require_token(
    token: Option<ApiToken>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(expected) = &token {
        if is_mutating(req.method()) {
            let authorization = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if let Err(e) = authorizes(expected, authorization) {
                let response = e.error_response();
                return Ok(req.into_response(response).map_into_right_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = ApiToken::new("s3cret-token");
        assert!(authorizes(&token, Some(b"Bearer s3cret-token")).is_ok());
        assert!(authorizes(&token, Some(b"bearer s3cret-token")).is_ok());
        for wrong in [
            &b"Bearer s3cret-tokeN"[..],
            b"Bearer s3cret-token2",
            b"Bearer ",
            b"Basic s3cret-token",
            b"s3cret-token",
            b"",
        ] {
            let err = authorizes(&token, Some(wrong)).unwrap_err();
            assert_eq!(err.status.as_u16(), 401, "{wrong:?}");
            assert!(!err.detail.contains("s3cret"), "{}", err.detail);
        }
        assert_eq!(authorizes(&token, None).unwrap_err().code, "unauthorized");
    }

    #[test]
    fn reads_stay_open() {
        assert!(!is_mutating(&Method::GET));
        assert!(!is_mutating(&Method::HEAD));
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(is_mutating(&method));
        }
    }
}
