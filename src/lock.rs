//! One run at a time: `kubejoin run` and `kubejoin plan` hold an exclusive lock on
//! `/run/kubejoin/lock` (flock, released by the kernel when the process ends, however it
//! ends), so that kubejoin.service and an operator's manual run never interleave. The
//! holder writes its PID and command line into the file; a second instance waits a
//! bounded time, then gives up naming them. `status` and `discover` never lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LOCK_FILE: &str = "/run/kubejoin/lock";

/// The lock, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another kubejoin holds {path}: {holder}; gave up after {}s", waited.as_secs())]
    Held {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LockError {
    pub fn fix(&self) -> String {
        match self {
            LockError::Held { .. } => "wait for that run to finish (`journalctl -u kubejoin` shows its \
                progress) or stop it; kubejoin.service retries by itself; --lock-timeout waits longer"
                .into(),
            LockError::Io { .. } => "kubejoin needs root and a writable /run".into(),
        }
    }
}

/// `PID (command line)` from the lock file's text, as the holder wrote it.
pub fn describe_holder(text: &str) -> String {
    let mut lines = text.lines();
    match (
        lines.next().and_then(|p| p.trim().parse::<u32>().ok()),
        lines.next(),
    ) {
        (Some(pid), Some(cmd)) if !cmd.trim().is_empty() => format!("PID {pid} ({})", cmd.trim()),
        (Some(pid), _) => format!("PID {pid}"),
        _ => "a process that has not said who it is yet".into(),
    }
}

/// This process's command line, words joined by spaces (the token is never on it).
fn own_command() -> String {
    std::fs::read("/proc/self/cmdline")
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Takes the lock at `path`, waiting at most `wait` for another holder.
pub async fn acquire(path: &Path, wait: Duration) -> Result<RunLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(io)?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut text = String::new();
        let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
        let holder = describe_holder(&text);
        if started.elapsed() >= wait {
            return Err(LockError::Held {
                path: path.to_path_buf(),
                holder,
                waited: wait,
            });
        }
        if !told {
            tracing::info!(phase = "lock", "waiting for the run of {holder} to finish");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let me = format!("{}\n{}\n", std::process::id(), own_command());
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(me.as_bytes()))
        .map_err(io)?;
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_described() {
        assert_eq!(
            describe_holder("4242\n/usr/bin/kubejoin run\n"),
            "PID 4242 (/usr/bin/kubejoin run)"
        );
        assert_eq!(describe_holder("4242\n"), "PID 4242");
        assert_eq!(
            describe_holder(""),
            "a process that has not said who it is yet"
        );
    }

    #[tokio::test]
    async fn a_second_holder_waits_then_names_the_first() {
        let dir = std::env::temp_dir().join(format!("kubejoin-lock-{}", std::process::id()));
        let path = dir.join("lock");
        let first = acquire(&path, Duration::ZERO).await.unwrap();
        let e = acquire(&path, Duration::from_millis(300))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("PID {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        let again = acquire(&path, Duration::ZERO).await;
        assert!(again.is_ok(), "released when dropped");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
