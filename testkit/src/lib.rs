//! The test harness: a private, real `redis-server` per test.
//!
//! Each [`RedisServer`] runs on a free loopback port with its own temporary data folder, and is
//! stopped (and its folder removed) when dropped, so tests never touch a shared instance or a
//! user's data and never see each other's keys. A server may require a password
//! ([`RedisServer::start_with_password`]); its [`RedisServer::url`] then carries it.
//!
//! The binary is `redis-server` on the PATH, or the one [`SERVER_BIN_VAR`] names: a
//! `valkey-server` works too (it takes the same options). [`server_bin`] tells which, and
//! [`server_supports_tls`] whether that binary was built with TLS.
//!
//! Beside the server, what every suite needs against it: [`eventually`] (wait for a condition
//! with a deadline) and, in [`keys`], a canonical [`dump`] of the keys matching some patterns
//! and their deletion ([`wipe`], [`unlink_matching`]).
//!
//! And one thing that needs no server: [`MemStore`], the command layer's store in memory.

pub mod cluster;
pub mod keys;
pub mod mem_store;
pub mod powercut;
pub mod replicated;
pub mod skip;
pub mod wait;

pub use cluster::RedisCluster;
pub use keys::{dump, try_dump, unlink_matching, wipe, KeyDump};
pub use mem_store::MemStore;
pub use powercut::{CutTotals, PowerCutFs};
pub use replicated::ReplicatedRedis;
pub use skip::skip;
pub use wait::eventually;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer PING after it was started.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long the TLS probe's server may take to exit.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// The variable naming the server binary to start instead of `redis-server` on the PATH, e.g.
/// a `valkey-server`.
pub const SERVER_BIN_VAR: &str = "REDIS_SERVER_BIN";

/// The server binary the tests start: [`SERVER_BIN_VAR`] if set (and not empty), else
/// `redis-server` on the PATH.
pub fn server_bin() -> String {
    std::env::var(SERVER_BIN_VAR)
        .ok()
        .filter(|bin| !bin.is_empty())
        .unwrap_or_else(|| "redis-server".into())
}

/// What to do when `bin` cannot be run.
fn install_hint(bin: &str) -> String {
    if std::env::var_os(SERVER_BIN_VAR).is_some_and(|v| !v.is_empty()) {
        format!("check {SERVER_BIN_VAR}")
    } else {
        format!("install it, e.g. `apt-get install {bin}`")
    }
}

/// `Ok` if the server binary ([`server_bin`]) was built with TLS, else why not (for a test to
/// print when it skips). Given a TLS port and certificate files that do not exist, a server
/// with TLS (Redis or Valkey) exits saying it failed to configure TLS; one without says it
/// lacks TLS support (or does not know the directive).
pub fn server_supports_tls() -> Result<(), String> {
    let bin = server_bin();
    let dir = tempfile::Builder::new()
        .prefix("ordershop-tls-probe-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
    // Output to a file, not a pipe, so a chatty server can never block on a full pipe.
    let out_path = dir.path().join("probe.log");
    let out = std::fs::File::create(&out_path).map_err(|e| format!("cannot create a file: {e}"))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot clone a file handle: {e}"))?;
    let mut child = Command::new(&bin)
        .args(["--port", "0", "--tls-port", "1"])
        .args([
            "--tls-cert-file",
            "/nonexistent",
            "--tls-key-file",
            "/nonexistent",
        ])
        .arg("--dir")
        .arg(dir.path())
        .args(["--save", "", "--logfile", ""])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run `{bin}` ({e}); {}", install_hint(&bin)))?;
    let deadline = Instant::now() + PROBE_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() <= deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{bin}` did not exit within {PROBE_DEADLINE:?} when given unusable TLS \
                     certificates"
                ));
            }
        }
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    if text.contains("Failed to configure TLS") {
        Ok(())
    } else {
        // The lines about TLS (without their pid and time stamp), else the last line.
        let about_tls: Vec<&str> = text
            .lines()
            .filter(|line| line.to_ascii_lowercase().contains("tls"))
            .map(|line| line.rsplit_once(" # ").map_or(line, |(_, message)| message))
            .collect();
        let said = if about_tls.is_empty() {
            text.lines().last().unwrap_or("").to_owned()
        } else {
            about_tls.join("; ")
        };
        Err(format!("`{bin}` seems to be built without TLS: {said}"))
    }
}

/// Options for the private server.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Keep an append-only file (AOF) in the data folder.
    pub appendonly: bool,
    /// `appendfsync` policy when `appendonly` is on.
    pub appendfsync: &'static str,
    /// Extra `--name value` arguments.
    pub extra: Vec<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            appendonly: false,
            appendfsync: "everysec",
            extra: Vec::new(),
        }
    }
}

/// A running private redis-server (or whichever binary [`server_bin`] names).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    options: RedisOptions,
    /// The `default` user's password (`requirepass`), if the server requires one.
    password: Option<String>,
    /// Start from `redis.conf` in the data folder (which `CONFIG REWRITE` then updates).
    config_file: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server without persistence.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server with the given options.
    pub fn start_with(options: RedisOptions) -> Self {
        Self::start_inner(options, None)
    }

    /// Starts a server whose `default` user needs `password` (`requirepass`): unauthenticated
    /// clients get NOAUTH. [`RedisServer::url`] carries the password.
    pub fn start_with_password(options: RedisOptions, password: &str) -> Self {
        Self::start_inner(options, Some(password.to_owned()))
    }

    fn start_inner(options: RedisOptions, password: Option<String>) -> Self {
        let mut dir = tempfile::Builder::new()
            .prefix("ordershop-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary data folder: {e}"));
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                child: None,
                port,
                options: options.clone(),
                password: password.clone(),
                config_file: false,
                dir,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => {
                    last_error = e;
                    dir = server.take_dir();
                }
            }
        }
        panic!("could not start {}: {last_error}", server_bin());
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// Restarts the server from a config file in its data folder, as a server managed by
    /// sentinels needs (they rewrite it).
    pub fn with_config_file(mut self) -> Self {
        self.config_file = true;
        if let Err(e) = std::fs::write(self.dir.path().join("redis.conf"), "") {
            panic!("cannot write a config file: {e}");
        }
        self.restart();
        self
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin = server_bin();
        let mut cmd = Command::new(&bin);
        if self.config_file {
            cmd.arg(self.dir.path().join("redis.conf"));
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if self.options.appendonly { "yes" } else { "no" })
            .arg("--appendfsync")
            .arg(self.options.appendfsync)
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.options.extra)
            .args(
                self.password
                    .iter()
                    .flat_map(|pw| ["--requirepass".to_owned(), pw.clone()]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run `{bin}` ({e}); {}", install_hint(&bin)))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if ping(self.addr(), self.password.as_deref()) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(self.dir.path().join("redis.log"))
                        .unwrap_or_default();
                    return Err(format!("{bin} exited with {status}: {log}"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{bin} did not answer PING in time"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`, or `redis://:<password>@127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data folder.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("could not restart {}: {e}", server_bin());
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` distinct loopback ports nobody listens on right now (each is held until all are chosen,
/// so the kernel cannot hand out the same one twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
        })
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("cannot read a bound port: {e}"))
        })
        .collect()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// A command in the RESP protocol, so arguments may hold any byte.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

fn ping(addr: SocketAddr, password: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut request = Vec::new();
    if let Some(password) = password {
        request.extend(resp(&["AUTH", password]));
    }
    request.extend(resp(&["PING"]));
    if stream.write_all(&request).is_err() {
        return false;
    }
    // The AUTH reply (+OK) and PONG may arrive in one read or two.
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    while answer.len() < 64 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if text.contains("+PONG") {
            return true;
        }
        if text.contains('-') {
            return false;
        }
    }
    false
}

/// Waits until `condition` holds, checking every few milliseconds, or panics with `what` after
/// `deadline`. For tests: never sleep to synchronise, wait for a condition with a deadline.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(2);
    while !condition() {
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
