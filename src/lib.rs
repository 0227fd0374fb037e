//! kubejoin: joins a Linux worker to a Kubernetes cluster with one bootstrap token.
//!
//! The library holds everything; `src/main.rs` is the command line over it. It is a
//! library so that the parsers of untrusted input (cluster-info, JWS, X.509, the token,
//! the pin, the configuration, HTTP dates) can be driven from outside: the fuzz targets
//! in `fuzz/`.

pub mod cli;
pub mod clock;
pub mod cluster;
pub mod cluster_info;
pub mod config;
pub mod diff;
pub mod discovery;
pub mod doctor;
pub mod endpoint;
pub mod failpoint;
pub mod fsutil;
pub mod host;
pub mod init;
pub mod join;
pub mod jws;
pub mod kubeconfig;
pub mod kubelet;
pub mod ledger;
pub mod lock;
pub mod logging;
pub mod pin;
pub mod preflight;
pub mod reset;
pub mod sys;
pub mod systemd;
pub mod token;
pub mod x509;

use config::ConfigError;
use discovery::DiscoveryError;

/// Exit statuses, kept by every command (see `--help`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const TRANSIENT: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const TRUST: u8 = 3;
}

/// Every failure a command can end with, mapped to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Discovery(Box<DiscoveryError>),
    #[error(transparent)]
    Systemd(Box<systemd::dbus::SystemdError>),
    #[error("{message}")]
    Fixable { message: String, fix: String },
    /// A command-line argument or file the user gave cannot be used: exit status 2.
    #[error("{message}")]
    Usage { message: String, fix: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
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
            Failure::Config(_) | Failure::Usage { .. } => exit::CONFIG,
            Failure::Discovery(d) if matches!(**d, DiscoveryError::Trust(_)) => exit::TRUST,
            Failure::Discovery(_)
            | Failure::Systemd(_)
            | Failure::Fixable { .. }
            | Failure::Other(_) => exit::TRANSIENT,
        }
    }

    /// What to do about it, when kubejoin knows.
    pub fn fix(&self) -> Option<String> {
        match self {
            Failure::Config(_) => Some(
                "correct it and run kubejoin again; configuration errors are not retried \
                 (every key is documented in /etc/kubejoin/config.toml.example and `kubejoin discover --help`)"
                    .into(),
            ),
            Failure::Discovery(d) => Some(d.fix()),
            Failure::Systemd(e) => Some(e.fix()),
            Failure::Fixable { fix, .. } | Failure::Usage { fix, .. } => Some(fix.clone()),
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
    use discovery::TrustFailure;

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
        });
        assert_eq!(config.exit_code(), exit::CONFIG);
        let usage = Failure::Usage {
            message: "x".into(),
            fix: "y".into(),
        };
        assert_eq!(usage.exit_code(), exit::CONFIG);
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
