//! The folder of a local shop (`ordershop up`, `.ordershop` by default) and how operator commands
//! find the shop they act on.
//!
//! The folder holds the private redis-server's data (`redis/`), a lock file and, while the shop
//! runs, `redis.url`. The lock (an exclusive `flock`) is what makes the folder one shop's: `up`
//! takes it before anything else and the private redis-server inherits it, so the folder stays
//! locked until both have exited. A second `up` on the same folder, or one started while an
//! orphaned redis-server still serves it, is refused and changes nothing. `redis.url` is written
//! only once the shop is up and removed when `up` exits; one left behind by a killed `up` is
//! recognised as stale because nobody holds the lock.
//!
//! Operator commands never guess: they use `REDIS_URL`, else the `redis.url` of the nearest
//! shop folder (this folder or a parent; `ORDERSHOP_DATA_DIR` names one directly), and refuse
//! when there is neither or when that shop is not running.

use anyhow::Context;
use ordershop_redis::namespace::{namespace_if_set, use_namespace, Namespace};
use ordershop_redis::RedisConfig;
use ordershop_services::config::DATA_DIR;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The folder `up` uses unless `ORDERSHOP_DATA_DIR` or `--data-dir` says otherwise.
pub const DEFAULT_DIR: &str = ".ordershop";
const LOCK_FILE: &str = "lock";
const URL_FILE: &str = "redis.url";
/// The running shop's gateway address (`host:port`), beside its URL.
const GATEWAY_FILE: &str = "gateway";
/// The running shop's namespace, beside its URL (absent: none).
const NAMESPACE_FILE: &str = "namespace";

/// Why `up` cannot have the folder, or why an operator command found no shop.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("a shop is already running from {0}")]
    AlreadyRunning(PathBuf),
    #[error(
        "a shop is already running from {0}, above this folder: operator commands here would act \
         on it, and a second shop here would hide it from them. Run `ordershop up` there, or pass \
         --data-dir (or ORDERSHOP_DATA_DIR) to start a second shop here on purpose"
    )]
    RunningAbove(PathBuf),
    #[error(
        "no shop is running from {0}: start it with `ordershop up`, or set REDIS_URL to the \
         shop's Redis"
    )]
    NotRunning(PathBuf),
    #[error(
        "no shop found: set REDIS_URL to the shop's Redis, or run this in the folder where \
         `ordershop up` runs (none of this folder and its parents has a {DEFAULT_DIR} folder)"
    )]
    NotFound,
}

/// A shop folder held by one `up`: locked until it and its redis-server have exited.
pub struct ShopFolder {
    dir: PathBuf,
    lock: File,
    url_published: bool,
}

impl ShopFolder {
    /// Creates the folder if needed and locks it, or fails with
    /// [`ShopError::AlreadyRunning`] having changed nothing.
    pub fn take(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => Ok(Self {
                dir,
                lock,
                url_published: false,
            }),
            Err(TryLockError::WouldBlock) => Err(ShopError::AlreadyRunning(dir).into()),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock, for the private redis-server to inherit (so the folder stays locked while it
    /// runs, even if `up` is killed).
    pub fn lock(&self) -> &File {
        &self.lock
    }

    /// Tells operator commands where the shop's Redis is. Written whole (a temporary file renamed
    /// over the old one), so a reader never sees half a URL.
    pub fn publish_url(&mut self, url: &str) -> anyhow::Result<()> {
        // The namespace first: a reader that finds the URL finds the namespace too.
        let namespace = ordershop_redis::namespace::namespace();
        let path = self.dir.join(NAMESPACE_FILE);
        match namespace.name() {
            Some(name) => std::fs::write(&path, name),
            None => std::fs::remove_file(&path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        }
        .with_context(|| format!("cannot write {}", path.display()))?;
        let path = self.dir.join(URL_FILE);
        let temporary = self.dir.join(format!("{URL_FILE}.new"));
        std::fs::write(&temporary, url)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.url_published = true;
        Ok(())
    }

    /// Tells operator commands (`health`) where the shop's gateway listens.
    pub fn publish_gateway(&mut self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let path = self.dir.join(GATEWAY_FILE);
        std::fs::write(&path, addr.to_string())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Removes `redis.url` (and the namespace and gateway beside it): the shop is stopping.
    pub fn withdraw_url(&mut self) {
        if std::mem::take(&mut self.url_published) {
            let _ = std::fs::remove_file(self.dir.join(URL_FILE));
            let _ = std::fs::remove_file(self.dir.join(NAMESPACE_FILE));
            let _ = std::fs::remove_file(self.dir.join(GATEWAY_FILE));
        }
    }
}

impl Drop for ShopFolder {
    fn drop(&mut self) {
        self.withdraw_url();
    }
}

/// The Redis an operator command acts on, and where that choice came from (for the one line
/// every operator command prints).
#[derive(Debug)]
pub struct LocatedShop {
    pub redis: RedisConfig,
    pub source: String,
}

/// Finds the shop: `REDIS_URL`, else the running local shop of `ORDERSHOP_DATA_DIR` or of the
/// nearest `.ordershop` folder from `cwd` upwards (whose namespace, if it has one, then becomes
/// the process's). Reads the environment through `lookup`.
pub fn locate(cwd: &Path, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<LocatedShop> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    if let Some(url) = get("REDIS_URL") {
        let redis = RedisConfig::new(url.trim().to_owned())?.with_tls_from(get)?;
        redis.check_namespace()?;
        return Ok(LocatedShop {
            redis,
            source: "REDIS_URL".into(),
        });
    }
    let folder = match get(DATA_DIR) {
        Some(dir) => cwd.join(dir.trim()),
        None => cwd
            .ancestors()
            .map(|dir| dir.join(DEFAULT_DIR))
            .find(|candidate| candidate.is_dir())
            .ok_or(ShopError::NotFound)?,
    };
    let folder = folder.canonicalize().unwrap_or(folder);
    if !is_running(&folder) {
        return Err(ShopError::NotRunning(folder).into());
    }
    let file = folder.join(URL_FILE);
    let url = std::fs::read_to_string(&file).map_err(|_| ShopError::NotRunning(folder.clone()))?;
    let redis = RedisConfig::new(url.trim().to_owned())
        .with_context(|| format!("{} holds no valid Redis URL", file.display()))?;
    // The shop's namespace, if it has one: the command acts in it, and must not be told another.
    let file = folder.join(NAMESPACE_FILE);
    let theirs = match std::fs::read_to_string(&file) {
        Ok(name) => Namespace::parse(name.trim())
            .map_err(|e| anyhow::anyhow!("{} holds no valid namespace: {e}", file.display()))?,
        Err(_) => Namespace::NONE,
    };
    // The command line (`--namespace`, `ORDERSHOP_NAMESPACE`) set the process's, if it named one.
    match namespace_if_set() {
        Some(ours) if *ours != theirs => anyhow::bail!(
            "the shop running from {} uses the namespace {theirs}, not `{ours}`",
            folder.display()
        ),
        _ => use_namespace(theirs).map_err(anyhow::Error::msg)?,
    }
    Ok(LocatedShop {
        redis,
        source: format!("the shop running from {}", folder.display()),
    })
}

/// The running shop folder in a parent of `cwd` (not `cwd` itself), if there is one: `up` run
/// below it would start a second shop that hides it.
pub fn running_above(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .skip(1)
        .map(|dir| dir.join(DEFAULT_DIR))
        .find(|candidate| candidate.is_dir() && is_running(candidate))
}

/// The gateway address of the shop running from the nearest shop folder (from `cwd` upwards,
/// or `ORDERSHOP_DATA_DIR`), if one runs and published it.
pub fn running_gateway(cwd: &Path, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let folder = match lookup(DATA_DIR).filter(|v| !v.trim().is_empty()) {
        Some(dir) => cwd.join(dir.trim()),
        None => cwd
            .ancestors()
            .map(|dir| dir.join(DEFAULT_DIR))
            .find(|candidate| candidate.is_dir())?,
    };
    if !is_running(&folder) {
        return None;
    }
    std::fs::read_to_string(folder.join(GATEWAY_FILE))
        .ok()
        .map(|addr| addr.trim().to_owned())
}

/// Whether a shop runs from `folder`: an `up` (or its redis-server) holds the folder's lock.
/// Opens the lock file read-only and never creates it.
pub fn is_running(folder: &Path) -> bool {
    let Ok(file) = File::open(folder.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn redis_url_wins_and_is_named_as_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let found = locate(dir.path(), env(&[("REDIS_URL", "redis://10.0.0.1:7000")])).unwrap();
        assert_eq!(found.source, "REDIS_URL");
        assert_eq!(found.redis.server(), "10.0.0.1:7000");
    }

    #[test]
    fn without_a_url_or_a_folder_nothing_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(dir.path(), env(&[])).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(ShopError::NotFound)),
            "{err}"
        );
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
    }

    #[test]
    fn a_parent_folder_shop_is_found_only_while_it_is_locked() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        let mut shop = ShopFolder::take(&root.path().join(DEFAULT_DIR)).unwrap();
        shop.publish_url("redis://127.0.0.1:6390").unwrap();
        let found = locate(&nested, env(&[])).unwrap();
        assert_eq!(found.redis.server(), "127.0.0.1:6390");
        assert!(found.source.contains(DEFAULT_DIR), "{}", found.source);

        // A second `up` on the same folder is refused and leaves the URL alone.
        let err = ShopFolder::take(&root.path().join(DEFAULT_DIR))
            .err()
            .expect("the folder is taken");
        assert!(err
            .to_string()
            .starts_with("a shop is already running from "));
        let url = std::fs::read_to_string(shop.dir().join(URL_FILE)).unwrap();
        assert_eq!(url, "redis://127.0.0.1:6390");

        // A URL file left behind by a killed `up` (no lock held) is stale.
        let dir = shop.dir().to_owned();
        shop.url_published = false;
        drop(shop);
        assert!(dir.join(URL_FILE).exists());
        let err = locate(&nested, env(&[])).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(ShopError::NotRunning(_))),
            "{err}"
        );
    }
}
