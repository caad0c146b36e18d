//! A private redis-server for `ordershop up` on a developer's machine: data kept under a local
//! folder with the append-only file on, started before the shop and shut down cleanly after it.
//! `ordershop bench` starts one without persistence in a temporary folder.

use anyhow::{bail, Context};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Port tried first, so that the URL stays the same from run to run.
const PREFERRED_PORT: u16 = 6380;

pub struct LocalRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl LocalRedis {
    /// Starts redis-server with its data in `<data_dir>/redis` and AOF on. `fsync` is the
    /// `appendfsync` policy (`everysec` by default, `always` in strict mode).
    pub async fn start(data_dir: &Path, fsync: &str) -> anyhow::Result<Self> {
        Self::start_with(data_dir, Some(fsync)).await
    }

    /// Starts redis-server with no persistence at all (no AOF, no snapshots): for the bench,
    /// which measures in-memory work and throws the data away.
    pub async fn start_without_persistence(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, None).await
    }

    /// `aof`: the `appendfsync` policy with the AOF on, or `None` for no AOF.
    async fn start_with(data_dir: &Path, aof: Option<&str>) -> anyhow::Result<Self> {
        let dir = data_dir.join("redis");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let port = pick_port();
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&dir);
        match aof {
            Some(fsync) => command
                .arg("--appendonly")
                .arg("yes")
                .arg("--appendfsync")
                .arg(fsync),
            None => command.arg("--appendonly").arg("no"),
        };
        let child = command
            .arg("--save")
            .arg("")
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "redis-server is not installed. Install it (Debian/Ubuntu: `sudo apt-get install \
                 redis-server`; macOS: `brew install redis`) or set REDIS_URL to a running Redis"
            ),
            Err(e) => return Err(e).context("cannot start redis-server"),
        };
        let mut redis = Self { child, port, dir };
        redis.wait_ready().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if ping(addr).await {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "redis-server exited with {status}; see {}",
                    self.dir.join("redis.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not answer on port {} within 30 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the server to shut down (it fsyncs the AOF first) and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let _ = stream.write_all(b"SHUTDOWN\r\n").await;
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

fn pick_port() -> u16 {
    if TcpListener::bind(("127.0.0.1", PREFERRED_PORT)).is_ok()
        && TcpStream::connect(("127.0.0.1", PREFERRED_PORT)).is_err()
    {
        return PREFERRED_PORT;
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(PREFERRED_PORT)
}

async fn ping(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].starts_with(b"+PONG"),
        _ => false,
    }
}
