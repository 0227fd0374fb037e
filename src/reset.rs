//! `kubejoin reset`: undoes what kubejoin's runs recorded in the ledger (`ledger.rs`),
//! planned first like `run`. kubelet stopped and disabled over D-Bus; every file kubejoin
//! created removed; every file it edited restored byte for byte from its `.kubejoin-orig`
//! backup; the swap units it masked unmasked; the runtime restarted when its configuration
//! changed back; kubelet's state directory and the directories kubejoin made removed. A
//! file changed by someone else since kubejoin wrote it is left alone and named
//! (`--force` restores or removes it anyway). [`plan`] is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::fsutil;
use crate::host::{containerd, docker};
use crate::kubelet::files::KUBELET_UNIT;
use crate::ledger::{self, Ledger};
use crate::systemd::dbus::Systemd;

/// kubelet's state directory: removed whole when kubejoin made it (as `kubeadm reset`
/// cleans it), after unmounting what kubelet mounted below it.
pub const KUBELET_DIR: &str = "/var/lib/kubelet";

/// One change a reset makes to the host, with the reason (as [`crate::host::Change`] is one a join makes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Change {
    /// `Manager.StopUnit(replace)`.
    Stop { unit: String },
    /// `Manager.DisableUnitFiles`.
    Disable { unit: String },
    /// A file kubejoin created.
    Remove { path: PathBuf },
    /// A file kubejoin edited: the original back from its backup, then the backup removed.
    Restore { path: PathBuf, backup: PathBuf },
    /// Not touched, and why.
    Leave { path: PathBuf, why: String },
    /// `Manager.UnmaskUnitFiles`.
    Unmask { unit: String },
    /// `Manager.Reload`.
    Reload,
    /// `Manager.RestartUnit(replace)`.
    Restart { unit: String, why: String },
    /// kubelet's state directory, whole.
    RemoveTree { path: PathBuf },
    /// A directory kubejoin made, if it is empty by then.
    RemoveDir { path: PathBuf },
    /// The ledger itself, last.
    Forget { path: PathBuf },
}

impl Change {
    pub fn describe(&self) -> String {
        match self {
            Change::Stop { unit } => format!("StopUnit {unit} replace"),
            Change::Disable { unit } => format!("DisableUnitFiles {unit}"),
            Change::Remove { path } => format!("remove {} (kubejoin created it)", path.display()),
            Change::Restore { path, backup } => {
                format!("restore {} from {}", path.display(), backup.display())
            }
            Change::Leave { path, why } => format!("leave {} alone: {why}", path.display()),
            Change::Unmask { unit } => format!("UnmaskUnitFiles {unit}"),
            Change::Reload => "Reload (unit files changed)".into(),
            Change::Restart { unit, why } => format!("RestartUnit {unit} replace ({why})"),
            Change::RemoveTree { path } => {
                format!(
                    "remove {} and everything in it (kubelet's state)",
                    path.display()
                )
            }
            Change::RemoveDir { path } => format!("remove directory {} if empty", path.display()),
            Change::Forget { path } => format!("remove {} (this record)", path.display()),
        }
    }
}

/// What the host looks like, for the paths the ledger names.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// SHA-256 of each recorded file now (`None`: missing).
    pub current: BTreeMap<PathBuf, Option<String>>,
    /// Backups that exist.
    pub backups: BTreeSet<PathBuf>,
    pub kubelet_active: bool,
    pub kubelet_enabled: bool,
    /// Active runtime units (docker.service, containerd.service).
    pub active: BTreeSet<String>,
}

/// The runtime unit whose configuration this is.
fn runtime_of(path: &Path) -> Option<&'static str> {
    if path == Path::new(docker::DAEMON_JSON) {
        Some(docker::UNIT)
    } else if path == Path::new(containerd::CONFIG) {
        Some(containerd::UNIT)
    } else {
        None
    }
}

/// The steps that undo `ledger` on a host that looks like `facts`.
pub fn plan(ledger: &Ledger, facts: &Facts, force: bool, ledger_path: &Path) -> Vec<Change> {
    let mut steps = Vec::new();
    if ledger.is_empty() {
        return steps;
    }
    if facts.kubelet_active {
        steps.push(Change::Stop {
            unit: KUBELET_UNIT.into(),
        });
    }
    for unit in &ledger.enabled {
        if unit != KUBELET_UNIT || facts.kubelet_enabled {
            steps.push(Change::Disable { unit: unit.clone() });
        }
    }
    let now = |p: &Path| facts.current.get(p).cloned().flatten();
    let mut reload = false;
    let mut restart: BTreeSet<&'static str> = BTreeSet::new();
    let kubelet_tree = ledger.dirs.iter().any(|d| d == Path::new(KUBELET_DIR));
    for (path, hash) in &ledger.created {
        if path.as_path() == ledger_path {
            continue;
        }
        let gone_with_tree = kubelet_tree && path.starts_with(KUBELET_DIR);
        match now(path) {
            None => {}
            Some(h) if h == *hash || force => {
                if !gone_with_tree {
                    steps.push(Change::Remove { path: path.clone() });
                }
                reload |= path.starts_with("/etc/systemd");
                if let Some(unit) = runtime_of(path) {
                    restart.insert(unit);
                }
            }
            Some(_) => steps.push(Change::Leave {
                path: path.clone(),
                why: "changed since kubejoin wrote it (--force removes it anyway)".into(),
            }),
        }
    }
    for (path, edited) in &ledger.edited {
        if !facts.backups.contains(&edited.backup) {
            steps.push(Change::Leave {
                path: path.clone(),
                why: format!("its backup {} is gone", edited.backup.display()),
            });
            continue;
        }
        if now(path).as_deref() == Some(edited.sha256.as_str()) || force {
            steps.push(Change::Restore {
                path: path.clone(),
                backup: edited.backup.clone(),
            });
            if let Some(unit) = runtime_of(path) {
                restart.insert(unit);
            }
        } else {
            steps.push(Change::Leave {
                path: path.clone(),
                why: "changed since kubejoin edited it (--force restores the original anyway)"
                    .into(),
            });
        }
    }
    for path in ledger.replaced.keys() {
        steps.push(Change::Leave {
            path: path.clone(),
            why: "it was there before kubejoin, which replaced it without a backup".into(),
        });
    }
    for unit in &ledger.masked {
        steps.push(Change::Unmask { unit: unit.clone() });
        reload = true;
    }
    if reload {
        steps.push(Change::Reload);
    }
    for unit in restart {
        if facts.active.contains(unit) {
            steps.push(Change::Restart {
                unit: unit.into(),
                why: "its configuration is back as it was".into(),
            });
        }
    }
    if kubelet_tree {
        steps.push(Change::RemoveTree {
            path: KUBELET_DIR.into(),
        });
    }
    for dir in ledger.dirs.iter().rev() {
        if dir != Path::new(KUBELET_DIR) && !dir.starts_with(KUBELET_DIR) {
            steps.push(Change::RemoveDir { path: dir.clone() });
        }
    }
    steps.push(Change::Forget {
        path: ledger_path.to_path_buf(),
    });
    steps
}

/// Reads what the plan needs.
pub async fn inspect(ledger: &Ledger, systemd: &Systemd) -> anyhow::Result<Facts> {
    let mut facts = Facts::default();
    let paths = ledger
        .created
        .keys()
        .chain(ledger.edited.keys())
        .chain(ledger.replaced.keys());
    for p in paths {
        let hash = match std::fs::read(p) {
            Ok(bytes) => Some(ledger::sha256(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", p.display())),
        };
        facts.current.insert(p.clone(), hash);
    }
    facts.backups = ledger
        .edited
        .values()
        .map(|e| e.backup.clone())
        .filter(|b| b.exists())
        .collect();
    facts.kubelet_active = systemd.status(KUBELET_UNIT).await?.is_active();
    facts.kubelet_enabled = systemd.is_enabled(KUBELET_UNIT).await?;
    for unit in [docker::UNIT, containerd::UNIT] {
        if systemd.status(unit).await?.is_active() {
            facts.active.insert(unit.to_string());
        }
    }
    Ok(facts)
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Carries out the steps in order.
pub async fn apply(steps: &[Change], systemd: &Systemd) -> anyhow::Result<()> {
    for step in steps {
        tracing::info!(phase = "reset", "{}", step.describe());
        match step {
            Change::Stop { unit } => systemd.stop(unit, Duration::from_secs(90)).await?,
            Change::Disable { unit } => {
                systemd.disable(unit).await?;
            }
            Change::Remove { path } => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("failed to remove {}", path.display()));
                }
                _ => {}
            },
            Change::Restore { path, backup } => {
                use std::os::unix::fs::PermissionsExt;
                let original = std::fs::read(backup)
                    .with_context(|| format!("failed to read {}", backup.display()))?;
                let mode = std::fs::metadata(backup)?.permissions().mode() & 0o7777;
                fsutil::write_atomic(path, &original, mode)?;
                std::fs::remove_file(backup)
                    .with_context(|| format!("failed to remove {}", backup.display()))?;
            }
            Change::Leave { path, why } => {
                tracing::warn!(phase = "reset", path = %path.display(), "left alone: {why}");
            }
            Change::Unmask { unit } => {
                systemd.unmask(unit).await?;
            }
            Change::Reload => systemd.reload().await?,
            Change::Restart { unit, .. } => {
                systemd.start(unit, true, Duration::from_secs(60)).await?;
            }
            Change::RemoveTree { path } => {
                for m in mounts_below(path) {
                    nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH)
                        .with_context(|| format!("failed to unmount {}", m.display()))?;
                }
                match std::fs::remove_dir_all(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e)
                            .with_context(|| format!("failed to remove {}", path.display()));
                    }
                    _ => {}
                }
            }
            Change::RemoveDir { path } => {
                // Not empty: someone else's files are in it now; it stays.
                if let Err(e) = std::fs::remove_dir(path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::info!(phase = "reset", path = %path.display(), "kept {}: {e}", path.display());
                }
            }
            Change::Forget { path } => {
                let _ = std::fs::remove_file(path);
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
    Ok(())
}

/// What `kubejoin reset` did or would do.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `reset`, `nothing-to-reset` or `dry-run`.
    pub outcome: &'static str,
    pub steps: Vec<Change>,
    /// What the join removed once the node was in (the bootstrap credentials), which a
    /// reset does not bring back: the token is spent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_restored: Vec<String>,
}

/// The bootstrap credentials the last join removed, from its record.
fn removed_by_the_join() -> Vec<String> {
    crate::join::load_state()
        .ok()
        .flatten()
        .and_then(|s| crate::join::credentials::Credentials::of_record(&s))
        .map(|c| c.removed)
        .unwrap_or_default()
}

/// Plans and (unless `dry_run`) carries out the reset.
pub async fn run(dry_run: bool, force: bool) -> Result<Report, crate::failure::Failure> {
    let path = Path::new(ledger::LEDGER);
    let Some(ledger) = ledger::load(path)? else {
        return Ok(Report {
            outcome: "nothing-to-reset",
            steps: Vec::new(),
            not_restored: Vec::new(),
        });
    };
    let systemd = Systemd::connect().await?;
    let facts = inspect(&ledger, &systemd).await?;
    let steps = plan(&ledger, &facts, force, path);
    let not_restored = removed_by_the_join();
    if dry_run {
        return Ok(Report {
            outcome: "dry-run",
            steps,
            not_restored,
        });
    }
    apply(&steps, &systemd).await?;
    Ok(Report {
        outcome: "reset",
        steps,
        not_restored,
    })
}

/// The report as text.
pub fn render_text(r: &Report, dry_run: bool) -> String {
    let mut out = format!("outcome:       {}\n", r.outcome);
    if r.outcome == "nothing-to-reset" {
        out.push_str(&format!(
            "nothing to do: no record of kubejoin's changes ({}) on this host\n",
            ledger::LEDGER
        ));
    }
    let verb = if dry_run { "would " } else { "" };
    for s in &r.steps {
        let text = s.describe();
        match s {
            Change::Leave { .. } => out.push_str(&format!("reset:         {text}\n")),
            _ => out.push_str(&format!("reset:         {verb}{text}\n")),
        }
    }
    if !r.not_restored.is_empty() {
        out.push_str(&format!(
            "not restored:  {}, removed by the join once the node was in: a new join needs a new token\n",
            r.not_restored.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Edited, sha256};

    fn joined() -> (Ledger, Facts) {
        let mut l = Ledger::default();
        for (p, c) in [
            ("/etc/systemd/system/kubelet.service", "unit"),
            ("/var/lib/kubelet/config.yaml", "config"),
            ("/etc/modules-load.d/kubejoin.conf", "modules"),
            ("/var/lib/kubejoin/changes.json", "ledger"),
        ] {
            l.created.insert(p.into(), sha256(c.as_bytes()));
        }
        l.edited.insert(
            "/etc/docker/daemon.json".into(),
            Edited {
                backup: "/etc/docker/daemon.json.kubejoin-orig".into(),
                sha256: sha256(b"json"),
            },
        );
        l.dirs = vec![
            "/var/lib/kubelet".into(),
            "/etc/kubernetes".into(),
            "/etc/kubernetes/manifests".into(),
            "/var/lib/kubejoin".into(),
        ];
        l.masked.insert("dev-loop0.swap".into());
        l.enabled.insert(KUBELET_UNIT.into());
        let mut f = Facts {
            kubelet_active: true,
            kubelet_enabled: true,
            ..Default::default()
        };
        for (p, h) in l.created.iter() {
            f.current.insert(p.clone(), Some(h.clone()));
        }
        f.current
            .insert("/etc/docker/daemon.json".into(), Some(sha256(b"json")));
        f.backups
            .insert("/etc/docker/daemon.json.kubejoin-orig".into());
        f.active.insert(docker::UNIT.into());
        (l, f)
    }

    #[test]
    fn a_joined_node_is_undone_in_order() {
        let (l, f) = joined();
        let steps: Vec<String> = plan(&l, &f, false, Path::new(ledger::LEDGER))
            .iter()
            .map(Change::describe)
            .collect();
        assert_eq!(
            steps,
            [
                "StopUnit kubelet.service replace",
                "DisableUnitFiles kubelet.service",
                "remove /etc/modules-load.d/kubejoin.conf (kubejoin created it)",
                "remove /etc/systemd/system/kubelet.service (kubejoin created it)",
                "restore /etc/docker/daemon.json from /etc/docker/daemon.json.kubejoin-orig",
                "UnmaskUnitFiles dev-loop0.swap",
                "Reload (unit files changed)",
                "RestartUnit docker.service replace (its configuration is back as it was)",
                "remove /var/lib/kubelet and everything in it (kubelet's state)",
                "remove directory /var/lib/kubejoin if empty",
                "remove directory /etc/kubernetes/manifests if empty",
                "remove directory /etc/kubernetes if empty",
                "remove /var/lib/kubejoin/changes.json (this record)",
            ]
        );
    }

    #[test]
    fn changed_files_are_left_and_named_unless_forced() {
        let (l, mut f) = joined();
        f.current.insert(
            "/etc/docker/daemon.json".into(),
            Some(sha256(b"an operator's edit")),
        );
        f.current.insert(
            "/etc/modules-load.d/kubejoin.conf".into(),
            Some(sha256(b"changed")),
        );
        let steps = plan(&l, &f, false, Path::new(ledger::LEDGER));
        let left: Vec<&Change> = steps
            .iter()
            .filter(|s| matches!(s, Change::Leave { .. }))
            .collect();
        assert_eq!(left.len(), 2, "{steps:?}");
        assert!(
            !steps.iter().any(|s| matches!(s, Change::Restart { .. })),
            "docker keeps the configuration it has"
        );
        let forced = plan(&l, &f, true, Path::new(ledger::LEDGER));
        assert!(!forced.iter().any(|s| matches!(s, Change::Leave { .. })));
    }

    #[test]
    fn nothing_recorded_nothing_to_do() {
        assert!(
            plan(
                &Ledger::default(),
                &Facts::default(),
                false,
                Path::new(ledger::LEDGER)
            )
            .is_empty()
        );
    }
}
