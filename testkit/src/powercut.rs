//! A folder whose unsynced writes are lost when the power is cut: a small FUSE filesystem
//! (`testkit/powercut/power_cut_fs.py`, fusepy over libfuse 2) that keeps files in memory, each
//! with the bytes last made durable by fsync. [`PowerCutFs::cut_power`] brings every file back to
//! those bytes, as a machine that lost power with data still in its page cache; killing a
//! process alone never does that (the kernel still writes its page cache out).
//!
//! Mounting needs `/dev/fuse` and the right to mount (root), Python with fusepy, and libfuse 2;
//! [`PowerCutFs::mount`] says which is missing instead of mounting, so a test can skip saying
//! why.

use crate::wait_until;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long mounting and unmounting may take.
const MOUNT_DEADLINE: Duration = Duration::from_secs(20);
/// The file whose write cuts the power (its read gives the totals).
const CONTROL: &str = ".power-cut";

/// A mounted power-cut filesystem; unmounted when dropped.
pub struct PowerCutFs {
    child: Option<Child>,
    mount: tempfile::TempDir,
    log: PathBuf,
}

/// What the cuts so far have thrown away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutTotals {
    pub cuts: u64,
    /// Bytes written past files' durable ends and lost.
    pub lost_bytes: u64,
    /// Files brought back to an earlier state, counted once per cut.
    pub files: u64,
}

impl PowerCutFs {
    /// Mounts a new, empty filesystem on a temporary folder. `Err` says what is missing.
    pub fn mount() -> Result<Self, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("/dev/fuse does not exist (no FUSE in this kernel or container)".into());
        }
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let probe = Command::new(&python)
            .args(["-c", "import fuse"])
            .output()
            .map_err(|e| format!("cannot run `{python}`: {e}"))?;
        if !probe.status.success() {
            return Err(format!(
                "`{python}` cannot import fusepy (pip install fusepy; it needs libfuse 2): {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            ));
        }
        let mount = tempfile::Builder::new()
            .prefix("ordershop-powercut-")
            .tempdir()
            .map_err(|e| format!("cannot make a mount point: {e}"))?;
        let log = std::env::temp_dir().join(format!(
            "ordershop-powercut-{}.log",
            mount
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("cannot create the fs log: {e}"))?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("powercut/power_cut_fs.py");
        let child = Command::new(&python)
            .arg(&script)
            .arg(mount.path())
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .map_err(|e| format!("cannot share the fs log: {e}"))?,
            )
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
        let mut fs = Self {
            child: Some(child),
            mount,
            log,
        };
        // Mounted once the control file answers; a process that exited will not mount.
        let control = fs.mount.path().join(CONTROL);
        let mut exited = None;
        wait_until("the power-cut filesystem to mount", MOUNT_DEADLINE, || {
            if let Some(child) = fs.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            control.exists()
        });
        if let Some(status) = exited {
            fs.child = None;
            return Err(format!(
                "the power-cut filesystem exited with {status} (mounting needs root): {}",
                std::fs::read_to_string(&fs.log).unwrap_or_default().trim()
            ));
        }
        Ok(fs)
    }

    /// The mounted folder.
    pub fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Cuts the power: every file loses what was written since its last fsync. Returns once
    /// done. Stop the processes writing there first (a killed process is gone at once).
    pub fn cut_power(&self) -> CutTotals {
        let control = self.path().join(CONTROL);
        if let Err(e) = std::fs::write(&control, b"cut") {
            panic!("cannot cut the power through {}: {e}", control.display());
        }
        self.totals()
    }

    /// The totals of every cut so far.
    pub fn totals(&self) -> CutTotals {
        let control = self.path().join(CONTROL);
        let text = std::fs::read_to_string(&control)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", control.display()));
        let mut totals = CutTotals::default();
        for field in text.split_whitespace() {
            let Some((name, value)) = field.split_once('=') else {
                continue;
            };
            let value = value.parse().unwrap_or(0);
            match name {
                "cuts" => totals.cuts = value,
                "lost_bytes" => totals.lost_bytes = value,
                "files" => totals.files = value,
                _ => {}
            }
        }
        totals
    }
}

impl Drop for PowerCutFs {
    fn drop(&mut self) {
        // `umount` makes the filesystem process exit; a lazy unmount does not wait for users.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let deadline = std::time::Instant::now() + MOUNT_DEADLINE;
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
