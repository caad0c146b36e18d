//! A private redis-server for `ordershop up` on a developer's machine: data kept under a local
//! folder with the append-only file on, started before the shop and shut down cleanly after it.
//! `ordershop bench` starts one without persistence in a temporary folder.
//!
//! The server dies with the process that started it: on Linux it gets SIGTERM (a clean
//! shutdown, the AOF flushed) when its parent exits, even by SIGKILL, so no orphan keeps serving
//! a data folder that the next `up` would open a second time. `up` also hands it the folder's
//! lock ([`crate::local_shop`]), which it keeps until it has exited.

use anyhow::{bail, Context};
use ordershop_services::config::SERVER_BIN;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Port tried first, so that the URL stays the same from run to run.
const PREFERRED_PORT: u16 = 6380;
/// Ports tried before giving up (another program may take a free port before the server does).
const PORT_ATTEMPTS: usize = 5;

pub struct LocalRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// What a restart needs to start the same server again.
    persistence: Persistence,
    lock: Option<File>,
}

/// How the private server keeps its data.
#[derive(Debug, Clone)]
enum Persistence {
    /// AOF on with this `appendfsync` policy.
    Aof(String),
    None,
}

impl LocalRedis {
    /// Starts redis-server with its data in `<data_dir>/redis` and AOF on. `fsync` is the
    /// `appendfsync` policy (`everysec` by default, `always` in strict mode). `lock`, if given,
    /// is inherited by the server, which holds it until it exits.
    pub async fn start(data_dir: &Path, fsync: &str, lock: Option<&File>) -> anyhow::Result<Self> {
        Self::start_with(data_dir, Persistence::Aof(fsync.to_owned()), lock).await
    }

    /// Starts redis-server with no persistence at all (no AOF, no snapshots): for the bench,
    /// which measures in-memory work and throws the data away.
    pub async fn start_without_persistence(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, Persistence::None, None).await
    }

    async fn start_with(
        data_dir: &Path,
        persistence: Persistence,
        lock: Option<&File>,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("redis");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let mut last_error = None;
        for attempt in 0..PORT_ATTEMPTS {
            let port = pick_port(attempt == 0);
            let child = spawn(&dir, port, &persistence, lock)?;
            let mut redis = Self {
                child,
                port,
                dir: dir.clone(),
                persistence: persistence.clone(),
                lock: lock.map(File::try_clone).transpose()?,
            };
            match redis.wait_ready().await {
                Ok(()) => return Ok(redis),
                Err(e) => {
                    // Most likely the port was taken meanwhile: try another one.
                    let _ = redis.child.kill().await;
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the server exits, for whatever reason, and says how.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("an unknown status ({e})"),
        }
    }

    /// Starts the server again on the same folder and port (so that every connection of the
    /// shop finds it where it was), with the same settings; waits until it has loaded its data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(&self.dir, self.port, &self.persistence, self.lock.as_ref())?;
        self.wait_ready().await
    }

    /// Waits until the server answers on its port and has loaded its data (PING answers PONG,
    /// not LOADING), and checks that the one answering is this child (`INFO server`'s
    /// `process_id`): another server that took the port first (two `up`s starting at once both
    /// like 6380) must never be mistaken for ours.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(pid) = answering_pid(addr).await {
                if Some(pid) != self.child.id() {
                    bail!("port {} is served by another server (pid {pid})", self.port);
                }
                if answers_pong(addr).await {
                    return Ok(());
                }
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

    /// Asks the server to shut down with SIGTERM (it fsyncs the AOF first; a signal reaches
    /// this child and no other server) and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with a pid of our own child that has not been reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
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

fn spawn(
    dir: &Path,
    port: u16,
    persistence: &Persistence,
    lock: Option<&File>,
) -> anyhow::Result<Child> {
    let bin = std::env::var(SERVER_BIN).unwrap_or_else(|_| "redis-server".into());
    let mut command = Command::new(&bin);
    command
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--dir")
        .arg(dir)
        // The log must never be evicted: full means refusing writes (507), not losing events.
        .arg("--maxmemory-policy")
        .arg("noeviction");
    match persistence {
        Persistence::Aof(fsync) => command
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg(fsync),
        Persistence::None => command.arg("--appendonly").arg("no"),
    };
    command
        .arg("--save")
        .arg("")
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    die_with_parent(&mut command, lock);
    match command.spawn() {
        Ok(child) => Ok(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{bin} is not installed. Install Redis >= 7.0 (Debian/Ubuntu: `sudo apt-get install \
             redis-server`; macOS: `brew install redis`), name another server binary in \
             {SERVER_BIN}, or set REDIS_URL to a running Redis"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot start {bin}")),
    }
}

/// In the child, between fork and exec: ask the kernel for SIGTERM when the parent dies (and
/// die now if it already has), and keep the folder's lock open across exec.
#[cfg(unix)]
fn die_with_parent(command: &mut Command, lock: Option<&File>) {
    use std::os::fd::AsRawFd;
    let lock_fd = lock.map(AsRawFd::as_raw_fd);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid, fcntl), as `pre_exec` requires.
    unsafe {
        command.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other(
                        "the parent exited before the server started",
                    ));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            if let Some(fd) = lock_fd {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(not(unix))]
fn die_with_parent(_command: &mut Command, _lock: Option<&File>) {}

/// The preferred port when `preferred` and it is free, else a free port the system picks.
fn pick_port(preferred: bool) -> u16 {
    if preferred
        && TcpListener::bind(("127.0.0.1", PREFERRED_PORT)).is_ok()
        && TcpStream::connect(("127.0.0.1", PREFERRED_PORT)).is_err()
    {
        return PREFERRED_PORT;
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(PREFERRED_PORT)
}

/// Whether the server on `addr` answers PING with PONG (while it loads its data it answers
/// LOADING).
async fn answers_pong(addr: SocketAddr) -> bool {
    ask(addr, b"PING\r\n", |reply| reply.ends_with(b"\r\n"))
        .await
        .is_some_and(|reply| reply.starts_with(b"+PONG"))
}

/// The `process_id` of the server answering on `addr`, if one answers `INFO server`.
async fn answering_pid(addr: SocketAddr) -> Option<u32> {
    // The line is whole once its `\r` arrived.
    let pid_line = |reply: &[u8]| {
        String::from_utf8_lossy(reply)
            .split('\n')
            .find_map(|l| l.strip_prefix("process_id:")?.strip_suffix('\r'))
            .map(|pid| pid.trim().to_owned())
    };
    let reply = ask(addr, b"INFO server\r\n", |reply| {
        reply.starts_with(b"-") || pid_line(reply).is_some()
    })
    .await?;
    pid_line(&reply)?.parse().ok()
}

/// Sends one command on a new connection and reads until `whole(reply so far)`, within 700 ms.
async fn ask(addr: SocketAddr, command: &[u8], whole: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(command).await.ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !whole(&reply) {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || reply.len() > 64 * 1024 {
                return None;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Some(reply)
    };
    tokio::time::timeout(Duration::from_millis(700), exchange)
        .await
        .ok()
        .flatten()
}
