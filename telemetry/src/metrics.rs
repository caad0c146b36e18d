//! The shop's Prometheus metrics: one [`Metrics`] per process, created by the binary and handed
//! (as an `Arc`) to every HTTP role and every projection worker it runs, which all serve the same
//! registry on `GET /metrics`.
//!
//! It lives in its own crate so that `services` and `projections` both record into it
//! without depending on each other. No global registry: whoever needs it is given it. Labels are
//! bounded: routes are recorded by their template (`/order/{id}`), never by the raw path.
//!
//! Gauges that need Redis (pending, lag) are refreshed by the projection runner in the
//! background; encoding never touches the network.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub role: &'static str,
    /// The matched route template, or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// Labels of `http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub role: &'static str,
    pub route: String,
    pub method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConflictLabels {
    /// `version` (an entity changed under the command) or `unique` (a unique value was taken).
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: &'static str,
}

/// Latency buckets: 0.5 ms to about 8 s, doubling.
#[derive(Clone)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0005, 2.0, 15))
    }
}

/// Every metric the shop records, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, LatencyBuckets>,
    events_appended: Family<StreamLabels, Counter>,
    append_conflicts: Family<ConflictLabels, Counter>,
    command_attempts: Histogram,
    projection_applied: Family<ProjectionLabels, Counter>,
    projection_pending: Family<ProjectionLabels, Gauge>,
    projection_lag: Family<ProjectionLabels, Gauge>,
    projection_down: Family<ProjectionLabels, Gauge>,
    projection_dead_lettered: Family<ProjectionLabels, Counter>,
    dead_letters: [Family<ProjectionLabels, Gauge>; 3],
    last_error_time: Family<ProjectionLabels, Gauge>,
    messages_delivered: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by role, route template, method and status",
            http_requests.clone(),
        );
        let http_duration = Family::new_with_constructor(LatencyBuckets);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by role, route template and method",
            http_duration.clone(),
        );
        let events_appended = Family::<StreamLabels, Counter>::default();
        registry.register(
            "events_appended",
            "Events appended to the log by this process, by stream",
            events_appended.clone(),
        );
        let append_conflicts = Family::<ConflictLabels, Counter>::default();
        registry.register(
            "append_conflicts",
            "Guarded appends refused because what the command read had changed, by kind",
            append_conflicts.clone(),
        );
        // 1, 2, 4, ... 128 attempts.
        let command_attempts = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        registry.register(
            "command_attempts",
            "Read-decide-append attempts a command needed (1: no conflict), including those \
             that gave up; orders committed together in one append count once per group",
            command_attempts.clone(),
        );
        let projection_applied = Family::<ProjectionLabels, Counter>::default();
        registry.register(
            "projection_events_applied",
            "Events that changed a projection's state (redeliveries not counted)",
            projection_applied.clone(),
        );
        let projection_pending = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_pending",
            "Entries delivered to a projection's group and not acknowledged yet",
            projection_pending.clone(),
        );
        let projection_lag = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_lag",
            "Entries not yet delivered to a projection's group",
            projection_lag.clone(),
        );
        let projection_down = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_down",
            "1 when no consumer of the projection has sent a heartbeat for three intervals",
            projection_down.clone(),
        );
        let projection_dead_lettered = Family::<ProjectionLabels, Counter>::default();
        registry.register(
            "projection_dead_lettered",
            "Entries this process moved to a projection's dead-letter stream",
            projection_dead_lettered.clone(),
        );
        let dead_letters = [
            (
                "projection_dead_letters",
                "Entries parked in a projection's dead-letter stream now",
            ),
            (
                "projection_dead_letters_retried",
                "Parked entries an operator retried and the projection then applied (all hosts)",
            ),
            (
                "projection_dead_letters_discarded",
                "Parked entries an operator discarded (all hosts)",
            ),
        ]
        .map(|(name, help)| {
            let family = Family::<ProjectionLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        });
        let last_error_time = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_last_error_time_seconds",
            "When a projection last failed (unix seconds; 0: never), from any host",
            last_error_time.clone(),
        );
        let messages_delivered = Counter::default();
        registry.register(
            "messages_delivered",
            "Messages the message service delivered (each message id once)",
            messages_delivered.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            events_appended,
            append_conflicts,
            command_attempts,
            projection_applied,
            projection_pending,
            projection_lag,
            projection_down,
            projection_dead_lettered,
            dead_letters,
            last_error_time,
            messages_delivered,
        }
    }

    /// One answered request. `route` is the matched template (`None`: no route matched).
    pub fn http_request(
        &self,
        role: &'static str,
        route: Option<String>,
        method: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let route = route.unwrap_or_else(|| "unmatched".to_owned());
        let method = method.to_owned();
        self.http_duration
            .get_or_create(&RouteLabels {
                role,
                route: route.clone(),
                method: method.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.http_requests
            .get_or_create(&HttpLabels {
                role,
                route,
                method,
                status,
            })
            .inc();
    }

    pub fn event_appended(&self, stream: String) {
        self.events_appended
            .get_or_create(&StreamLabels { stream })
            .inc();
    }

    pub fn append_conflict(&self, kind: &'static str) {
        self.append_conflicts
            .get_or_create(&ConflictLabels { kind })
            .inc();
    }

    /// A command (or a group of orders committed together) is done, or gave up, after
    /// `attempts` read-decide-append rounds.
    pub fn command_attempts(&self, attempts: u32) {
        self.command_attempts.observe(f64::from(attempts));
    }

    pub fn events_applied(&self, projection: &'static str, count: u64) {
        self.projection_applied
            .get_or_create(&ProjectionLabels { projection })
            .inc_by(count);
    }

    pub fn dead_lettered(&self, projection: &'static str, count: u64) {
        self.projection_dead_lettered
            .get_or_create(&ProjectionLabels { projection })
            .inc_by(count);
    }

    /// The group's pending and lag, as last read from Redis.
    pub fn projection_backlog(&self, projection: &'static str, pending: u64, lag: u64) {
        let labels = ProjectionLabels { projection };
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.projection_pending
            .get_or_create(&labels)
            .set(as_gauge(pending));
        self.projection_lag
            .get_or_create(&labels)
            .set(as_gauge(lag));
    }

    /// Whether a projection is down (no consumer's heartbeat for three intervals).
    pub fn projection_down(&self, projection: &'static str, down: bool) {
        self.projection_down
            .get_or_create(&ProjectionLabels { projection })
            .set(i64::from(down));
    }

    /// A group's dead letters, as last read from Redis: parked now, retried, discarded.
    pub fn projection_dead_letters(&self, projection: &'static str, counts: [u64; 3]) {
        let labels = ProjectionLabels { projection };
        for (family, n) in self.dead_letters.iter().zip(counts) {
            family
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// When the group last failed, in unix seconds (0: never), as last read from Redis.
    pub fn projection_last_error(&self, projection: &'static str, unix_seconds: u64) {
        self.last_error_time
            .get_or_create(&ProjectionLabels { projection })
            .set(i64::try_from(unix_seconds).unwrap_or(i64::MAX));
    }

    pub fn messages_delivered(&self, count: u64) {
        self.messages_delivered.inc_by(count);
    }

    /// The registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_encoded_with_its_labels() {
        let metrics = Metrics::new();
        metrics.http_request(
            "gateway",
            Some("/order/{id}".into()),
            "GET",
            200,
            Duration::from_millis(3),
        );
        metrics.http_request("gateway", None, "GET", 404, Duration::from_millis(1));
        metrics.event_appended("events:order_created".into());
        metrics.append_conflict("version");
        metrics.command_attempts(1);
        metrics.command_attempts(3);
        metrics.events_applied("crm", 2);
        metrics.dead_lettered("crm", 1);
        metrics.projection_backlog("crm", 3, 4);
        metrics.messages_delivered(5);
        let text = metrics.encode().unwrap();
        for line in [
            r#"http_requests_total{role="gateway",route="/order/{id}",method="GET",status="200"} 1"#,
            r#"http_requests_total{role="gateway",route="unmatched",method="GET",status="404"} 1"#,
            r#"http_request_duration_seconds_count{role="gateway",route="/order/{id}",method="GET"} 1"#,
            r#"events_appended_total{stream="events:order_created"} 1"#,
            r#"append_conflicts_total{kind="version"} 1"#,
            r#"command_attempts_count 2"#,
            r#"command_attempts_bucket{le="2.0"} 1"#,
            r#"projection_events_applied_total{projection="crm"} 2"#,
            r#"projection_dead_lettered_total{projection="crm"} 1"#,
            r#"projection_pending{projection="crm"} 3"#,
            r#"projection_lag{projection="crm"} 4"#,
            "messages_delivered_total 5",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
