//! Host preparation, the first phase of `kubejoin run`: what the seed does by hand to a
//! worker, done persistently and planned first. [`inspect`] reads the host into
//! [`Facts`], [`plan`] (pure) says what must change and why, [`apply`] does it.
//!
//! Steps so far: swap. (The container runtime, netfilter, docker0 and kernel
//! prerequisites are the rest of the host-preparation issue.)

pub mod swap;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings { swap: true }
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
    changes
}

/// Reads the host.
pub async fn inspect(settings: &HostSettings, systemd: &Systemd) -> anyhow::Result<Facts> {
    use std::os::unix::fs::PermissionsExt;
    let mut facts = Facts::default();
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
            fstab_backup_exists: false,
            masked: BTreeSet::new(),
        }
    }

    #[test]
    fn swap_on_everywhere() {
        let changes = plan(&HostSettings::default(), &facts());
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
            swaps: vec![],
            fstab: Some((
                format!("{}/dev/loop3 none swap sw 0 0\n", swap::FSTAB_MARKER),
                0o644,
            )),
            fstab_backup_exists: true,
            masked: BTreeSet::new(),
        };
        assert!(plan(&HostSettings::default(), &f).is_empty());
    }

    #[test]
    fn the_backup_is_made_once() {
        let mut f = facts();
        f.fstab_backup_exists = true;
        let changes = plan(&HostSettings::default(), &f);
        assert!(matches!(&changes[1], Change::Edit { backup: None, .. }));
    }

    #[test]
    fn turned_off_in_the_config() {
        assert!(plan(&HostSettings { swap: false }, &facts()).is_empty());
    }
}
