//! `kubejoin reset` in testbeds: after a join and a reset, the root's overlay (every file
//! the testbed changed) is as it was before the join, but for journals, logs, caches and
//! the runtimes' and stand-ins' own state; for a docker node, a containerd node and a node
//! with swap in /etc/fstab. A file changed by someone else since is left alone and named.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use apiserver_double::ApiServer;
use support::node::{api, node};
use support::testbed::{self, Testbed};
use support::text;

/// State that is not kubejoin's to undo: journals, logs, caches, the runtimes' own state,
/// systemd's own bookkeeping and the kubelet stand-in's record of itself.
const NOT_KUBEJOINS: [&str; 7] = [
    "/var/log",
    "/var/cache",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/systemd",
    "/var/lib/kubelet-standin",
    "/var/lib/dbus",
];

/// What a path holds: mode and content hash, link target, whiteout.
fn what(p: &Path) -> Option<String> {
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
fn overlay(tb: &Testbed) -> BTreeMap<PathBuf, String> {
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
fn differences(
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

/// A worker whose host preparation prepares `runtime`.
fn worker(docker: bool, host: &str) -> Testbed {
    node(docker, "")
        .with_file(
            "/etc/kubejoin/config.d/20-host.toml",
            format!("[host]\n{host}\n"),
            0o644,
        )
        .boot()
        .unwrap()
}

/// Joins, resets, and checks that the overlay is back where it was.
fn join_then_reset(tb: &Testbed) -> String {
    let before = overlay(tb);
    let _api = api(tb, ApiServer::builder());
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       joined"),
        "{}",
        text(&out)
    );
    assert!(
        differences(&before, &overlay(tb)).len() > 3,
        "the join changed things"
    );

    let plan = text(&tb.exec_ok(&["kubejoin", "reset", "--dry-run"]));
    assert!(plan.contains("outcome:       dry-run"), "{plan}");
    assert!(
        plan.contains("reset:         would StopUnit kubelet.service replace"),
        "{plan}"
    );
    let out = tb.exec_ok(&["kubejoin", "reset"]);
    let report = text(&out);
    assert!(report.contains("outcome:       reset"), "{report}");
    assert!(!report.contains("leave "), "{report}");
    assert_eq!(tb.unit_state("kubelet.service"), "inactive dead");
    let diff = differences(&before, &overlay(tb));
    assert!(
        diff.is_empty(),
        "left behind:\n{}\n{report}",
        diff.join("\n")
    );

    // Again: nothing recorded, nothing to do.
    let again = text(&tb.exec_ok(&["kubejoin", "reset"]));
    assert!(again.contains("outcome:       nothing-to-reset"), "{again}");
    report
}

#[test]
fn a_docker_node_is_as_before() {
    if !testbed::available() {
        return;
    }
    let tb = worker(true, "container_runtime = \"docker\"");
    let report = join_then_reset(&tb);
    assert!(
        report.contains("remove /etc/docker/daemon.json"),
        "{report}"
    );
    assert!(
        report.contains("RestartUnit docker.service replace"),
        "{report}"
    );
    assert_eq!(tb.unit_state("docker.service"), "active running");
}

#[test]
fn a_containerd_node_is_as_before() {
    if !testbed::available() {
        return;
    }
    let tb = worker(true, "container_runtime = \"containerd\"");
    let original = tb.read("/etc/containerd/config.toml").unwrap();
    let report = join_then_reset(&tb);
    assert!(
        report.contains(
            "restore /etc/containerd/config.toml from /etc/containerd/config.toml.kubejoin-orig"
        ),
        "{report}"
    );
    assert_eq!(tb.read("/etc/containerd/config.toml").unwrap(), original);
}

#[test]
fn a_node_with_swap_in_fstab_is_as_before() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "")
        .with_file(
            "/etc/kubejoin/config.d/20-host.toml",
            "[host]\nswap = true\n",
            0o644,
        )
        .with_swap(16 << 20)
        .boot()
        .unwrap();
    let device = tb.swap_device().unwrap().to_string();
    let others = std::fs::read_to_string("/proc/swaps")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| !l.starts_with(&device));
    if others {
        assert!(
            std::env::var("CI").is_err(),
            "this machine has swap of its own, which the test would turn off"
        );
        eprintln!("SKIPPED: this machine has swap of its own");
        return;
    }
    let out = tb.sh(&format!("echo '{device} none swap sw 0 0' >> /etc/fstab"));
    assert!(out.status.success(), "{}", text(&out));
    let report = join_then_reset(&tb);
    assert!(
        report.contains("restore /etc/fstab from /etc/fstab.kubejoin-orig"),
        "{report}"
    );
    assert!(report.contains("UnmaskUnitFiles dev-"), "{report}");
}

#[test]
fn a_file_changed_since_is_left_alone_and_named() {
    if !testbed::available() {
        return;
    }
    let tb = worker(true, "container_runtime = \"docker\"");
    let _api = api(&tb, ApiServer::builder());
    tb.exec_ok(&["kubejoin", "run"]);
    tb.write(
        "/etc/docker/daemon.json",
        "{\"bridge\": \"none\", \"log-driver\": \"journald\"}\n",
        0o644,
    );
    let report = text(&tb.exec_ok(&["kubejoin", "reset"]));
    assert!(
        report.contains("leave /etc/docker/daemon.json alone: changed since kubejoin wrote it (--force removes it anyway)"),
        "{report}"
    );
    assert!(tb.read("/etc/docker/daemon.json").is_ok());
    // Everything else is undone all the same.
    assert!(tb.read("/etc/systemd/system/kubelet.service").is_err());
}

#[test]
fn a_never_joined_node_is_left_as_it_is() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "").boot().unwrap();
    let before = overlay(&tb);
    let out = tb.exec_ok(&["kubejoin", "reset"]);
    assert!(
        text(&out).contains("nothing to do: no record of kubejoin's changes"),
        "{}",
        text(&out)
    );
    assert!(differences(&before, &overlay(&tb)).is_empty());
}
