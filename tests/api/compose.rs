//! docker-compose.yml, checked statically (no Docker engine runs here): every role is present,
//! runs the right subcommand, is wired with consistent environment, and Redis is persistent.

use serde_norway::Value;
use std::collections::BTreeMap;

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

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml exists");
    serde_norway::from_str(&text).expect("docker-compose.yml is valid YAML")
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
    service["environment"]
        .as_mapping()
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

#[test]
fn every_role_runs_its_subcommand_on_its_port() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    assert_eq!(services.len(), ROLES.len() + 1, "redis plus the nine roles");
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
        let env = env_of(service);
        assert_eq!(
            env["ORDERSHOP_LISTEN"],
            format!("0.0.0.0:{port}"),
            "{role} listens on its port"
        );
        let health = strings(&service["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains(&format!(":{port}/health")),
            "{role}'s healthcheck: {health}"
        );
        assert_eq!(
            service["depends_on"]["redis"]["condition"].as_str(),
            Some("service_healthy"),
            "{role} waits for a healthy redis"
        );
    }
    let ports = strings(&compose["services"]["gateway"]["ports"]);
    assert_eq!(ports, vec!["5000:5000"], "only the gateway is published");
}

#[test]
fn every_role_sees_the_same_redis_and_peers() {
    let compose = compose();
    let reference = env_of(&compose["services"]["gateway"]);
    assert_eq!(reference["REDIS_URL"], "redis://redis:6379");
    for (role, port) in ROLES {
        let var = format!("{}_URL", role.to_uppercase().replace('-', "_"));
        if role != "gateway" {
            assert_eq!(
                reference.get(&var).map(String::as_str),
                Some(format!("http://{role}:{port}").as_str()),
                "{var} points at the {role} service on its port"
            );
        }
        let mut env = env_of(&compose["services"][role]);
        let mut expected = reference.clone();
        env.remove("ORDERSHOP_LISTEN");
        expected.remove("ORDERSHOP_LISTEN");
        assert_eq!(
            env, expected,
            "{role} has the same environment as the gateway"
        );
    }
    for dependency in [
        "customer-service",
        "product-service",
        "inventory-service",
        "order-service",
        "billing-service",
    ] {
        assert_eq!(
            compose["services"]["gateway"]["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "the gateway waits for {dependency}"
        );
    }
}

#[test]
fn redis_is_persistent() {
    let compose = compose();
    let redis = &compose["services"]["redis"];
    let command = strings(&redis["command"]).join(" ");
    assert!(command.contains("--appendonly yes"), "AOF on: {command}");
    let volumes = strings(&redis["volumes"]);
    assert!(
        volumes.iter().any(|v| v.ends_with(":/data")),
        "data on a volume: {volumes:?}"
    );
    let volume = volumes[0].split(':').next().unwrap_or_default().to_owned();
    assert!(
        compose["volumes"]
            .as_mapping()
            .is_some_and(|m| m.contains_key(volume.as_str())),
        "volume {volume} is declared"
    );
    assert!(
        redis["healthcheck"]["test"].is_sequence(),
        "redis has a healthcheck"
    );
}
