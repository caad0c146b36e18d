//! Connecting to Redis: typed configuration from `REDIS_URL`, with the password kept out of
//! `Debug` output and logs.

use std::fmt;
use std::time::Duration;

/// Default URL when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Where and how to reach Redis.
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    /// How long a reply may take before the call fails (redis-rs's default is 500 ms).
    pub response_timeout: Duration,
    /// How long establishing a connection may take.
    pub connection_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    #[error("REDIS_URL `{url}` is not a valid Redis URL: {reason}")]
    Invalid { url: String, reason: String },
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Result<Self, RedisConfigError> {
        let url = url.into();
        let redacted = redact(&url);
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("unix://"))
        {
            return Err(RedisConfigError::Invalid {
                url: redacted,
                reason: "expected redis://, rediss:// or unix://".into(),
            });
        }
        redis::Client::open(url.as_str()).map_err(|e| RedisConfigError::Invalid {
            url: redacted,
            reason: e.to_string(),
        })?;
        Ok(Self {
            url,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(2),
        })
    }

    /// The URL with any password replaced by `***`, fit for logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    pub fn client(&self) -> Result<redis::Client, redis::RedisError> {
        redis::Client::open(self.url.as_str())
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// Hides the password of a `scheme://user:password@host` URL.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_debug_output() {
        let config = RedisConfig::new("redis://shop:s3cret@127.0.0.1:6380/0").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("shop:***@127.0.0.1:6380"), "{debug}");
        assert_eq!(redact("redis://:pw@host:1"), "redis://:***@host:1");
        assert_eq!(redact("redis://host:1"), "redis://host:1");
    }

    #[test]
    fn unsupported_urls_are_rejected_with_the_reason() {
        let err = RedisConfig::new("http://127.0.0.1:6379").unwrap_err();
        assert!(err.to_string().contains("redis://"), "{err}");
    }
}
