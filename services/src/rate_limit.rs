//! Optional rate limiting per client address (`ORDERSHOP_RATE_LIMIT=<requests per second>`,
//! off by default): a token bucket per address, as deep as two seconds' worth of requests.
//! Beyond it a request is answered `429` with `Retry-After` before any handler runs, so one
//! client (a script in a loop, a console left open on a huge shop) cannot take the shop from
//! the others. `/health` and `/metrics` are never limited (probes and scrapers must see the
//! shop).

use crate::error::ApiError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Addresses kept before the idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        RateLimit {
            per_second,
            burst: per_second * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`, or says how long until one is free.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            // A full bucket and an absent one are the same: forget the full ones.
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

/// Middleware: answers 429 to a client over its rate, when a limit is set.
pub async fn limit(
    rate: Option<Arc<RateLimit>>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(rate) = &rate {
        let exempt = matches!(req.path(), crate::routes::HEALTH | crate::routes::METRICS);
        if let (false, Some(peer)) = (exempt, req.peer_addr()) {
            if let Err(wait) = rate.take(peer.ip(), Instant::now()) {
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "this client sends more requests than ORDERSHOP_RATE_LIMIT allows; slow down",
                )
                .error_response();
                let seconds = wait.as_secs() + 1;
                if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
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
    fn a_client_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let rate = RateLimit::new(5);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(rate.take(a, t0).is_ok());
        }
        let wait = rate.take(a, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert!(
            rate.take(b, t0).is_ok(),
            "another client has its own bucket"
        );
        // A fifth of a second later, one more.
        assert!(rate.take(a, t0 + Duration::from_millis(200)).is_ok());
        assert!(rate.take(a, t0 + Duration::from_millis(200)).is_err());
    }
}
