//! Host preparation, the first phase of `kubejoin run`: what the seed does by hand to a
//! worker, done persistently and planned first. [`inspect`] reads the host into
//! [`Facts`], [`plan`] (pure) says what must change and why, [`apply`] does it.
//!
//! Steps so far: swap and kernel prerequisites. (The container runtime, netfilter and
//! docker0 are the rest of the host-preparation issue.)

pub mod kernel;
pub mod swap;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::fsutil;
use crate::join::plan::line_diff;
use crate::systemd::dbus::Systemd;

pub const FSTAB: &str = "/etc/fstab";
/// The one-time backup suffix of every file kubejoin edits (`kubejoin reset` restores it).
pub const BACKUP_SUFFIX: &str = ".kubejoin-orig";

/// The `[host]` settings: which steps run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    pub swap: bool,
    pub kernel: bool,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            swap: true,
            kernel: true,
        }
    }
}

/// What the host looks like.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub swaps: Vec<PathBuf>,
    /// `/etc/fstab`'s text and mode, if it exists.
    pub fstab: Option<(String, u32)>,
    pub fstab_backup_exists: bool,
    /// Units whose unit file is masked already.
    pub masked: BTreeSet<String>,
    /// kubejoin's modules-load.d and sysctl.d files, as they are.
    pub modules_file: Option<String>,
    pub sysctl_file: Option<String>,
    /// Modules whose function is missing from the kernel.
    pub missing_modules: Vec<&'static str>,
    /// Sysctls and their current values (`None`: the key does not exist yet).
    pub sysctls: Vec<(&'static str, Option<String>)>,
}

/// One change to the host, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Change {
    /// `swapoff(2)`.
    Swapoff { path: PathBuf, why: &'static str },
    /// A file edited in place; the original kept once as `<path>.kubejoin-orig`.
    Edit {
        path: PathBuf,
        why: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        backup: Option<PathBuf>,
        diff: String,
        #[serde(skip)]
        contents: String,
        #[serde(skip)]
        mode: u32,
    },
    /// `Manager.MaskUnitFiles`.
    Mask { unit: String, why: &'static str },
    /// A file kubejoin owns, written whole.
    Write {
        path: PathBuf,
        why: &'static str,
        diff: String,
        #[serde(skip)]
        contents: String,
    },
    /// `Manager.RestartUnit(replace)`, waiting for its result.
    Restart { unit: String, why: String },
    /// A write to `/proc/sys`.
    Sysctl {
        key: &'static str,
        from: Option<String>,
        to: &'static str,
    },
}

impl Change {
    pub fn describe(&self) -> String {
        match self {
            Change::Swapoff { path, why } => format!("swapoff {} ({why})", path.display()),
            Change::Edit {
                path, why, backup, ..
            } => format!(
                "edit {} ({why}){}",
                path.display(),
                backup
                    .as_ref()
                    .map(|b| format!(", original kept as {}", b.display()))
                    .unwrap_or_default()
            ),
            Change::Mask { unit, why } => format!("MaskUnitFiles {unit} ({why})"),
            Change::Write { path, why, .. } => format!("write {} ({why})", path.display()),
            Change::Restart { unit, why } => format!("RestartUnit {unit} replace ({why})"),
            Change::Sysctl { key, from, to } => format!(
                "sysctl {key} = {to} (now {})",
                from.as_deref().unwrap_or("unset")
            ),
        }
    }
}

const SWAP_WHY: &str = "kubelet does not run with swap on";

/// The changes that bring the host from `facts` to what kubelet needs.
pub fn plan(settings: &HostSettings, facts: &Facts) -> Vec<Change> {
    let mut changes = Vec::new();
    if settings.swap {
        for path in &facts.swaps {
            changes.push(Change::Swapoff {
                path: path.clone(),
                why: SWAP_WHY,
            });
        }
        let mut units: BTreeSet<String> = facts.swaps.iter().map(|p| swap::swap_unit(p)).collect();
        if let Some((text, mode)) = &facts.fstab {
            units.extend(swap::fstab_swaps(text).iter().map(|p| swap::swap_unit(p)));
            if let Some(new) = swap::comment_out_swaps(text) {
                changes.push(Change::Edit {
                    path: FSTAB.into(),
                    why: "so that swap stays off after a reboot",
                    backup: (!facts.fstab_backup_exists)
                        .then(|| PathBuf::from(format!("{FSTAB}{BACKUP_SUFFIX}"))),
                    diff: line_diff(text, &new),
                    contents: new,
                    mode: *mode,
                });
            }
        }
        for unit in units.difference(&facts.masked) {
            changes.push(Change::Mask {
                unit: unit.clone(),
                why: "so that systemd does not turn the swap on again",
            });
        }
    }
    if settings.kernel {
        for (path, want, have, why) in [
            (
                kernel::MODULES_FILE,
                kernel::modules_file(),
                &facts.modules_file,
                "load overlay and br_netfilter at every boot",
            ),
            (
                kernel::SYSCTL_FILE,
                kernel::sysctl_file(),
                &facts.sysctl_file,
                "forwarding and bridge netfilter at every boot",
            ),
        ] {
            if have.as_deref() != Some(want.as_str()) {
                changes.push(Change::Write {
                    path: path.into(),
                    why,
                    diff: line_diff(have.as_deref().unwrap_or_default(), &want),
                    contents: want,
                });
            }
        }
        if !facts.missing_modules.is_empty() {
            changes.push(Change::Restart {
                unit: kernel::MODULES_LOAD_UNIT.into(),
                why: format!("load {} now", facts.missing_modules.join(" and ")),
            });
        }
        let loading_bridge = facts.missing_modules.contains(&"br_netfilter");
        for (key, want) in kernel::SYSCTLS {
            let have = facts
                .sysctls
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.clone());
            // The bridge keys appear with br_netfilter: set them after it loads.
            if have.as_deref() != Some(want) && (have.is_some() || loading_bridge) {
                changes.push(Change::Sysctl {
                    key,
                    from: have,
                    to: want,
                });
            }
        }
    }
    changes
}

/// Reads the host.
pub async fn inspect(settings: &HostSettings, systemd: &Systemd) -> anyhow::Result<Facts> {
    use std::os::unix::fs::PermissionsExt;
    let mut facts = Facts::default();
    if settings.kernel {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        facts.modules_file = read(kernel::MODULES_FILE);
        facts.sysctl_file = read(kernel::SYSCTL_FILE);
        facts.missing_modules = kernel::MODULES
            .iter()
            .filter(|(_, present)| !Path::new(present).exists())
            .map(|(m, _)| *m)
            .collect();
        facts.sysctls = kernel::SYSCTLS
            .iter()
            .map(|(k, _)| {
                (
                    *k,
                    read(&kernel::proc_path(k)).map(|v| v.trim().to_string()),
                )
            })
            .collect();
    }
    if !settings.swap {
        return Ok(facts);
    }
    facts.swaps = swap::parse_proc_swaps(
        &std::fs::read_to_string("/proc/swaps").context("failed to read /proc/swaps")?,
    );
    facts.fstab = match std::fs::read_to_string(FSTAB) {
        Ok(text) => Some((
            text,
            std::fs::metadata(FSTAB)?.permissions().mode() & 0o7777,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("failed to read /etc/fstab"),
    };
    facts.fstab_backup_exists = Path::new(&format!("{FSTAB}{BACKUP_SUFFIX}")).exists();
    let mut units: Vec<String> = facts.swaps.iter().map(|p| swap::swap_unit(p)).collect();
    if let Some((text, _)) = &facts.fstab {
        units.extend(swap::fstab_swaps(text).iter().map(|p| swap::swap_unit(p)));
    }
    for unit in units {
        if systemd.unit_file_state(&unit).await?.as_deref() == Some("masked") {
            facts.masked.insert(unit);
        }
    }
    Ok(facts)
}

/// Makes the changes, in order.
pub async fn apply(changes: &[Change], systemd: &Systemd) -> anyhow::Result<()> {
    for change in changes {
        tracing::info!(phase = "host", "{}", change.describe());
        match change {
            Change::Swapoff { path, .. } => {
                use std::os::unix::ffi::OsStrExt;
                let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                    .context("a swap path holds a NUL byte")?;
                // SAFETY: a valid NUL-terminated path; swapoff has no other preconditions.
                if unsafe { libc::swapoff(c.as_ptr()) } != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("swapoff {} failed", path.display()));
                }
            }
            Change::Edit {
                path,
                backup,
                contents,
                mode,
                ..
            } => {
                if let Some(backup) = backup {
                    let original = std::fs::read(path)
                        .with_context(|| format!("failed to read {}", path.display()))?;
                    fsutil::write_atomic(backup, &original, *mode)?;
                }
                fsutil::write_atomic(path, contents.as_bytes(), *mode)?;
            }
            Change::Mask { unit, .. } => {
                systemd.mask(unit).await?;
            }
            Change::Write { path, contents, .. } => {
                fsutil::write_atomic(path, contents.as_bytes(), 0o644)?;
            }
            Change::Restart { unit, .. } => {
                systemd
                    .start(unit, true, Duration::ZERO, Duration::from_secs(60))
                    .await?;
            }
            Change::Sysctl { key, to, .. } => {
                let path = kernel::proc_path(key);
                std::fs::write(&path, to)
                    .with_context(|| format!("failed to set {key} ({path})"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            swaps: vec!["/dev/loop3".into()],
            fstab: Some(("/dev/loop3 none swap sw 0 0\n".into(), 0o644)),
            ..Default::default()
        }
    }

    const SWAP_ONLY: HostSettings = HostSettings {
        swap: true,
        kernel: false,
    };

    #[test]
    fn swap_on_everywhere() {
        let changes = plan(&SWAP_ONLY, &facts());
        let described: Vec<String> = changes.iter().map(Change::describe).collect();
        assert_eq!(
            described,
            [
                "swapoff /dev/loop3 (kubelet does not run with swap on)",
                "edit /etc/fstab (so that swap stays off after a reboot), original kept as /etc/fstab.kubejoin-orig",
                "MaskUnitFiles dev-loop3.swap (so that systemd does not turn the swap on again)",
            ]
        );
    }

    #[test]
    fn a_prepared_host_plans_nothing() {
        let f = Facts {
            fstab: Some((
                format!("{}/dev/loop3 none swap sw 0 0\n", swap::FSTAB_MARKER),
                0o644,
            )),
            fstab_backup_exists: true,
            modules_file: Some(kernel::modules_file()),
            sysctl_file: Some(kernel::sysctl_file()),
            sysctls: kernel::SYSCTLS
                .iter()
                .map(|(k, v)| (*k, Some(v.to_string())))
                .collect(),
            ..Default::default()
        };
        assert!(plan(&HostSettings::default(), &f).is_empty());
    }

    #[test]
    fn the_backup_is_made_once() {
        let mut f = facts();
        f.fstab_backup_exists = true;
        let changes = plan(&SWAP_ONLY, &f);
        assert!(matches!(&changes[1], Change::Edit { backup: None, .. }));
    }

    #[test]
    fn turned_off_in_the_config() {
        assert!(
            plan(
                &HostSettings {
                    swap: false,
                    kernel: false
                },
                &facts()
            )
            .is_empty()
        );
    }

    #[test]
    fn kernel_prerequisites() {
        let settings = HostSettings {
            swap: false,
            kernel: true,
        };
        // A fresh host: no files, br_netfilter missing (its sysctls with it), no forwarding.
        let f = Facts {
            missing_modules: vec!["br_netfilter"],
            sysctls: vec![
                ("net.ipv4.ip_forward", Some("0".into())),
                ("net.bridge.bridge-nf-call-iptables", None),
                ("net.bridge.bridge-nf-call-ip6tables", None),
            ],
            ..Default::default()
        };
        let described: Vec<String> = plan(&settings, &f).iter().map(Change::describe).collect();
        assert_eq!(
            described,
            [
                "write /etc/modules-load.d/kubejoin.conf (load overlay and br_netfilter at every boot)",
                "write /etc/sysctl.d/90-kubejoin.conf (forwarding and bridge netfilter at every boot)",
                "RestartUnit systemd-modules-load.service replace (load br_netfilter now)",
                "sysctl net.ipv4.ip_forward = 1 (now 0)",
                "sysctl net.bridge.bridge-nf-call-iptables = 1 (now unset)",
                "sysctl net.bridge.bridge-nf-call-ip6tables = 1 (now unset)",
            ]
        );
        // Everything loaded and set but a sysctl key that does not exist: left alone.
        let f = Facts {
            modules_file: Some(kernel::modules_file()),
            sysctl_file: Some(kernel::sysctl_file()),
            sysctls: vec![
                ("net.ipv4.ip_forward", Some("1".into())),
                ("net.bridge.bridge-nf-call-iptables", Some("1".into())),
                ("net.bridge.bridge-nf-call-ip6tables", None),
            ],
            ..Default::default()
        };
        assert!(plan(&settings, &f).is_empty());
    }
}
