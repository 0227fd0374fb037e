//! How a command ends: every failure, the exit status it maps to and the fix it names,
//! and the one table of exit statuses.

use crate::config::ConfigError;
use crate::discovery::DiscoveryError;
use crate::{fsutil, systemd};

/// One exit status: what it means, and whether systemd runs kubejoin again after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: u8,
    /// The journal's `kind=` field of a failure with this status.
    pub kind: &'static str,
    pub meaning: &'static str,
    /// `Restart=on-failure` runs the join again; the statuses it must not retry are the
    /// unit's `RestartPreventExitStatus=`.
    pub retried: bool,
}

/// The exit statuses, kept by every command: the help text, the man page, the README and
/// the unit's `RestartPreventExitStatus=` are all this table.
pub mod exit {
    use super::ExitStatus;

    pub const OK: u8 = 0;
    pub const TRANSIENT: u8 = 1;
    pub const NEEDS_PERSON: u8 = 2;
    pub const TRUST: u8 = 3;

    pub const TABLE: [ExitStatus; 4] = [
        ExitStatus {
            code: OK,
            kind: "ok",
            meaning: "success",
            retried: false,
        },
        ExitStatus {
            code: TRANSIENT,
            kind: "transient",
            meaning: "transient failure (the API server unreachable, cluster-info not signed yet, \
                      kubelet exited, a timeout, a control-plane step still missing, which the \
                      operator fixes once for every worker): systemd runs the join again",
            retried: true,
        },
        ExitStatus {
            code: NEEDS_PERSON,
            kind: "needs-person",
            meaning: "needs a person (a configuration error, a failed preflight check, a bootstrap \
                      token the cluster does not know, an argument or object that cannot be used): \
                      fix what the error names, then run kubejoin again; never retried",
            retried: false,
        },
        ExitStatus {
            code: TRUST,
            kind: "trust",
            meaning: "trust failure (bad signature, CA pin mismatch, cluster-info changed, wrong \
                      certificate): possibly an attack, never retried",
            retried: false,
        },
    ];

    /// The `kind=` of a status.
    pub fn kind(code: u8) -> &'static str {
        TABLE
            .iter()
            .find(|s| s.code == code)
            .map_or("unknown", |s| s.kind)
    }

    /// For `--help` and the man page.
    pub fn help() -> String {
        let mut out = String::from("Exit status:");
        for s in TABLE {
            let mut line = format!("  {}  ", s.code);
            for word in s.meaning.split(' ') {
                if line.len() + word.len() > 90 {
                    out.push('\n');
                    out.push_str(line.trim_end());
                    line = " ".repeat(5);
                }
                line.push_str(word);
                line.push(' ');
            }
            out.push('\n');
            out.push_str(line.trim_end());
        }
        out
    }

    /// The README's table.
    pub fn markdown() -> String {
        let mut out = String::from("| status | meaning |\n|---|---|\n");
        for s in TABLE {
            out.push_str(&format!("| {} | {} |\n", s.code, s.meaning));
        }
        out
    }

    /// The unit's `RestartPreventExitStatus=` value: the failures systemd must not retry.
    pub fn restart_prevent() -> String {
        TABLE
            .iter()
            .filter(|s| s.code != OK && !s.retried)
            .map(|s| s.code.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Every failure a command can end with, mapped to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("configuration error: {0}")]
    Config(ConfigError),
    #[error(transparent)]
    Discovery(Box<DiscoveryError>),
    #[error(transparent)]
    Systemd(Box<systemd::dbus::SystemdError>),
    /// Trying again can fix it (exit status 1).
    #[error("{message}")]
    Transient { message: String, fix: String },
    /// Something on this node, or an argument or file the user gave, must be changed
    /// first (exit status 2).
    #[error("{message}")]
    NeedsPerson { message: String, fix: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<ConfigError> for Failure {
    /// A configuration error needs a person, but for a `token_command` that failed or
    /// timed out: running it again may work.
    fn from(e: ConfigError) -> Self {
        if e.transient {
            Failure::Transient {
                message: e.to_string(),
                fix: "kubejoin runs it again when systemd restarts kubejoin.service; if it keeps failing, run \
                      the command as root by hand to see why (its output, the token, is never logged)"
                    .into(),
            }
        } else {
            Failure::Config(e)
        }
    }
}

impl From<DiscoveryError> for Failure {
    fn from(e: DiscoveryError) -> Self {
        Failure::Discovery(Box::new(e))
    }
}

impl From<fsutil::FileError> for Failure {
    fn from(e: fsutil::FileError) -> Self {
        Failure::Other(e.into())
    }
}

impl From<systemd::dbus::SystemdError> for Failure {
    fn from(e: systemd::dbus::SystemdError) -> Self {
        Failure::Systemd(Box::new(e))
    }
}

impl Failure {
    /// The exit status this failure ends a command with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) | Failure::NeedsPerson { .. } => exit::NEEDS_PERSON,
            Failure::Discovery(d) if matches!(**d, DiscoveryError::Trust(_)) => exit::TRUST,
            Failure::Discovery(d) if matches!(**d, DiscoveryError::TokenRefused { .. }) => {
                exit::NEEDS_PERSON
            }
            Failure::Discovery(_)
            | Failure::Systemd(_)
            | Failure::Transient { .. }
            | Failure::Other(_) => exit::TRANSIENT,
        }
    }

    /// What to do about it, when kubejoin knows.
    pub fn fix(&self) -> Option<String> {
        match self {
            Failure::Config(_) => Some(
                "correct it and run kubejoin again; configuration errors are not retried \
                 (every key is documented in `man 5 kubejoin-config.toml`, in \
                 /etc/kubejoin/config.toml.example where a package installed kubejoin, and in \
                 `kubejoin discover --help`)"
                    .into(),
            ),
            Failure::Discovery(d) => Some(d.fix()),
            Failure::Systemd(e) => Some(e.fix()),
            Failure::Transient { fix, .. } | Failure::NeedsPerson { fix, .. } => Some(fix.clone()),
            Failure::Other(e) => other_fix(e),
        }
    }
}

/// The fix for a failure of a host change, from the first cause in its chain that knows
/// one: a file that could not be written, a systemd job, a bare system error.
fn other_fix(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| {
        if let Some(f) = cause.downcast_ref::<fsutil::FileError>() {
            f.fix()
        } else if let Some(s) = cause.downcast_ref::<systemd::dbus::SystemdError>() {
            Some(s.fix())
        } else {
            let io = cause.downcast_ref::<std::io::Error>()?;
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            fsutil::io_fix(io, std::path::Path::new("/"), &mounts)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_table_is_what_help_and_the_unit_say() {
        let help = exit::help();
        assert!(
            help.starts_with("Exit status:\n  0  success\n  1  transient failure"),
            "{help}"
        );
        assert!(help.lines().all(|l| l.len() <= 92), "{help}");
        assert!(help.contains("\n  3  trust failure"), "{help}");
        assert_eq!(exit::restart_prevent(), "2 3");
        assert!(exit::markdown().contains("\n| 2 | needs a person"));
    }
    use crate::config;
    use crate::discovery::TrustFailure;

    #[test]
    fn exit_codes() {
        let trust = Failure::from(DiscoveryError::Trust(TrustFailure::KubeconfigChanged));
        assert_eq!(trust.exit_code(), exit::TRUST);
        let unusable = Failure::from(DiscoveryError::Unusable("x".into()));
        assert_eq!(unusable.exit_code(), exit::TRANSIENT);
        let config = Failure::Config(ConfigError {
            origin: config::Origin::Flag("--server"),
            key: None,
            message: "x".into(),
            transient: false,
        });
        assert_eq!(config.exit_code(), exit::NEEDS_PERSON);
        let usage = Failure::NeedsPerson {
            message: "x".into(),
            fix: "y".into(),
        };
        assert_eq!(usage.exit_code(), exit::NEEDS_PERSON);
        assert_eq!(usage.fix().as_deref(), Some("y"));
    }

    #[test]
    fn a_host_change_that_failed_gets_the_fix_of_its_cause() {
        use anyhow::Context;
        let full = fsutil::FileError {
            what: "write",
            path: "/var/lib/kubelet/bootstrap-kubeconfig".into(),
            source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        };
        let e = Failure::Other(anyhow::Error::from(full).context("writing kubelet's files"));
        assert!(
            e.fix().unwrap().contains("is full: free space there"),
            "{:?}",
            e.fix()
        );
        let job = systemd::dbus::SystemdError::Job {
            verb: "restart",
            unit: "docker.service".into(),
            result: "failed".into(),
            status: Default::default(),
        };
        let e = Failure::Other(anyhow::Error::from(job));
        assert!(e.fix().unwrap().contains("journalctl -u docker.service"));
        let bare: Result<(), std::io::Error> =
            Err(std::io::Error::from_raw_os_error(nix::libc::EROFS));
        let e = Failure::Other(bare.context("set a sysctl").unwrap_err());
        assert!(e.fix().unwrap().contains("read-only"));
        let e = Failure::Other(anyhow::anyhow!("something else"));
        assert_eq!(e.fix(), None);
    }
}
