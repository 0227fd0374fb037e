//! The testbed's overlay as a map of path -> what it holds, and the differences between
//! two such maps, for the tests that compare a host before and after (reset, crashes).

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::testbed::Testbed;

/// State that is not kubejoin's to undo: journals, logs, caches, the runtimes' own state,
/// systemd's own bookkeeping and the kubelet stand-in's record of itself.
pub const NOT_KUBEJOINS: [&str; 7] = [
    "/var/log",
    "/var/cache",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/systemd",
    "/var/lib/kubelet-standin",
    "/var/lib/dbus",
];

/// What a path holds: mode and content hash, link target, whiteout.
pub fn what(p: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(p).ok()?;
    Some(if meta.is_dir() {
        format!("dir {:o}", meta.mode() & 0o7777)
    } else if meta.file_type().is_symlink() {
        format!("link {}", std::fs::read_link(p).ok()?.display())
    } else if meta.file_type().is_char_device() {
        "whiteout".into()
    } else {
        let bytes = std::fs::read(p).ok()?;
        format!(
            "file {:o} {} bytes {:x}",
            meta.mode() & 0o7777,
            bytes.len(),
            bytes
                .iter()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(*b as u64))
        )
    })
}

/// Every path of the overlay's upper layer with what it holds, but for [`NOT_KUBEJOINS`].
pub fn overlay(tb: &Testbed) -> BTreeMap<PathBuf, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = Path::new("/").join(p.strip_prefix(base).unwrap());
            if NOT_KUBEJOINS.iter().any(|n| rel.starts_with(n)) {
                continue;
            }
            let Some(held) = what(&p) else { continue };
            if held.starts_with("dir") {
                walk(base, &p, out);
            }
            out.insert(rel, held);
        }
    }
    let upper = tb.dir().join("layers/upper");
    let mut out = BTreeMap::new();
    walk(&upper, &upper, &mut out);
    out
}

/// The paths whose effective content differs. The lower layer is this machine's root: a
/// path copied up with the lower's very content (a directory systemd touched, a file
/// restored byte for byte) is no difference.
pub fn differences(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, w) in after {
        match before.get(p) {
            None if what(p).as_ref() == Some(w) => {}
            None => out.push(format!("+ {} ({w})", p.display())),
            Some(b) if b != w && !w.starts_with("dir") => {
                out.push(format!("~ {} ({b} -> {w})", p.display()))
            }
            _ => {}
        }
    }
    for p in before.keys().filter(|p| !after.contains_key(*p)) {
        out.push(format!("- {}", p.display()));
    }
    out
}

/// Files whose content differs from run to run by nature: kubejoin's report (times) and
/// its record (which holds the report's hash), kubelet's certificate (a fresh key).
const PRESENCE_ONLY: [&str; 3] = [
    "/var/lib/kubejoin/",
    "/var/lib/kubelet/kubelet-client",
    "/etc/docker/key.json",
];

/// What differs between two testbeds whatever kubejoin does: the testbed's own name, the
/// private temporary directories systemd makes per boot, and this machine's database
/// server, which the testbed boots too. (/tmp is a tmpfs of the testbed's own, not in
/// the overlay.)
const NOT_COMPARED: [&str; 3] = [
    "/etc/hostname",
    "/var/tmp/systemd-private-",
    "/var/lib/postgresql/",
];

/// The host as kubejoin left it, to compare with a clean join's: every path it wrote
/// (content and mode), kubelet's and docker's unit states, docker's networks.
pub fn end_state(tb: &Testbed) -> BTreeMap<PathBuf, String> {
    let mut state = overlay(tb);
    state.retain(|path, _| {
        let p = path.display().to_string();
        !NOT_COMPARED.iter().any(|prefix| p.starts_with(prefix))
    });
    for (path, what) in state.iter_mut() {
        let p = path.display().to_string();
        if PRESENCE_ONLY.iter().any(|prefix| p.starts_with(prefix)) && what.starts_with("file") {
            *what = "present".into();
        }
    }
    for unit in ["kubelet.service", "docker.service"] {
        let enabled = super::text(&tb.exec(&["systemctl", "is-enabled", unit]));
        state.insert(
            format!("unit {unit}").into(),
            format!("{} {}", enabled.trim(), tb.unit_state(unit)),
        );
    }
    // What docker runs with, not only what its file says: with `"bridge": "none"` it has
    // no network called bridge.
    let networks = tb.exec(&["docker", "network", "ls", "--format", "{{.Name}}"]);
    state.insert(
        "docker networks".into(),
        String::from_utf8_lossy(&networks.stdout)
            .trim()
            .replace('\n', " "),
    );
    state
}

/// Where `got` differs from `want`, one line per path.
pub fn state_differences(
    got: &BTreeMap<PathBuf, String>,
    want: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    got.iter()
        .filter(|(p, w)| want.get(*p) != Some(w))
        .map(|(p, w)| format!("  {} {w} (clean join: {:?})", p.display(), want.get(p)))
        .chain(
            want.keys()
                .filter(|p| !got.contains_key(*p))
                .map(|p| format!("  {} missing", p.display())),
        )
        .collect()
}
