//! A whole shop for a rig to drive: a private redis-server and every role in one process
//! (`ordershop-rigs shop up`, the `ordershop up` of the `ordershop` library), each role on a free
//! loopback port; and running the `ordershop-rigs` binary.

use ordershop_services::config::Role;
use ordershop_testkit::{eventually, free_ports, RedisServer};
use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long the shop may take to answer its health checks.
const START: Duration = Duration::from_secs(60);

/// The `ordershop-rigs` binary with `args`, its environment cleared of a shop's Redis.
pub fn rigs(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordershop-rigs"));
    command
        .args(args)
        .env_remove("REDIS_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Runs the `ordershop-rigs` binary and returns its output.
pub fn run_rigs(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("the ordershop-rigs binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

pub struct Shop {
    /// Stopped when the shop is dropped, after the shop's process.
    _redis: RedisServer,
    ports: HashMap<Role, u16>,
    process: Child,
    log_dir: tempfile::TempDir,
}

impl Shop {
    /// Starts every role in one process on a private redis-server, and waits until each
    /// answers its health check.
    pub async fn start() -> Shop {
        let redis = RedisServer::start();
        let ports: HashMap<Role, u16> = Role::ALL
            .into_iter()
            .zip(free_ports(Role::ALL.len()))
            .collect();
        let log_dir = tempfile::tempdir().expect("log folder");
        let log = std::fs::File::create(log_dir.path().join("up.log")).expect("log file");
        let mut command = rigs(&["shop", "up"]);
        command
            .env("REDIS_URL", redis.url())
            .env("RUST_LOG", "warn")
            .env("ORDERSHOP_DATA_DIR", log_dir.path().join("data"))
            .env(
                "ORDERSHOP_LISTEN",
                format!("127.0.0.1:{}", ports[&Role::Gateway]),
            )
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for role in Role::ALL {
            if let Some(var) = role.url_var() {
                command.env(var, format!("http://127.0.0.1:{}", ports[&role]));
            }
        }
        let process = command.spawn().expect("the shop starts");
        let shop = Shop {
            _redis: redis,
            ports,
            process,
            log_dir,
        };
        let http = reqwest::Client::new();
        for role in Role::ALL {
            let url = format!("{}/health", shop.url(role));
            let log = shop.log_dir.path().join("up.log");
            eventually(
                &format!("{role} to answer ({})", log.display()),
                START,
                || {
                    let check = http.get(&url).send();
                    async move { check.await.is_ok_and(|r| r.status().is_success()) }
                },
            )
            .await;
        }
        shop
    }

    pub fn url(&self, role: Role) -> String {
        format!("http://127.0.0.1:{}", self.ports[&role])
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
