//! Access: a Redis ACL user limited to what the shop needs (the line in docs/security.md), a
//! wrong password refused at start-up with a clear message, TLS to Redis with a CA generated at
//! test time, the optional API token on mutating routes, and no secret in any log.

use crate::helpers::{eventually, wait_all_caught_up, Layout, Shop, ROLES};
use ordershop_testkit::{free_port, RedisOptions, RedisServer};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);
const ADMIN_PASSWORD: &str = "admin-pw-4b1d";
const SHOP_PASSWORD: &str = "shop-pw-91ce";

/// The rules of a Redis user, exactly as docs/security.md gives them (after `ACL SETUSER
/// <user>`: `shop`, or `acme` for a shop in that namespace), with its password.
fn documented_acl_rules(user: &str, password: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/security.md");
    let doc = std::fs::read_to_string(path).expect("docs/security.md");
    let line = doc
        .lines()
        .find(|l| l.starts_with(&format!("ACL SETUSER {user} ")))
        .unwrap_or_else(|| panic!("docs/security.md gives the `ACL SETUSER {user} ...` line"));
    line.split_whitespace()
        .skip(3)
        .map(|rule| match rule {
            ">PASSWORD" => format!(">{password}"),
            rule => rule.to_owned(),
        })
        .collect()
}

/// A redis-server whose `default` user needs a password, with the shop's ACL user added.
async fn redis_with_shop_user() -> RedisServer {
    redis_with_user("shop").await
}

/// A redis-server whose `default` user needs a password, with the documented ACL user `user`.
async fn redis_with_user(user: &str) -> RedisServer {
    let redis = RedisServer::start_with_password(RedisOptions::default(), ADMIN_PASSWORD);
    let mut conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connects");
    let rules = documented_acl_rules(user, SHOP_PASSWORD);
    assert!(
        rules.iter().any(|r| r == &format!(">{SHOP_PASSWORD}")),
        "{rules:?}"
    );
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg(rules)
        .query_async(&mut conn)
        .await
        .expect("the documented ACL line is valid");
    redis
}

/// The operator commands, as the user of `env`'s `REDIS_URL`: each exits 0.
fn operator_commands_succeed(env: &[(&str, &str)]) {
    for args in [
        &["events", "--limit", "5"][..],
        &["report"],
        &["status"],
        &["rebuild", "entity-cache", "--yes"],
        &["rebuild", "crm", "--yes"],
    ] {
        let (code, stdout, stderr) = cli(env, args);
        assert_eq!(code, 0, "ordershop {args:?}: {stdout}\n{stderr}");
    }
}

/// Redis records every command or key an ACL refused: none.
async fn assert_nothing_denied(shop: &Shop) {
    let mut admin = shop.redis().await;
    let denied: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .expect("ACL LOG");
    assert!(denied.is_empty(), "the ACL refused: {denied:?}");
}

fn shop_url(redis: &RedisServer, password: &str) -> String {
    user_url("shop", redis, password)
}

fn user_url(user: &str, redis: &RedisServer, password: &str) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{}", redis.port())
}

/// Runs `ordershop <args>` with the given environment; (exit code, stdout, stderr).
fn cli(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ordershop"))
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the ordershop binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `ordershop serve <role>` and waits (with a deadline) for it to exit by itself;
/// (exit code, stderr).
fn serve_until_exit(role: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordershop"))
        .args(["serve", role])
        .envs(env.iter().copied())
        .env("ORDERSHOP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ordershop binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "`serve {role}` was still running after 20 s: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("output");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A request to the gateway, with a bearer token if given; (status, JSON body).
async fn send(
    shop: &Shop,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = shop.http.request(method, shop.gateway(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(shop: &Shop, path: &str, body: Value, token: Option<&str>) -> Vec<String> {
    let (status, ids) = send(shop, reqwest::Method::POST, path, Some(body.clone()), token).await;
    assert_eq!(status, 200, "POST {path} {body}: {ids}");
    ids.as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect()
}

/// Every command of the shop, its projections and its operator commands, run as the ACL user.
async fn drive_everything(shop: &Shop, token: Option<&str>) {
    let customers = create(
        shop,
        "/customers",
        json!([{"name": "Ada", "email": "ada@example.com"}, {"name": "Bob", "email": "bob@example.com"}]),
        token,
    )
    .await;
    let products = create(
        shop,
        "/products",
        json!({"name": "Tea", "price": 250}),
        token,
    )
    .await;
    let stock = create(
        shop,
        "/inventory",
        json!({"product_id": products[0], "amount": 10}),
        token,
    )
    .await;
    let orders = create(
        shop,
        "/orders",
        json!({"product_ids": [products[0], products[0]], "customer_id": customers[0]}),
        token,
    )
    .await;
    create(shop, "/billings", json!({"order_id": orders[0]}), token).await;
    let (status, body) = send(
        shop,
        reqwest::Method::PUT,
        &format!("/customer/{}", customers[1]),
        Some(json!({"name": "Bobby", "email": "bob@example.com"})),
        token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        shop,
        reqwest::Method::PUT,
        &format!("/inventory/{}", stock[0]),
        Some(json!({"product_id": products[0], "amount": 20})),
        token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        shop,
        reqwest::Method::DELETE,
        &format!("/customer/{}", customers[1]),
        None,
        token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, report) = shop.get("/report").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["orders"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    let (status, unbilled) = shop.get("/orders/unbilled").await;
    assert_eq!((status, unbilled), (200, json!([])));
    wait_all_caught_up(shop).await;
    eventually("the welcome messages", DEADLINE, || async {
        !shop.emails(Some("ada@example.com")).await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_user_runs_the_whole_shop_and_nothing_is_denied() {
    let redis = redis_with_shop_user().await;
    let url = shop_url(&redis, SHOP_PASSWORD);
    let shop = Shop::start_on(redis, Layout::OneProcess, &[("REDIS_URL", &url)]).await;
    drive_everything(&shop, None).await;
    // A retried command with an idempotency key (its record lives under `es:`).
    for _ in 0..2 {
        let response = shop
            .http
            .post(shop.gateway("/products"))
            .header("Idempotency-Key", "acl-test-1")
            .json(&json!({"name": "Once", "price": 100}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
    }

    // The operator commands, as the same user.
    let env = [("REDIS_URL", url.as_str())];
    operator_commands_succeed(&env);
    let (status, customers) = shop.get("/customers").await;
    assert_eq!(status, 200);
    assert_eq!(customers.as_array().map(Vec::len), Some(1), "{customers}");

    assert_nothing_denied(&shop).await;
    let log = shop.log("up");
    assert!(!log.contains("NOPERM"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_namespaced_acl_user_runs_its_shop_and_reaches_no_other_key() {
    let redis = redis_with_user("acme").await;
    let url = user_url("acme", &redis, SHOP_PASSWORD);
    let shop = Shop::start_on(
        redis,
        Layout::OneProcess,
        &[("REDIS_URL", &url), ("ORDERSHOP_NAMESPACE", "acme")],
    )
    .await;
    drive_everything(&shop, None).await;
    let env = [("REDIS_URL", url.as_str()), ("ORDERSHOP_NAMESPACE", "acme")];
    operator_commands_succeed(&env);
    assert_nothing_denied(&shop).await;
    // Without the namespace, the same user reaches nothing: a key outside it is refused.
    let (code, stdout, stderr) = cli(&[("REDIS_URL", url.as_str())], &["report"]);
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("NOPERM") || stderr.contains("permission"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_password_stops_a_role_at_start_up_with_a_clear_error() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let redis = runtime.block_on(redis_with_shop_user());
    let wrong = shop_url(&redis, "not-the-password");
    let (code, stderr) = serve_until_exit("order-service", &[("REDIS_URL", &wrong)]);
    assert_ne!(code, 0, "{stderr}");
    let expected = format!(
        "error: Redis at 127.0.0.1:{} refused the credentials of user `shop`",
        redis.port()
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.starts_with(&expected), "{line}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // No credentials at all against a server that requires them: the same, for `default`.
    let anonymous = format!("redis://127.0.0.1:{}", redis.port());
    let (code, stderr) = serve_until_exit("gateway", &[("REDIS_URL", &anonymous)]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("refused the credentials of user `default`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_token_guards_every_mutating_route_and_no_secret_reaches_a_log() {
    const TOKEN: &str = "tok-5e3f-very-secret";
    let redis = RedisServer::start_with_password(RedisOptions::default(), ADMIN_PASSWORD);
    let shop = Shop::start_on(
        redis,
        Layout::ProcessPerRole,
        &[("ORDERSHOP_API_TOKEN", TOKEN), ("RUST_LOG", "debug")],
    )
    .await;
    let before = shop.stream_lengths().await;
    let body = json!({"name": "Eve", "email": "eve@example.com"});
    let some_id = "00000000-0000-4000-8000-000000000000";
    for (method, path) in [
        (reqwest::Method::POST, "/customers".to_owned()),
        (reqwest::Method::POST, "/customer".to_owned()),
        (reqwest::Method::PUT, format!("/customer/{some_id}")),
        (reqwest::Method::DELETE, format!("/customer/{some_id}")),
    ] {
        for token in [None, Some("wrong"), Some("tok-5e3f-very-secreT")] {
            let mut request = shop.http.request(method.clone(), shop.gateway(&path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.json(&body).send().await.expect("request");
            assert_eq!(response.status().as_u16(), 401, "{method} {path} {token:?}");
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
            let answer: Value = response.json().await.expect("JSON");
            assert_eq!(answer["error"], "unauthorized", "{answer}");
            assert!(answer["detail"].is_string(), "{answer}");
        }
    }
    // A client cannot bypass the gateway: the domain service checks the token too.
    let direct = shop
        .http
        .post(format!("{}/customers", shop.url("customer-service")))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(direct.status().as_u16(), 401);
    assert_eq!(
        shop.stream_lengths().await,
        before,
        "a refused request appended"
    );

    // Reads and the operational routes stay open; with the token, everything works.
    for path in ["/customers", "/health", "/metrics", "/openapi.json"] {
        let (status, _) = shop.get(path).await;
        assert_eq!(status, 200, "{path}");
    }
    drive_everything(&shop, Some(TOKEN)).await;

    // Neither the Redis password nor the token appears in any role's (debug) log.
    for role in ROLES {
        let log = shop.log(role);
        assert!(!log.is_empty(), "{role} logged nothing");
        assert!(
            !log.contains(ADMIN_PASSWORD),
            "{role} logged the Redis password"
        );
        assert!(!log.contains("very-secret"), "{role} logged the API token");
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with `openssl` in `dir`.
fn make_certificates(dir: &Path, name: &str) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ca_key = format!("{name}-ca.key");
    let ca_crt = format!("{name}-ca.crt");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "2",
        "-subj",
        "/CN=ordershop test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext file");
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &format!("{name}-server.key"),
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &format!("{name}-server.crt"),
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// Whether this redis-server was built with TLS: given a TLS port and no usable certificate, one
/// with TLS exits complaining about its TLS configuration, one without about the directive.
fn redis_supports_tls() -> Result<(), String> {
    ordershop_testkit::server_supports_tls()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_talks_tls_to_redis_trusting_only_the_given_ca() {
    if let Err(reason) = redis_supports_tls() {
        ordershop_testkit::skip("tls", "the_shop_talks_tls_to_redis", &reason);
        return;
    }
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path(), "good");
    make_certificates(certs.path(), "other");
    let path = |name: &str| certs.path().join(name).display().to_string();
    let tls_port = free_port();
    // The plain port stays for the test's own checks; the shop is given only the TLS one.
    let redis = RedisServer::start_with(RedisOptions {
        extra: vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path("good-server.crt"),
            "--tls-key-file".into(),
            path("good-server.key"),
            "--tls-ca-cert-file".into(),
            path("good-ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
        ..RedisOptions::default()
    });
    let url = format!("rediss://127.0.0.1:{tls_port}");

    // A CA that did not sign the server's certificate: a clear error at start-up.
    let other_ca = path("other-ca.crt");
    let (code, stderr) = serve_until_exit(
        "customer-service",
        &[("REDIS_URL", &url), ("REDIS_CA_FILE", &other_ca)],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("Redis at 127.0.0.1:{tls_port}"))
            && stderr.contains("certificate"),
        "{stderr}"
    );

    let good_ca = path("good-ca.crt");
    let shop = Shop::start_on(
        redis,
        Layout::OneProcess,
        &[("REDIS_URL", &url), ("REDIS_CA_FILE", &good_ca)],
    )
    .await;
    let ids = shop
        .create(
            "/customers",
            json!({"name": "Tls", "email": "tls@example.com"}),
        )
        .await;
    let (status, customer) = shop.get(&format!("/customer/{}", ids[0])).await;
    assert_eq!(status, 200);
    assert_eq!(customer["email"], "tls@example.com", "{customer}");
}

/// A page on another site, or a hostile name rebound to the shop's loopback address, cannot
/// make a browser change anything: commands need a JSON body and the shop's own origin, and a
/// loopback shop answers only loopback names. Nothing is appended for any refused request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused_and_append_nothing() {
    let shop = Shop::start(Layout::OneProcess).await;
    let before = shop.stream_lengths().await;
    let url = shop.gateway("/customers");
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let body = r#"{"name": "Mallory", "email": "mallory@example.com"}"#;
    let send = |content_type: Option<&'static str>, origin: Option<String>| {
        let mut request = shop.http.post(&url).body(body);
        if let Some(t) = content_type {
            request = request.header("Content-Type", t);
        }
        if let Some(o) = origin {
            request = request.header("Origin", o);
        }
        async move {
            let response = request.send().await.expect("POST");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // What `fetch(…, {mode: 'no-cors'})` can send: a text/plain body.
    let (status, error) = send(Some("text/plain"), None).await;
    assert_eq!(status, 415, "{error}");
    assert_eq!(error["error"], "unsupported_media_type");
    assert_eq!(send(None, None).await.0, 415);
    // A foreign origin, even with the right type.
    let (status, error) = send(Some("application/json"), Some("http://evil.example".into())).await;
    assert_eq!(status, 403, "{error}");
    assert!(error["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("evil.example"));
    // A rebinding page names its own host.
    let rebound = shop
        .http
        .get(&url)
        .header("Host", "rebind.evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(rebound.status(), 403);
    assert_eq!(shop.stream_lengths().await, before, "nothing appended");

    // The shop's own origin (the console) and plain clients still work.
    let own = format!("http://{host}");
    assert_eq!(send(Some("application/json"), Some(own)).await.0, 200);
    assert_eq!(
        send(Some("application/json; charset=utf-8"), None).await.0,
        200
    );
}
