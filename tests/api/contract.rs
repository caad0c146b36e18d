//! The gateway against its own OpenAPI document, checked by an independent tool: schemathesis
//! (from PyPI) reads `/openapi.json`, generates requests from it — valid ones, which must be
//! accepted, and ones that break a documented limit, which must be refused with a 4xx — and
//! checks every answer: no 5xx, only documented status codes, content types and headers, bodies
//! matching their schemas, 405 with `Allow` for methods a path does not serve, 401 without the
//! token. The run is bounded (examples per operation and a time budget).
//!
//! Also here: the HTTP details of the contract that schemathesis does not probe — HEAD on GET
//! routes, `Allow` on 405 — and malformed HTTP, which gets the JSON error body wherever a
//! request reaches the shop.

use crate::helpers::{Layout, Shop};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "contract-token-5e2a9c1f";
/// Generated cases per operation in each phase (about 2,000 requests in all).
const MAX_EXAMPLES: &str = "25";
/// The run is stopped (and the test fails) after this long.
const DEADLINE: Duration = Duration::from_secs(300);

/// The Python that has schemathesis (`python3 -m schemathesis.cli`; `PYTHON` names another
/// interpreter). `None` when it is not installed; CI installs it, so there a missing tool is a
/// failure, not a skip.
fn schemathesis() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let runs = Command::new(&python)
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "schemathesis does not run (`{python} -m schemathesis.cli`); .ci/run installs it from PyPI"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_as_its_openapi_document_says() {
    let Some(python) = schemathesis() else {
        ordershop_testkit::skip(
            "schemathesis",
            "the_gateway_answers_as_its_openapi_document_says",
            "schemathesis is not installed (see the README's test section)",
        );
        return;
    };
    let shop = Shop::start_with(Layout::OneProcess, &[("ORDERSHOP_API_TOKEN", TOKEN)]).await;
    let report = tempfile::tempdir().expect("a temporary folder");
    let location = shop.gateway("/openapi.json");
    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/contract");
    let run = tokio::process::Command::new(&python)
        .args(["-m", "schemathesis.cli"])
        .arg("--config-file")
        .arg(settings.join("schemathesis.toml"))
        .args(["run", &location])
        .args(["--checks", "all"])
        // The original API answers GET of a deleted entity with 200 and `null`, not 404 (the
        // document says so), which this check would call a use after free.
        .args(["--exclude-checks", "use_after_free"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "20261201"])
        // One worker: Hypothesis's generation is not thread-safe in every version.
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        // The docs page is not an API; the event feed answers an endless stream, which a
        // checker that reads whole responses cannot take (tests/api/feed.rs covers it).
        .args(["--exclude-path-regex", "^/(docs|events/stream)"])
        .args(["--suppress-health-check", "too_slow,filter_too_much"])
        .args(["--no-color"])
        .current_dir(report.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // The check that keeps valid requests' 422s to refusals about state.
        .env("SCHEMATHESIS_HOOKS", "ordershop_contract_checks")
        .env("PYTHONPATH", &settings)
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {DEADLINE:?}"))
        .expect("schemathesis starts");
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "schemathesis found answers that break the document:\n{out}\n{err}"
    );
    assert!(
        out.contains("passed"),
        "schemathesis ran no test case:\n{out}"
    );
}

/// Sends raw bytes and reads the answer until the server closes or `Connection: close` is done.
async fn exchange(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(request).await.expect("sends");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 20 s")
        .expect("reads");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_works_on_get_routes_and_405_names_the_allowed_methods() {
    let shop = Shop::start(Layout::OneProcess).await;
    let addr = shop.url("gateway").trim_start_matches("http://").to_owned();
    shop.create(
        "/customers",
        serde_json::json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await;

    for path in ["/customers", "/report", "/health", "/openapi.json"] {
        let get = exchange(
            &addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let head = exchange(
            &addr,
            format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&head), "200", "HEAD {path}: {head}");
        assert_eq!(
            header_of(&head, "content-type"),
            header_of(&get, "content-type"),
            "HEAD {path} has GET's content type"
        );
        assert_eq!(
            header_of(&head, "content-length"),
            Some(body_of(&get).len().to_string().as_str()),
            "HEAD {path} announces GET's length: {head}"
        );
        assert!(body_of(&head).is_empty(), "HEAD {path} sends no body");
    }

    for (method, path, allow) in [
        ("DELETE", "/customers", "GET, HEAD, POST"),
        (
            "PATCH",
            "/customer/00000000-0000-0000-0000-000000000000",
            "GET, HEAD, PUT, DELETE",
        ),
        ("POST", "/report", "GET, HEAD"),
        ("PUT", "/health", "GET, HEAD"),
    ] {
        let answer = exchange(
            &addr,
            format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&answer), "405", "{method} {path}: {answer}");
        assert_eq!(header_of(&answer, "allow"), Some(allow), "{method} {path}");
        let body: serde_json::Value = serde_json::from_str(body_of(&answer))
            .unwrap_or_else(|e| panic!("{method} {path}: a JSON body ({e}): {answer}"));
        assert_eq!(body["error"], "method_not_allowed", "{answer}");
    }
}

/// Requests that HTTP parses but the shop cannot use get the JSON error body; what the HTTP
/// library refuses before the shop sees it (README, "Errors") is a bare 400 or 431 that closes
/// the connection. Either way nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors_where_the_shop_sees_them() {
    let shop = Shop::start(Layout::OneProcess).await;
    let before = shop.stream_lengths().await;
    let addr = shop.url("gateway").trim_start_matches("http://").to_owned();

    let json_errors: [(&str, &[u8], &str); 5] = [
        (
            "a broken chunked body",
            b"POST /customers HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            "400",
        ),
        (
            "a body in an unknown content encoding",
            b"POST /customers HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
              Content-Length: 4\r\nConnection: close\r\n\r\nnope",
            "400",
        ),
        (
            "a path that is not a UUID",
            b"GET /customer/%ZZ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "400",
        ),
        (
            "a header value that is not text",
            b"POST /customers HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIdempotency-Key: \xff\xfe\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\n{}",
            "400",
        ),
        (
            "an unknown route",
            b"GET /nothing/here HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "404",
        ),
    ];
    for (what, request, status) in json_errors {
        let answer = exchange(&addr, request).await;
        assert_eq!(status_of(&answer), status, "{what}: {answer}");
        let body: serde_json::Value = serde_json::from_str(body_of(&answer))
            .unwrap_or_else(|e| panic!("{what}: a JSON error body ({e}): {answer}"));
        assert!(body["error"].is_string(), "{what}: {answer}");
        assert!(body["detail"].is_string(), "{what}: {answer}");
    }

    // Refused by the HTTP library before routing: documented as bare answers.
    let many_headers = format!(
        "GET /customers HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        (0..100)
            .map(|n| format!("X-H{n}: {n}\r\n"))
            .collect::<String>()
    );
    let library: [(&str, &[u8], &str); 3] = [
        ("not HTTP", b"HELLO\r\n\r\n", "400"),
        (
            "a header line without a colon",
            b"GET /customers HTTP/1.1\r\nHost shop\r\n\r\n",
            "400",
        ),
        ("more than 96 header lines", many_headers.as_bytes(), "431"),
    ];
    for (what, request, status) in library {
        let answer = exchange(&addr, request).await;
        assert_eq!(status_of(&answer), status, "{what}: {answer}");
    }
    assert_eq!(shop.stream_lengths().await, before, "nothing appended");
}
