//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`): the
//! few commands the console tests need — open a page, find and click elements, type, run a
//! script, take a screenshot, read the browser's console log. ChromeDriver runs on a free
//! loopback port and is stopped, with its browser, when the [`Browser`] is dropped.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why no browser can run here, or `None` when one can. `.ci/run` installs both packages, so
/// under CI a missing browser fails the test instead of skipping it.
pub fn unavailable() -> Option<String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !std::path::Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let reason = format!(
        "{} not installed (Debian packages chromium, chromium-driver)",
        missing.join(" and ")
    );
    assert!(std::env::var_os("CI").is_none(), "under CI: {reason}");
    Some(reason)
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// A found element.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a headless Chromium with a laptop-sized window.
    pub async fn start() -> Browser {
        let port = ordershop_testkit::free_ports(1)[0];
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(status) = ready {
                if status.await.is_ok_and(|s| s["value"]["ready"] == true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let created = browser.call("POST", "/session", capabilities).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with its message.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let answer: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: not JSON: {e}"));
        if answer["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    /// Accepts the page's `confirm()` once it is shown (within `within`); returns its text.
    pub async fn accept_confirmation(&self, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let url = format!("{}{}", self.base, self.session("/alert/text"));
            let answer: Value = self
                .http
                .get(url)
                .send()
                .await
                .expect("WebDriver GET alert/text")
                .json()
                .await
                .expect("WebDriver answers JSON");
            if let Some(text) = answer["value"].as_str() {
                let text = text.to_owned();
                self.call("POST", &self.session("/alert/accept"), json!({}))
                    .await;
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no confirmation was shown: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn session(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn open(&self, url: &str) {
        self.call("POST", &self.session("/url"), json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns what it returns.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            &self.session("/execute/sync"),
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// The elements matching a CSS selector (none is not an error).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .call(
                "POST",
                &self.session("/elements"),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn click(&self, element: &Element) {
        self.call(
            "POST",
            &self.session(&format!("/element/{}/click", element.0)),
            json!({}),
        )
        .await;
    }

    pub async fn type_into(&self, element: &Element, text: &str) {
        self.call(
            "POST",
            &self.session(&format!("/element/{}/value", element.0)),
            json!({ "text": text }),
        )
        .await;
    }

    /// The text of the first element matching `css`, or `None` when there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        let text = self
            .run(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await;
        text.as_str().map(|t| t.trim().to_owned())
    }

    /// Waits until `css` matches an element whose text satisfies `check` (deadline: `within`).
    pub async fn wait_for_text(
        &self,
        css: &str,
        within: Duration,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text(css).await;
            if let Some(text) = text.as_deref().filter(|t| check(t)) {
                return text.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{css}` shows {text:?} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `css` matches at least one element.
    pub async fn wait_for(&self, css: &str, within: Duration, what: &str) -> Element {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self.find_all(css).await.into_iter().next() {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: nothing matches `{css}` after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `css` matches nothing.
    pub async fn wait_for_none(&self, css: &str, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while !self.find_all(css).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{what}: `{css}` still matches after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The browser's console entries since the last call (`{level, message, source}`).
    pub async fn console_log(&self) -> Vec<Value> {
        self.call("POST", &self.session("/se/log"), json!({"type": "browser"}))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self
            .call("GET", &self.session("/screenshot"), json!({}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("the screenshot is base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends the browser (a plain blocking request: no runtime here);
        // ChromeDriver itself is killed.
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        if let Ok(mut socket) = std::net::TcpStream::connect(address) {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n",
                self.session
            );
            if socket.write_all(request.as_bytes()).is_ok() {
                let _ = socket.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
