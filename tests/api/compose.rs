//! docker-compose.yml, checked statically (no Docker engine runs here): every role is present,
//! runs the right subcommand on its port, shares one environment (written once, merged into each
//! service) with a stable consumer name of its own, is health-checked by `ordershop health`, gets
//! longer than the HTTP drain to stop, and Redis is pinned and persistent; the `ha` profile adds
//! two replicas and three sentinels, which ha.env's URL names. CI also runs Compose v2's own
//! `config -q` on the file, with and without ha.env (.ci/run).

use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const ROLES: [(&str, u16); 9] = [
    ("gateway", 5000),
    ("customer-service", 5001),
    ("product-service", 5002),
    ("inventory-service", 5003),
    ("order-service", 5004),
    ("billing-service", 5005),
    ("msg-service", 5006),
    ("crm-service", 5007),
    ("entity-cache", 5008),
];

/// The variables every role reads, the same in each; a role adds only these two of its own.
const SHARED_ENV: [&str; 12] = [
    "REDIS_URL",
    "ORDERSHOP_ACK_REPLICAS",
    "ORDERSHOP_NAMESPACE",
    "CUSTOMER_SERVICE_URL",
    "PRODUCT_SERVICE_URL",
    "INVENTORY_SERVICE_URL",
    "ORDER_SERVICE_URL",
    "BILLING_SERVICE_URL",
    "MSG_SERVICE_URL",
    "CRM_SERVICE_URL",
    "ENTITY_CACHE_URL",
    "RUST_LOG",
];
const OWN_ENV: [&str; 2] = ["ORDERSHOP_LISTEN", "ORDERSHOP_CONSUMER"];

/// The roles whose port is published on the host: the shop's front door and the mail sink
/// (`curl localhost:5006/emails`, as the README shows).
const PUBLISHED: [&str; 2] = ["gateway", "msg-service"];

/// actix-web's graceful shutdown waits up to 30 s for requests in flight; Compose must wait
/// longer than that before it kills a role.
const HTTP_DRAIN: Duration = Duration::from_secs(30);

fn compose_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml");
    std::fs::read_to_string(path).expect("docker-compose.yml exists")
}

/// The file as Compose sees it: anchors expanded (the parser does that) and `<<` merge keys
/// resolved (serde_norway leaves them as plain `<<` keys until `apply_merge`).
fn compose() -> Value {
    let mut value: Value =
        serde_norway::from_str(&compose_text()).expect("docker-compose.yml is valid YAML");
    value
        .apply_merge()
        .expect("docker-compose.yml's merge keys resolve");
    value
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env_of(service: &Value) -> BTreeMap<String, String> {
    env_map(&service["environment"])
}

fn env_map(env: &Value) -> BTreeMap<String, String> {
    env.as_mapping()
        .expect("environment is a mapping")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("unexpected env value {other:?}"),
            };
            (k.as_str().unwrap_or_default().to_owned(), value)
        })
        .collect()
}

/// A Compose duration: `40s`, `1m30s`, `1500ms`, `1h`; None if it is not one.
fn duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" => 1e-6,
            _ => return None,
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = tail;
    }
    Some(total)
}

#[test]
fn durations_parse_as_compose_writes_them() {
    assert_eq!(duration("40s"), Some(Duration::from_secs(40)));
    assert_eq!(duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(duration("1500ms"), Some(Duration::from_millis(1500)));
    assert_eq!(duration("40"), None, "Compose needs a unit");
    assert_eq!(duration("40 seconds"), None);
    assert_eq!(duration(""), None);
}

#[test]
fn every_role_runs_its_subcommand_on_its_port() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let everywhere = services
        .values()
        .filter(|s| strings(&s["profiles"]).is_empty())
        .count();
    assert_eq!(
        everywhere,
        ROLES.len() + 1,
        "redis plus the nine roles (the rest is the ha profile's)"
    );
    for (role, port) in ROLES {
        let service = &compose["services"][role];
        assert!(service.is_mapping(), "service {role} is missing");
        assert_eq!(
            strings(&service["command"]),
            vec!["serve", role],
            "{role}'s command"
        );
        assert_eq!(
            service["image"].as_str(),
            Some("ordershop:latest"),
            "{role} uses the one image"
        );
        assert!(
            !service["build"].is_null(),
            "{role} builds the image (`docker compose up --build`)"
        );
        let env = env_of(service);
        assert_eq!(
            env["ORDERSHOP_LISTEN"],
            format!("0.0.0.0:{port}"),
            "{role} listens on its port"
        );
        assert_eq!(
            service["depends_on"]["redis"]["condition"].as_str(),
            Some("service_healthy"),
            "{role} waits for a healthy redis"
        );
        let ports = strings(&service["ports"]);
        if PUBLISHED.contains(&role) {
            assert_eq!(
                ports,
                vec![format!("{port}:{port}")],
                "{role} is published on its own port"
            );
        } else {
            assert!(
                service["ports"].is_null(),
                "{role} is not published: {ports:?}"
            );
        }
    }
    assert!(
        compose["services"]["redis"]["ports"].is_null(),
        "redis is not published"
    );
}

#[test]
fn every_role_sees_the_same_redis_and_peers() {
    let compose = compose();
    let shared = env_map(&compose["x-ordershop-env"]);
    assert_eq!(
        shared.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(SHARED_ENV),
        "x-ordershop-env holds the shared environment"
    );
    assert_eq!(
        shared["REDIS_URL"], "${ORDERSHOP_REDIS_URL:-redis://redis:6379}",
        "the `redis` service, unless ha.env names the sentinels"
    );
    assert_eq!(
        shared["ORDERSHOP_ACK_REPLICAS"],
        "${ORDERSHOP_ACK_REPLICAS:-0}"
    );
    for (role, port) in ROLES {
        let var = format!("{}_URL", role.to_uppercase().replace('-', "_"));
        if role != "gateway" {
            assert_eq!(
                shared.get(&var).map(String::as_str),
                Some(format!("http://{role}:{port}").as_str()),
                "{var} points at the {role} service on its port"
            );
        }
        let mut env = env_of(&compose["services"][role]);
        for own in OWN_ENV {
            assert!(env.remove(own).is_some(), "{role} sets {own}");
        }
        assert_eq!(
            env, shared,
            "{role} has the shared environment and nothing else"
        );
    }
    // Written once and merged, not copied into each service: the copies drift.
    let text = compose_text();
    for var in SHARED_ENV {
        let definitions = text
            .lines()
            .filter(|line| line.trim_start().starts_with(&format!("{var}:")))
            .count();
        assert_eq!(definitions, 1, "{var} is defined once in the file");
    }
}

#[test]
fn every_role_keeps_its_consumer_name_across_recreation() {
    // A container's default hostname is its id, new on every recreation: the default consumer
    // name would change with it and strand the old container's pending entries.
    let compose = compose();
    let mut names = BTreeSet::new();
    for (role, _) in ROLES {
        let env = env_of(&compose["services"][role]);
        let consumer = env
            .get("ORDERSHOP_CONSUMER")
            .unwrap_or_else(|| panic!("{role} sets ORDERSHOP_CONSUMER"));
        assert_eq!(consumer, role, "{role}'s consumer is named after the role");
        assert!(names.insert(consumer.clone()), "{consumer} is used twice");
    }
}

#[test]
fn roles_are_health_checked_by_the_binary_and_started_in_order() {
    let compose = compose();
    for (role, _) in ROLES {
        let service = &compose["services"][role];
        assert_eq!(
            strings(&service["healthcheck"]["test"]),
            vec!["CMD", "ordershop", "health"],
            "{role}'s healthcheck is `ordershop health` (no curl in the image)"
        );
        for key in ["interval", "timeout"] {
            let value = service["healthcheck"][key].as_str().unwrap_or_default();
            assert!(
                duration(value).is_some(),
                "{role}'s healthcheck {key} is a duration: {value:?}"
            );
        }
    }
    for dependency in [
        "redis",
        "customer-service",
        "product-service",
        "inventory-service",
        "order-service",
        "billing-service",
        "entity-cache",
    ] {
        assert_eq!(
            compose["services"]["gateway"]["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "the gateway waits for a healthy {dependency}"
        );
    }
}

#[test]
fn roles_get_longer_to_stop_than_the_http_drain() {
    let compose = compose();
    for (role, _) in ROLES {
        let service = &compose["services"][role];
        let grace = service["stop_grace_period"].as_str().unwrap_or_default();
        let grace =
            duration(grace).unwrap_or_else(|| panic!("{role} sets stop_grace_period: {grace:?}"));
        assert!(
            grace >= HTTP_DRAIN + Duration::from_secs(5),
            "{role}'s stop_grace_period {grace:?} outlasts the {HTTP_DRAIN:?} HTTP drain"
        );
        assert_eq!(
            service["restart"].as_str(),
            Some("unless-stopped"),
            "{role} restarts"
        );
    }
}

#[test]
fn redis_is_pinned_and_persistent() {
    let compose = compose();
    let redis = &compose["services"]["redis"];
    let image = redis["image"].as_str().unwrap_or_default();
    let tag = image
        .strip_prefix("redis:")
        .unwrap_or_else(|| panic!("redis runs the redis image: {image}"));
    let version = tag
        .split_once('-')
        .map_or(tag, |(version, _variant)| version);
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("redis tag {tag}")))
        .collect();
    assert_eq!(parts.len(), 3, "redis is pinned to an exact x.y.z: {image}");
    assert!(
        parts[0] >= 7,
        "the event store loads Redis Functions (Redis 7+): {image}"
    );

    let command = strings(&redis["command"]).join(" ");
    assert!(command.contains("--appendonly yes"), "AOF on: {command}");
    let volumes = strings(&redis["volumes"]);
    let data = volumes
        .iter()
        .find(|v| v.ends_with(":/data"))
        .unwrap_or_else(|| panic!("data on a volume: {volumes:?}"));
    let volume = data.split(':').next().unwrap_or_default();
    assert!(
        compose["volumes"]
            .as_mapping()
            .is_some_and(|m| m.contains_key(volume)),
        "volume {volume} is declared"
    );
    assert_eq!(
        strings(&redis["healthcheck"]["test"]),
        vec!["CMD", "redis-cli", "ping"],
        "redis has a healthcheck"
    );
}

#[test]
fn the_image_runs_the_binary_the_healthcheck_calls() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");
    let dockerfile = std::fs::read_to_string(path).expect("Dockerfile exists");
    let runtime: Vec<&str> = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, last)| last)
        .expect("a multi-stage Dockerfile")
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for line in [
        "COPY --from=build /usr/local/bin/ordershop /usr/local/bin/ordershop",
        "USER nobody",
        "ENTRYPOINT [\"ordershop\"]",
    ] {
        assert!(runtime.contains(&line), "the runtime stage has `{line}`");
    }
    assert!(
        !runtime.iter().any(|l| l.contains("curl")),
        "the runtime image needs no curl"
    );
}

/// `KEY=value` lines of ha.env.
fn ha_env() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ha.env");
    std::fs::read_to_string(path)
        .expect("ha.env exists")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_ha_profile_is_a_primary_two_replicas_and_three_sentinels_the_roles_find() {
    let compose = compose();
    let services = &compose["services"];
    let profiles = |name: &str| strings(&services[name]["profiles"]);
    assert!(profiles("redis").is_empty(), "`redis` runs in every setup");
    for replica in ["redis-replica-1", "redis-replica-2"] {
        assert_eq!(
            profiles(replica),
            vec!["ha"],
            "{replica} is in the ha profile"
        );
        let command = strings(&services[replica]["command"]).join(" ");
        for part in [
            "--replicaof redis 6379",
            "--appendonly yes",
            "--appendfsync always",
            &format!("--replica-announce-ip {replica}"),
        ] {
            assert!(command.contains(part), "{replica}: {command}");
        }
    }
    let env = ha_env();
    assert_eq!(env.get("COMPOSE_PROFILES").map(String::as_str), Some("ha"));
    assert_eq!(
        env.get("ORDERSHOP_ACK_REPLICAS").map(String::as_str),
        Some("1")
    );
    let url = &env["ORDERSHOP_REDIS_URL"];
    let config = ordershop_redis::RedisConfig::new(url.clone()).expect("a valid URL");
    assert!(config.uses_sentinel(), "{url}");
    let (hosts, primary) = url
        .trim_start_matches("redis+sentinel://")
        .split_once('/')
        .expect("sentinels/primary");
    let sentinels: Vec<&str> = hosts.split(',').collect();
    assert_eq!(
        sentinels,
        ["sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"]
    );
    for sentinel in &sentinels {
        let name = sentinel.trim_end_matches(":26379");
        assert_eq!(profiles(name), vec!["ha"], "{name} is in the ha profile");
        let script = strings(&services[name]["command"]).join(" ");
        assert!(
            script.contains(&format!("sentinel monitor {primary} redis 6379 2")),
            "{name} watches `redis` as {primary} with a quorum of 2: {script}"
        );
        assert!(script.contains("--sentinel"), "{script}");
    }
}
