//! The local shop of a developer's machine (`ordershop up` without `REDIS_URL`) and the operator
//! commands around it: the private redis-server dies with `up`, one shop per data folder, no
//! operator command ever falls back to some other Redis, `rebuild` asks first, and start-up
//! refuses what it cannot work with (a Redis that does not answer, a taken port, an old server).

use crate::helpers::{env_var_of, eventually, run_cli, wait_caught_up, Layout, Shop, ROLES};
use ordershop_testkit::{free_ports, RedisServer};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A folder to run `ordershop up` in (its shop folder is `<root>/.ordershop`), with the ports
/// of one shop.
struct LocalShop {
    root: tempfile::TempDir,
    ports: Vec<u16>,
}

impl LocalShop {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("a temporary folder"),
            ports: free_ports(ROLES.len()),
        }
    }

    fn folder(&self) -> PathBuf {
        self.root
            .path()
            .join(".ordershop")
            .canonicalize()
            .expect("the shop folder exists")
    }

    fn gateway(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[0])
    }

    /// `ordershop <args>` in the shop's folder, without `REDIS_URL`, with every role on the
    /// shop's ports; its log goes to `<name>.log` beside the shop folder.
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordershop"));
        command
            .args(args)
            .current_dir(self.root.path())
            .env_remove("REDIS_URL")
            .env_remove("ORDERSHOP_DATA_DIR")
            .env("ORDERSHOP_STRICT_DURABILITY", "1")
            .env("ORDERSHOP_LISTEN", format!("127.0.0.1:{}", self.ports[0]))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        for (role, port) in ROLES.iter().zip(&self.ports).skip(1) {
            command.env(env_var_of(role), format!("http://127.0.0.1:{port}"));
        }
        let log = self.root.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        command
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        command
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    async fn up(&self, name: &str) -> Running {
        self.up_with(name, &["up"]).await
    }

    /// `ordershop <args>` (an `up`), once the gateway is healthy.
    async fn up_with(&self, name: &str, args: &[&str]) -> Running {
        let child = Running(
            self.command(name, args)
                .spawn()
                .expect("ordershop up starts"),
        );
        let client = reqwest::Client::new();
        let url = self.gateway("/health");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = client.get(&url).send().await {
                if answer.status().is_success() {
                    return child;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the shop did not become healthy:\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A child process that is killed when the test ends, whether it passes or panics.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Process ids of the servers working in `dir` (redis-server and valkey-server change into
/// their `--dir` and rewrite their command line, so the working folder is what tells).
fn servers_serving(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

fn wait_exit(child: &mut Child, deadline: Duration) -> i32 {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the process") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the process did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ordershop <args>` run in `folder` with no `REDIS_URL` nor `ORDERSHOP_DATA_DIR`.
fn cli_in(folder: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ordershop"))
        .args(args)
        .current_dir(folder)
        .env_remove("REDIS_URL")
        .env_remove("ORDERSHOP_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("the ordershop binary runs");
    text(&output)
}

fn text(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn killing_up_takes_its_redis_down_and_a_restart_reuses_the_folder() {
    let shop = LocalShop::new();
    let mut up = shop.up("first").await;
    let client = reqwest::Client::new();
    let answer = client
        .post(shop.gateway("/customers"))
        .json(&json!({"name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .expect("POST /customers");
    assert_eq!(answer.status(), 200);
    let redis_dir = shop.folder().join("redis");
    assert_eq!(
        servers_serving(&redis_dir).len(),
        1,
        "one private server serves the folder"
    );

    up.0.kill().expect("SIGKILL ordershop up");
    let _ = up.0.wait();
    // Gone means: no server works in the folder any more, and the kernel has released the
    // folder's lock (an exiting process drops its cwd a moment before its files' locks).
    let end = Instant::now() + Duration::from_secs(15);
    while !servers_serving(&redis_dir).is_empty()
        || ordershop::local_shop::is_running(&shop.folder())
    {
        assert!(
            Instant::now() < end,
            "the private server outlived `up`: pids {:?}",
            servers_serving(&redis_dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The killed `up` could not remove its URL file: operator commands see it is stale.
    let (code, out, err) = text(
        &shop
            .command("status-after-kill", &["status"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("ordershop status"),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "no shop is running from {}",
            shop.folder().display()
        )),
        "{err}"
    );

    let _again = shop.up("second").await;
    let customers: Value = client
        .get(shop.gateway("/customers"))
        .send()
        .await
        .expect("GET /customers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(customers[0]["name"], "Ada", "{customers}");
    assert_eq!(servers_serving(&redis_dir).len(), 1);
}

#[tokio::test]
async fn a_second_up_on_the_same_folder_is_refused_and_changes_nothing() {
    let shop = LocalShop::new();
    let mut first = shop.up("first").await;
    let url_file = shop.folder().join("redis.url");
    let url = std::fs::read_to_string(&url_file).expect("redis.url while the shop runs");

    // Another `up` in the same folder, as a user would type it again.
    let command = &mut shop.command("second", &["up"]);
    let mut second = Running(command.spawn().expect("a second ordershop up"));
    assert_eq!(wait_exit(&mut second.0, Duration::from_secs(20)), 2);
    let log = shop.log("second");
    assert!(
        log.contains(&format!(
            "a shop is already running from {}",
            shop.folder().display()
        )),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&url_file).expect("redis.url"), url);
    assert_eq!(servers_serving(&shop.folder().join("redis")).len(), 1);
    let health = reqwest::get(shop.gateway("/health")).await.expect("health");
    assert_eq!(health.status(), 200, "the first shop still serves");

    // A clean stop removes the URL file.
    let pid = first.0.id().to_string();
    let stopped = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(stopped.success());
    assert_eq!(wait_exit(&mut first.0, Duration::from_secs(30)), 0);
    assert!(!url_file.exists(), "up removes redis.url when it stops");
}

#[tokio::test]
async fn operator_commands_without_a_shop_refuse_and_connect_nowhere() {
    let empty = tempfile::tempdir().expect("a temporary folder");
    for args in [
        &["status"][..],
        &["report"],
        &["events"],
        &["rebuild", "entity-cache", "--yes"],
    ] {
        let (code, out, err) = cli_in(empty.path(), args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.contains("REDIS_URL"), "{args:?}: {err}");
    }

    // A URL file left by a killed `up`, pointing at a Redis that runs: still refused, and that
    // Redis is not touched (no connection, no key, no Function).
    let redis = RedisServer::start();
    let folder = empty.path().join(".ordershop");
    std::fs::create_dir_all(&folder).expect("shop folder");
    std::fs::write(folder.join("redis.url"), redis.url()).expect("redis.url");
    std::fs::write(folder.join("lock"), "").expect("lock file");
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let connections = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("total_connections_received")
    };
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let before = connections(info);
    let nested = empty.path().join("deeper/still");
    std::fs::create_dir_all(&nested).expect("nested folder");
    for args in [&["status"][..], &["rebuild", "crm", "--yes"], &["report"]] {
        let (code, out, err) = cli_in(&nested, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        let folder = folder.canonicalize().expect("folder");
        assert!(
            err.contains(&format!("no shop is running from {}", folder.display())),
            "{args:?}: {err}"
        );
    }
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    assert_eq!(connections(info), before, "an operator command connected");
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE");
    assert_eq!(keys, 0);
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("FUNCTION LIST");
    assert!(libraries.is_empty(), "Functions were loaded: {libraries:?}");
}

#[tokio::test]
async fn rebuild_asks_first_and_refuses_without_a_terminal() {
    let shop = Shop::start(Layout::OneProcess).await;
    shop.create(
        "/customers",
        json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await;
    wait_caught_up(&shop, ordershop_projections::ProjectionName::EntityCache).await;

    let (code, out, err) = run_cli(&shop, &["rebuild", "entity-cache"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&shop.redis.url()), "names the Redis: {err}");
    assert!(err.contains("customer_ids"), "names the keys: {err}");
    assert!(err.contains("--yes"), "{err}");
    let mut conn = shop.redis().await;
    let cached: u64 = redis::cmd("SCARD")
        .arg("customer_ids")
        .query_async(&mut conn)
        .await
        .expect("SCARD");
    assert_eq!(cached, 1, "nothing was wiped");

    let (code, out, err) = run_cli(&shop, &["rebuild", "msg-service", "--yes"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("possible values: entity-cache, crm"), "{err}");

    let (code, out, err) = run_cli(&shop, &["rebuild", "entity-cache", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("rebuilt entity-cache in "),
        "a readable summary: {out}"
    );
    assert!(out.contains("replayed 1 entry "), "{out}");
    assert!(
        err.starts_with(&format!("using Redis at {} (REDIS_URL)", shop.redis.url())),
        "{err}"
    );
}

#[tokio::test]
async fn up_fails_fast_when_redis_does_not_answer_or_a_port_is_taken() {
    let shop = LocalShop::new();
    let closed = free_ports(1)[0];
    let mut up = Running(
        shop.command("closed", &["up"])
            .env("REDIS_URL", format!("redis://127.0.0.1:{closed}"))
            .spawn()
            .expect("ordershop up"),
    );
    assert_eq!(wait_exit(&mut up.0, Duration::from_secs(30)), 2);
    let log = shop.log("closed");
    assert!(
        log.contains(&format!(
            "Redis at redis://127.0.0.1:{closed} does not answer"
        )),
        "{log}"
    );
    assert!(!log.contains("the shop is up"), "{log}");

    let redis = RedisServer::start();
    let taken = TcpListener::bind(("127.0.0.1", shop.ports[0])).expect("take the gateway's port");
    let mut up = Running(
        shop.command("taken", &["up"])
            .env("REDIS_URL", redis.url())
            .spawn()
            .expect("ordershop up"),
    );
    assert_eq!(wait_exit(&mut up.0, Duration::from_secs(30)), 2);
    let log = shop.log("taken");
    let line = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("an error line: {log}"));
    assert!(line.contains("ORDERSHOP_LISTEN"), "{line}");
    assert!(line.contains("--port"), "{line}");
    drop(taken);
}

#[tokio::test]
async fn up_port_moves_the_whole_shop() {
    let redis = RedisServer::start();
    // Nine consecutive free ports, below the kernel's range of ephemeral ports (32768 and up
    // by default), where the suite's many client connections would take some of them.
    let start = (std::process::id() % 900) as u16 * 22;
    let base = (0..200u16)
        .map(|i| 10_000 + (start + i * 37) % 22_000)
        .find(|base| (0..9).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .expect("nine free ports in a row");
    let shop = LocalShop::new();
    let _up = Running(
        shop.command("moved", &["up", "--port", &base.to_string()])
            .env("REDIS_URL", redis.url())
            .env_remove("ORDERSHOP_LISTEN")
            .spawn()
            .expect("ordershop up --port"),
    );
    let client = reqwest::Client::new();
    for offset in [0u16, 1, 8] {
        let url = format!("http://127.0.0.1:{}/health", base + offset);
        eventually(
            &format!("a role on {url}"),
            Duration::from_secs(60),
            || async {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|a| a.status().is_success())
            },
        )
        .await;
    }
    let answer = client
        .post(format!("http://127.0.0.1:{base}/customers"))
        .json(&json!({"name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .expect("POST /customers through the moved gateway");
    assert_eq!(answer.status(), 200, "{}", shop.log("moved"));
}

/// A server that speaks just enough RESP to pass for an old Redis: PING answers PONG, INFO says
/// 6.2.14, everything else OK.
fn fake_old_redis() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                loop {
                    let Some(args) = read_command(&mut reader) else {
                        return;
                    };
                    let name = args.first().map(|a| a.to_uppercase()).unwrap_or_default();
                    let reply = match name.as_str() {
                        "PING" => "+PONG\r\n".to_owned(),
                        "INFO" => {
                            let body =
                                "# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n";
                            format!("${}\r\n{body}\r\n", body.len())
                        }
                        "HELLO" => "-ERR unknown command 'HELLO'\r\n".to_owned(),
                        _ => "+OK\r\n".to_owned(),
                    };
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn read_command(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Some(args)
}

#[tokio::test]
async fn a_role_refuses_a_server_older_than_redis_7() {
    let port = fake_old_redis();
    let line = refused_at_start("gateway", &format!("redis://127.0.0.1:{port}")).await;
    assert!(line.contains("found Redis 6.2.14"), "{line}");
    assert!(line.contains("Redis >= 7.0 or Valkey >= 7.2"), "{line}");
}

/// Runs `serve <role>` against the Redis at `url`, which it must refuse at start-up: asserts
/// exit code 2 and answers the error line.
async fn refused_at_start(role: &str, url: &str) -> String {
    let listen = free_ports(1)[0];
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ordershop"))
            .args(["serve", role])
            .env("REDIS_URL", url)
            .env("ORDERSHOP_LISTEN", format!("127.0.0.1:{listen}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the role stops at once")
    .expect("the ordershop binary runs");
    let (code, out, err) = text(&output);
    assert_eq!(code, 2, "{out}{err}");
    err.lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("an error line: {err}"))
        .to_owned()
}

/// A Redis that evicts keys when full would delete events from the log: a role refuses it at
/// start-up, naming the setting and what to set, and appends nothing.
#[tokio::test]
async fn a_role_refuses_a_redis_that_evicts_keys() {
    let redis = RedisServer::start_with(ordershop_testkit::RedisOptions {
        extra: vec!["--maxmemory-policy".into(), "allkeys-lru".into()],
        ..ordershop_testkit::RedisOptions::default()
    });
    let line = refused_at_start("customer-service", &redis.url()).await;
    assert!(line.contains("maxmemory-policy allkeys-lru"), "{line}");
    assert!(line.contains("noeviction"), "{line}");
    let size = ordershop_testkit::replicated::query(redis.port(), &["DBSIZE"]);
    assert_eq!(size, Some(redis::Value::Int(0)), "nothing written");
}

#[tokio::test]
async fn operator_commands_act_in_the_namespace_of_the_local_shop() {
    let shop = LocalShop::new();
    let _up = shop.up_with("up", &["--namespace", "acme", "up"]).await;
    let answer = reqwest::Client::new()
        .post(shop.gateway("/customers"))
        .json(&json!({"name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .expect("POST /customers");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        std::fs::read_to_string(shop.folder().join("namespace"))
            .ok()
            .as_deref(),
        Some("acme")
    );

    // Without being told, a command in the folder acts in the shop's namespace, and says so.
    let eventually_listed = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = cli_in(shop.root.path(), &["report", "--json"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(err.contains("namespace acme"), "{err}");
        let report: Value = serde_json::from_str(&out).expect("report --json is JSON");
        if report["customers"][0]["name"] == "Ada" {
            break;
        }
        assert!(Instant::now() < eventually_listed, "{report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Told another namespace, it refuses and names the shop's.
    let (code, out, err) = cli_in(shop.root.path(), &["--namespace", "bolt", "status"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("uses the namespace acme, not `bolt`"), "{err}");
}

/// `up` supervises its private redis-server: killed, it is started again on the same folder
/// (with its data) and says so; the shop works again without anyone touching it. When it
/// cannot keep it alive, `up` stops with a non-zero exit and a line that says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_its_killed_redis_again_and_gives_up_loudly_when_it_keeps_dying() {
    let shop = LocalShop::new();
    let mut up = shop.up("supervised").await;
    let client = reqwest::Client::new();
    let create = |name: &'static str| {
        client
            .post(shop.gateway("/customer"))
            .json(&json!({"name": name, "email": format!("{}@example.com", name.to_lowercase())}))
            .send()
    };
    assert_eq!(create("Before").await.expect("POST").status(), 200);
    let redis_dir = shop.folder().join("redis");
    let kill_server = || {
        let pids = servers_serving(&redis_dir);
        assert_eq!(pids.len(), 1, "one private server: {pids:?}");
        // SAFETY: kill(2) on a pid read a moment ago from /proc; SIGKILL stands in for the OOM
        // killer or an operator's mistake.
        unsafe {
            libc::kill(pids[0] as libc::pid_t, libc::SIGKILL);
        }
        pids[0]
    };
    let killed = kill_server();

    // Started again: new writes go through, old data is there, and the log says what happened.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(answer) = create("After").await {
            if answer.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the shop did not come back:\n{}",
            shop.log("supervised")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pids = servers_serving(&redis_dir);
    assert!(pids.len() == 1 && pids[0] != killed, "{pids:?}");
    let log = shop.log("supervised");
    assert!(log.contains("the private redis-server died"), "{log}");
    let names: Value = client
        .get(shop.gateway("/customers"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = names
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        names.contains(&"Before") && names.contains(&"After"),
        "{names:?}"
    );

    // It keeps dying: `up` stops, non-zero, and says why (after three restarts, or when a
    // restart itself fails, whichever comes first).
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while servers_serving(&redis_dir).is_empty() {
            if up.0.try_wait().ok().flatten().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "{}", shop.log("supervised"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if up.0.try_wait().ok().flatten().is_some() {
            break;
        }
        let pid = kill_server();
        // Wait until the killed one is gone before looking for its successor.
        let deadline = Instant::now() + Duration::from_secs(30);
        while servers_serving(&redis_dir).contains(&pid) {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let code = wait_exit(&mut up.0, Duration::from_secs(60));
    assert_ne!(code, 0, "{}", shop.log("supervised"));
    let log = shop.log("supervised");
    assert!(log.contains("; stopping the shop"), "{log}");
}

/// Operator commands follow the running shop's ports as they follow its Redis: `health` in the
/// shop's folder (or below it) checks the gateway of `up --port`. And `up` below a running shop
/// is refused, naming it, instead of starting a second, empty shop that hides the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_follow_a_moved_shop_and_up_below_it_is_refused() {
    let start = (std::process::id() % 900) as u16 * 22 + 11;
    let base = (0..200u16)
        .map(|i| 10_000 + (start + i * 37) % 22_000)
        .find(|base| (0..9).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .expect("nine free ports in a row");
    let shop = LocalShop::new();
    let _up = Running(
        shop.command("moved", &["up", "--port", &base.to_string()])
            .env_remove("ORDERSHOP_LISTEN")
            .spawn()
            .expect("ordershop up --port"),
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{base}/health");
    eventually("the moved gateway", Duration::from_secs(60), || async {
        client
            .get(&url)
            .send()
            .await
            .is_ok_and(|a| a.status().is_success())
    })
    .await;
    let below = shop.root.path().join("sub");
    std::fs::create_dir_all(&below).expect("a subfolder");
    let run_in = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordershop"));
        command
            .args(args)
            .current_dir(&below)
            .env_remove("REDIS_URL")
            .env_remove("ORDERSHOP_DATA_DIR")
            .env_remove("ORDERSHOP_LISTEN")
            .env_remove("ORDERSHOP_PORT")
            .stdin(Stdio::null());
        text(&command.output().expect("ordershop runs"))
    };
    let (code, out, err) = run_in(&["health"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!(":{base}/health")), "{out}");

    let (code, out, err) = run_in(&["up", "--port", &(base + 100).to_string()]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("already running from") && err.contains("above this folder"),
        "{err}"
    );
    assert!(!below.join(".ordershop").exists(), "nothing was made below");
}
