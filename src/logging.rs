//! Logs go to journald when stderr is connected to it (systemd sets `JOURNAL_STREAM`),
//! with structured fields; otherwise to stderr as text.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static TO_JOURNAL: OnceLock<bool> = OnceLock::new();

/// Whether stderr is the journal stream systemd announced (`JOURNAL_STREAM=dev:ino`).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Installs the global subscriber. Call once, early. `progress`: INFO and up, else WARN
/// and up.
pub fn init(progress: bool) {
    let journal = if stderr_is_journal() {
        tracing_journald::layer()
            .ok()
            .map(|l| l.with_syslog_identifier("kubejoin".into()))
    } else {
        None
    };
    let to_journal = journal.is_some();
    let _ = TO_JOURNAL.set(to_journal);
    let level = if progress {
        tracing_subscriber::filter::LevelFilter::INFO
    } else {
        tracing_subscriber::filter::LevelFilter::WARN
    };
    if let Some(layer) = journal {
        let _ = tracing_subscriber::registry()
            .with(layer)
            .with(level)
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .with_max_level(level)
            .try_init();
    }
}

/// Whether logs go to journald (so that messages for people are not printed twice).
pub fn to_journal() -> bool {
    TO_JOURNAL.get().copied().unwrap_or(false)
}
