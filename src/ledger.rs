//! What kubejoin changed on this host, recorded as it changes it, so that `kubejoin reset`
//! undoes exactly that and nothing else: the files it created, the files it edited (with
//! their `.kubejoin-orig` backups), the files it replaced, the directories it made, the
//! units it masked and enabled, each file with the SHA-256 of what kubejoin wrote, so
//! that a file changed by someone else since is recognised. Saved after every change, so
//! a run killed at any point leaves a true record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil;

pub const LEDGER: &str = "/var/lib/kubejoin/changes.json";

/// The one-time backup suffix of every file kubejoin edits (`kubejoin reset` restores it).
pub const BACKUP_SUFFIX: &str = ".kubejoin-orig";

/// Where the one-time backup of an edited file is kept.
pub fn backup_path_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

/// A file kubejoin edited in place, and where its original is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edited {
    pub backup: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Files that did not exist before kubejoin wrote them: path -> SHA-256 of its content.
    #[serde(default)]
    pub created: BTreeMap<PathBuf, String>,
    /// Files edited in place with a backup of the original.
    #[serde(default)]
    pub edited: BTreeMap<PathBuf, Edited>,
    /// Files that existed and that kubejoin replaced whole, without a backup (kubelet's
    /// files on a node that had them): path -> SHA-256 of what kubejoin wrote.
    #[serde(default)]
    pub replaced: BTreeMap<PathBuf, String>,
    /// Directories kubejoin made, outermost first.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    #[serde(default)]
    pub masked: BTreeSet<String>,
    #[serde(default)]
    pub enabled: BTreeSet<String>,
}

pub fn sha256(contents: &[u8]) -> String {
    Sha256::digest(contents)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a file came to have kubejoin's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrote {
    /// Written whole (kubejoin's own files, or a configuration file that did not exist).
    Whole,
    /// Edited in place, the original kept at the backup path.
    Edit,
}

impl Ledger {
    pub fn is_empty(&self) -> bool {
        *self == Ledger::default()
    }

    /// Records directories that are about to be made (outermost first), once.
    pub fn made_dirs(&mut self, dirs: Vec<PathBuf>) {
        for d in dirs {
            if !self.dirs.contains(&d) {
                self.dirs.push(d);
            }
        }
    }

    /// Records that `path` now holds `contents`. `existed`: whether it existed before
    /// this write; `backup`: the backup of an edited file.
    pub fn wrote(
        &mut self,
        path: &Path,
        contents: &[u8],
        existed: bool,
        how: Wrote,
        backup: Option<PathBuf>,
    ) {
        let hash = sha256(contents);
        if let Some(h) = self.created.get_mut(path) {
            *h = hash;
        } else if let Some(e) = self.edited.get_mut(path) {
            e.sha256 = hash;
        } else if let Some(h) = self.replaced.get_mut(path) {
            *h = hash;
        } else if !existed {
            self.created.insert(path.to_path_buf(), hash);
        } else if how == Wrote::Edit {
            let backup = backup.unwrap_or_else(|| backup_path_of(path));
            self.edited.insert(
                path.to_path_buf(),
                Edited {
                    backup,
                    sha256: hash,
                },
            );
        } else {
            self.replaced.insert(path.to_path_buf(), hash);
        }
    }
}

/// The ancestors of `path` that do not exist, outermost first.
pub fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    out.reverse();
    out
}

/// The ledger on disk, kept up to date with every change.
pub struct Recorder {
    path: PathBuf,
    pub ledger: Ledger,
}

impl Recorder {
    /// The host's ledger (empty when there is none yet).
    pub fn open(path: &Path) -> anyhow::Result<Recorder> {
        Ok(Recorder {
            path: path.to_path_buf(),
            ledger: load(path)?.unwrap_or_default(),
        })
    }

    fn save(&mut self) -> anyhow::Result<()> {
        let dirs = missing_dirs(&self.path);
        self.ledger.made_dirs(dirs);
        let text = serde_json::to_string_pretty(&self.ledger)?;
        fsutil::write_atomic(&self.path, text.as_bytes(), 0o644)?;
        Ok(())
    }

    /// Writes a file atomically and records it (and any directory made for it).
    pub fn write(
        &mut self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        how: Wrote,
        backup: Option<PathBuf>,
    ) -> anyhow::Result<fsutil::Outcome> {
        let existed = path.exists();
        let dirs = missing_dirs(path);
        // Recorded first: a run killed after the write still knows what it made.
        self.ledger.made_dirs(dirs);
        self.ledger.wrote(path, contents, existed, how, backup);
        self.save()?;
        crate::failpoint::hit(&format!("recorded:{}", path.display()));
        let outcome = fsutil::write_atomic(path, contents, mode)?;
        crate::failpoint::hit(&format!("wrote:{}", path.display()));
        Ok(outcome)
    }

    /// Makes a directory (and its parents) and records what was made.
    pub fn make_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut made = missing_dirs(dir);
        if !dir.exists() {
            made.push(dir.to_path_buf());
        }
        if made.is_empty() {
            return Ok(());
        }
        self.ledger.made_dirs(made);
        self.save()?;
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))
    }

    /// Removes a file kubejoin created (no longer wanted) and forgets it.
    pub fn remove(&mut self, path: &Path) -> anyhow::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("failed to remove {}", path.display()));
            }
        }
        if self.ledger.created.remove(path).is_some() {
            self.save()?;
        }
        Ok(())
    }

    pub fn masked(&mut self, unit: &str) -> anyhow::Result<()> {
        if self.ledger.masked.insert(unit.to_string()) {
            self.save()?;
        }
        Ok(())
    }

    pub fn enabled(&mut self, unit: &str) -> anyhow::Result<()> {
        if self.ledger.enabled.insert(unit.to_string()) {
            self.save()?;
        }
        Ok(())
    }
}

/// The ledger at `path`, if there is one.
pub fn load(path: &Path) -> anyhow::Result<Option<Ledger>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not kubejoin's record of changes", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_their_first_kind_and_their_last_hash() {
        let mut l = Ledger::default();
        l.wrote(
            Path::new("/etc/kubejoin-new"),
            b"a",
            false,
            Wrote::Whole,
            None,
        );
        l.wrote(
            Path::new("/etc/kubejoin-new"),
            b"b",
            true,
            Wrote::Edit,
            None,
        );
        assert_eq!(l.created[Path::new("/etc/kubejoin-new")], sha256(b"b"));
        assert!(l.edited.is_empty());
        l.wrote(Path::new("/etc/fstab"), b"x", true, Wrote::Edit, None);
        assert_eq!(
            l.edited[Path::new("/etc/fstab")].backup,
            Path::new("/etc/fstab.kubejoin-orig")
        );
        l.wrote(
            Path::new("/etc/systemd/system/kubelet.service"),
            b"u",
            true,
            Wrote::Whole,
            None,
        );
        assert!(
            l.replaced
                .contains_key(Path::new("/etc/systemd/system/kubelet.service"))
        );
        l.made_dirs(vec!["/a".into(), "/a/b".into()]);
        l.made_dirs(vec!["/a/b".into()]);
        assert_eq!(l.dirs, [PathBuf::from("/a"), PathBuf::from("/a/b")]);
    }

    #[test]
    fn missing_ancestors_outermost_first() {
        let base = std::env::temp_dir().join(format!("kubejoin-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        assert_eq!(
            missing_dirs(&base.join("x/y/file")),
            [base.join("x"), base.join("x/y")]
        );
        assert!(missing_dirs(&base.join("file")).is_empty());
        std::fs::remove_dir_all(base).unwrap();
    }
}
