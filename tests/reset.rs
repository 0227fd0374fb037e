//! `kubejoin reset` in testbeds: after a join and a reset, the root's overlay (every file
//! the testbed changed) is as it was before the join, but for journals, logs, caches and
//! the runtimes' and stand-ins' own state; for a docker node, a containerd node and a node
//! with swap in /etc/fstab. A file changed by someone else since is left alone and named.

mod support;

use apiserver_double::ApiServer;
use support::node::{api, node};
use support::overlay::{differences, overlay};
use support::testbed::{self, Testbed};
use support::text;

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
    // All as before, but the token's file: the join removed it once the node was in, and
    // a reset does not bring a spent token back. It says so.
    let diff: Vec<String> = differences(&before, &overlay(tb))
        .into_iter()
        .filter(|d| d != "- /etc/kubejoin/token")
        .collect();
    assert!(
        diff.is_empty(),
        "left behind:\n{}\n{report}",
        diff.join("\n")
    );
    assert!(
        report.contains("not restored:  /var/lib/kubelet/bootstrap-kubeconfig, /etc/kubejoin/token, removed by the join"),
        "{report}"
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
