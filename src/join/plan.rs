//! What `kubejoin run` will change, computed from what is there and what should be:
//! pure, so `--dry-run` shows exactly what a run does and tests need no host.

use std::path::PathBuf;

use serde::Serialize;

pub use crate::kubelet::files::DesiredFile;

/// A file as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentFile {
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// What the host looks like now.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Indexed like the desired files; `None` when missing.
    pub files: Vec<Option<CurrentFile>>,
    pub kubelet_enabled: bool,
    pub kubelet_active: bool,
    /// Directories kubelet expects that do not exist yet.
    pub missing_dirs: Vec<PathBuf>,
    /// kubelet's client certificate cannot be used (why): kubelet must bootstrap again,
    /// so it is (re)started whatever else changed.
    pub bootstrap_again: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileAction {
    Create,
    Update,
    /// Same content, wrong mode.
    Chmod,
    Unchanged,
}

impl std::fmt::Display for FileAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileAction::Create => "create",
            FileAction::Update => "update",
            FileAction::Chmod => "chmod",
            FileAction::Unchanged => "unchanged",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: PathBuf,
    pub action: FileAction,
    pub mode: String,
    pub purpose: &'static str,
    /// A line diff, for files that are not secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum SystemdAction {
    /// `Manager.Reload`
    Reload { why: String },
    /// `Manager.EnableUnitFiles`
    Enable { unit: String },
    /// `Manager.StartUnit(replace)`
    Start { unit: String },
    /// `Manager.RestartUnit(replace)`
    Restart { unit: String, why: String },
}

/// The D-Bus call, as the plan and the log show it.
impl std::fmt::Display for SystemdAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SystemdAction::Reload { why } => write!(f, "Reload ({why})"),
            SystemdAction::Enable { unit } => write!(f, "EnableUnitFiles {unit}"),
            SystemdAction::Start { unit } => write!(f, "StartUnit {unit} replace"),
            SystemdAction::Restart { unit, why } => write!(f, "RestartUnit {unit} replace ({why})"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Directories to create (mode 0755) before kubelet starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<PathBuf>,
    pub files: Vec<FileChange>,
    pub systemd: Vec<SystemdAction>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
            && self.systemd.is_empty()
            && self.files.iter().all(|f| f.action == FileAction::Unchanged)
    }
}

/// Plans the files and systemd calls that bring the host from `facts` to `desired`.
pub fn plan(desired: &[DesiredFile], facts: &Facts, unit: &str) -> Plan {
    let mut files = Vec::new();
    let (mut reload, mut restart) = (Vec::new(), Vec::new());
    for (i, want) in desired.iter().enumerate() {
        let have = facts.files.get(i).cloned().flatten();
        let action = match &have {
            None => FileAction::Create,
            Some(h) if h.contents != want.contents => FileAction::Update,
            Some(h) if h.mode & 0o7777 != want.mode => FileAction::Chmod,
            Some(_) => FileAction::Unchanged,
        };
        let name = want.path.display().to_string();
        if matches!(action, FileAction::Create | FileAction::Update) {
            if want.is_unit {
                reload.push(name.clone());
            }
            if want.restarts_kubelet {
                restart.push(name);
            }
        }
        let diff = match (&action, want.secret) {
            (FileAction::Create | FileAction::Update, false) => Some(crate::diff::lines(
                &have
                    .map(|h| String::from_utf8_lossy(&h.contents).into_owned())
                    .unwrap_or_default(),
                &String::from_utf8_lossy(&want.contents),
            )),
            _ => None,
        };
        files.push(FileChange {
            path: want.path.clone(),
            action,
            mode: format!("{:04o}", want.mode),
            purpose: want.purpose,
            diff,
        });
    }
    let mut systemd = Vec::new();
    if !reload.is_empty() {
        systemd.push(SystemdAction::Reload {
            why: format!("{} changed", reload.join(", ")),
        });
    }
    if !facts.kubelet_enabled {
        systemd.push(SystemdAction::Enable { unit: unit.into() });
    }
    let mut why = Vec::new();
    if !restart.is_empty() {
        why.push(format!("{} changed", restart.join(", ")));
    }
    if let Some(w) = &facts.bootstrap_again {
        why.push(format!("to bootstrap again: {w}"));
    }
    if !facts.kubelet_active {
        systemd.push(SystemdAction::Start { unit: unit.into() });
    } else if !why.is_empty() {
        systemd.push(SystemdAction::Restart {
            unit: unit.into(),
            why: why.join("; "),
        });
    }
    Plan {
        dirs: facts.missing_dirs.clone(),
        files,
        systemd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str, unit: bool, secret: bool) -> DesiredFile {
        DesiredFile {
            path: path.into(),
            contents: contents.as_bytes().to_vec(),
            mode: 0o644,
            secret,
            purpose: "test",
            restarts_kubelet: true,
            is_unit: unit,
        }
    }

    fn current(contents: &str, mode: u32) -> Option<CurrentFile> {
        Some(CurrentFile {
            contents: contents.as_bytes().to_vec(),
            mode,
        })
    }

    #[test]
    fn a_fresh_host_gets_everything() {
        let desired = [
            file("/u", "unit\n", true, false),
            file("/k", "token\n", false, true),
        ];
        let p = plan(
            &desired,
            &Facts {
                files: vec![None, None],
                ..Default::default()
            },
            "kubelet.service",
        );
        assert_eq!(p.files[0].action, FileAction::Create);
        assert_eq!(p.files[0].diff.as_deref(), Some("+ unit\n"));
        assert_eq!(p.files[1].diff, None, "secrets are never shown");
        assert_eq!(
            p.systemd,
            [
                SystemdAction::Reload {
                    why: "/u changed".into()
                },
                SystemdAction::Enable {
                    unit: "kubelet.service".into()
                },
                SystemdAction::Start {
                    unit: "kubelet.service".into()
                },
            ]
        );
    }

    #[test]
    fn a_joined_host_plans_nothing() {
        let desired = [file("/u", "unit\n", true, false)];
        let facts = Facts {
            files: vec![current("unit\n", 0o100644)],
            kubelet_enabled: true,
            kubelet_active: true,
            ..Default::default()
        };
        let p = plan(&desired, &facts, "kubelet.service");
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_changed_config_restarts_without_reload() {
        let desired = [
            file("/u", "unit\n", true, false),
            file("/c", "new\n", false, false),
        ];
        let facts = Facts {
            files: vec![current("unit\n", 0o644), current("old\n", 0o644)],
            kubelet_enabled: true,
            kubelet_active: true,
            ..Default::default()
        };
        let p = plan(&desired, &facts, "kubelet.service");
        assert_eq!(
            p.systemd,
            [SystemdAction::Restart {
                unit: "kubelet.service".into(),
                why: "/c changed".into()
            }]
        );
        assert_eq!(p.files[1].diff.as_deref(), Some("- old\n+ new\n"));
    }

    #[test]
    fn a_wrong_mode_is_fixed_without_restart() {
        let desired = [file("/c", "x\n", false, false)];
        let facts = Facts {
            files: vec![current("x\n", 0o666)],
            kubelet_enabled: true,
            kubelet_active: true,
            ..Default::default()
        };
        let p = plan(&desired, &facts, "kubelet.service");
        assert_eq!(p.files[0].action, FileAction::Chmod);
        assert!(p.systemd.is_empty());
        assert!(!p.is_empty());
    }
}
