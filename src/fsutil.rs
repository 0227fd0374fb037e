//! File writes that a crash cannot tear: temp file in the same directory, `fsync`,
//! `rename`, `fsync` of the directory. Files are created with their final mode, so a
//! secret is never readable by others, not even for an instant.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// What [`write_atomic`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file already had this content and mode: nothing was written.
    Unchanged,
    /// The file was created or replaced.
    Written,
}

/// Writes `contents` to `path` with `mode`, atomically, unless it is already so.
/// Missing parent directories are created with mode 0700.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<Outcome> {
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && fs::read(path).is_ok_and(|old| old == contents)
    {
        return Ok(Outcome::Unchanged);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create directory {}", dir.display()))?;

    let tmp = dir.join(format!(
        ".{}.kubejoin-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Leftovers of runs killed at this very point (runs are one at a time, so any such
    // file is stale): ours to remove.
    let prefix = format!(".{}.kubejoin-", name.to_string_lossy());
    for entry in fs::read_dir(dir)
        .with_context(|| format!("failed to list {}", dir.display()))?
        .flatten()
    {
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            fs::remove_file(entry.path())
                .with_context(|| format!("failed to remove stale {}", entry.path().display()))?;
        }
    }
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("failed to create {}", tmp.display()))?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("failed to set the mode of {}", tmp.display()))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("failed to write {}", tmp.display()))?;
        crate::failpoint::hit(&format!("before-rename:{}", path.display()));
        fs::rename(&tmp, path)
            .with_context(|| format!("failed to move {} into place", path.display()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("failed to sync directory {}", dir.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| Outcome::Written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kubejoin-fsutil-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_with_mode_and_skips_unchanged() {
        let d = tempdir();
        let p = d.join("sub/dir/file");
        assert_eq!(write_atomic(&p, b"one", 0o600).unwrap(), Outcome::Written);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            fs::metadata(d.join("sub")).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(write_atomic(&p, b"one", 0o600).unwrap(), Outcome::Unchanged);
        // A wrong mode is repaired even when the content is the same.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(write_atomic(&p, b"one", 0o600).unwrap(), Outcome::Written);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(write_atomic(&p, b"two", 0o600).unwrap(), Outcome::Written);
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.join("sub/dir")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file is left behind");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_stale_temp_file_is_replaced() {
        let d = tempdir();
        let p = d.join("f");
        let tmp = d.join(format!(".f.kubejoin-{}.tmp", std::process::id()));
        fs::write(&tmp, b"stale").unwrap();
        // Another run's, killed before its rename.
        let other = d.join(".f.kubejoin-1.tmp");
        fs::write(&other, b"stale").unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert!(!tmp.exists() && !other.exists());
        assert_eq!(fs::read(&p).unwrap(), b"new");
        fs::remove_dir_all(&d).unwrap();
    }
}
