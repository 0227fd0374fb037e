//! File writes that a crash cannot tear: temp file in the same directory, `fsync`,
//! `rename`, `fsync` of the directory. Files are created with their final mode, so a
//! secret is never readable by others, not even for an instant.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Whether `path` is an executable file: `None` when there is none, `Some(false)` when it
/// is not a file or no one may execute it.
pub fn executable(path: &Path) -> Option<bool> {
    fs::metadata(path)
        .ok()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A file kubejoin could not write, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("failed to {what} {}", path.display())]
pub struct FileError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

type Result<T> = std::result::Result<T, FileError>;

fn failed(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError { what, path, source }
}

impl FileError {
    /// The fix for what the system said, naming the file system (from the mount table).
    pub fn fix(&self) -> Option<String> {
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        io_fix(&self.source, &self.path, &mounts)
    }
}

/// The fix for an I/O error on `path`, by its errno; `mountinfo` is
/// `/proc/self/mountinfo`, to name the file system.
pub fn io_fix(e: &std::io::Error, path: &Path, mountinfo: &str) -> Option<String> {
    let mount = mount_point(mountinfo, path).unwrap_or_else(|| PathBuf::from("/"));
    let mount = mount.display();
    let path = path.display();
    let errno = Errno::from_raw(e.raw_os_error()?);
    Some(match errno {
        Errno::EROFS => format!(
            "{mount} is mounted read-only: make it writable (`mount -o remount,rw {mount}`, or an \
             overlay on an image's read-only root) and run kubejoin again; the next run finishes \
             what this one began"
        ),
        Errno::ENOSPC | Errno::EDQUOT => format!(
            "the file system at {mount} is full: free space there (`df -h {mount}`) and run \
             kubejoin again; nothing was left half-written"
        ),
        Errno::EACCES | Errno::EPERM => format!(
            "kubejoin needs root to write {path} (kubejoin.service runs it as root); if it is \
             root, a security module (SELinux, AppArmor) or an immutable attribute (`lsattr \
             {path}`) denies it"
        ),
        Errno::EIO => format!("the disk under {mount} reports I/O errors: see `dmesg`"),
        _ => return None,
    })
}

/// The mount point `path` is under: the longest mount point in `mountinfo` (the format of
/// `/proc/self/mountinfo`, whose fifth field is the mount point, octal-escaped) that is an
/// ancestor of `path`.
pub fn mount_point(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_octal(m)))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
}

/// `\040` and the like, as the kernel escapes space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
    let dir = parent(path);
    let Some(name) = path.file_name() else {
        return Err(FileError {
            what: "write",
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        });
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed("create the directory", dir))?;

    let tmp = dir.join(format!(
        ".{}.kubejoin-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Leftovers of runs killed at this very point (runs are one at a time, so any such
    // file is stale): ours to remove.
    let prefix = format!(".{}.kubejoin-", name.to_string_lossy());
    for entry in fs::read_dir(dir).map_err(failed("list", dir))?.flatten() {
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            fs::remove_file(entry.path()).map_err(failed("remove the stale", &entry.path()))?;
        }
    }
    // Errors name the file being written; its temporary file is gone by then.
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(failed("write", path))?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(failed("set the mode of", path))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(failed("write", path))?;
        crate::failpoint::hit(&format!("before-rename:{}", path.display()));
        fs::rename(&tmp, path).map_err(failed("move into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| Outcome::Written)
}

/// Removes the file at `path` and syncs its directory, so that a power cut does not bring
/// it back; `Ok(false)`: it was not there.
pub fn remove_durably(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        r => r.map_err(failed("remove", path))?,
    }
    sync_dir(parent(path))?;
    Ok(true)
}

/// The directory a file is in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Syncs a directory, so that a rename or removal in it survives a power cut.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed("sync the directory", dir))
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

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw
25 22 0:23 / /var/lib/kubelet rw,relatime - tmpfs tmpfs rw,size=64k
26 22 0:21 /etc /etc ro,relatime - overlay overlay rw
27 22 0:24 / /mnt/with\\040space rw - tmpfs tmpfs rw
28 22 0:25 / /mnt/odd\\777\\04 rw - tmpfs tmpfs rw
";

    #[test]
    fn the_mount_point_is_the_longest_ancestor() {
        let m = |p: &str| mount_point(MOUNTINFO, Path::new(p)).unwrap();
        assert_eq!(
            m("/var/lib/kubelet/bootstrap-kubeconfig"),
            Path::new("/var/lib/kubelet")
        );
        assert_eq!(m("/var/lib/kubelet-standin/x"), Path::new("/"));
        assert_eq!(m("/etc/fstab"), Path::new("/etc"));
        assert_eq!(m("/mnt/with space/f"), Path::new("/mnt/with space"));
        assert_eq!(m("/mnt/odd\\777\\04/f"), Path::new("/mnt/odd\\777\\04"));
    }

    #[test]
    fn io_errors_get_the_fix_for_their_errno() {
        let fix = |errno: Errno, p: &str| {
            io_fix(
                &std::io::Error::from_raw_os_error(errno as i32),
                Path::new(p),
                MOUNTINFO,
            )
        };
        let ro = fix(Errno::EROFS, "/etc/fstab.kubejoin-orig").unwrap();
        assert!(ro.starts_with("/etc is mounted read-only"), "{ro}");
        assert!(ro.contains("mount -o remount,rw /etc"), "{ro}");
        let full = fix(Errno::ENOSPC, "/var/lib/kubelet/bootstrap-kubeconfig").unwrap();
        assert!(
            full.starts_with("the file system at /var/lib/kubelet is full"),
            "{full}"
        );
        assert!(fix(Errno::EACCES, "/etc/x").unwrap().contains("needs root"));
        assert_eq!(fix(Errno::ENOENT, "/etc/x"), None);
        // Written into a directory that a failed write named.
        let e = write_atomic(Path::new("/proc/kubejoin-test/x"), b"", 0o600).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to create the directory /proc/kubejoin-test"),
            "{e}"
        );
    }
}
