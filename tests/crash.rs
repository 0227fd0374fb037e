//! A run killed anywhere converges: `kubejoin run` is killed with SIGKILL at every fail
//! point it passes (`KUBEJOIN_TEST_FAILPOINT`, src/failpoint.rs): every phase boundary,
//! before each host change, between recording a file and writing it, before each atomic
//! rename, after each write, after daemon-reload and after enable. Then it runs again, and
//! the host must equal a clean join's byte for byte: the same files and modes, the same
//! backups, the same masked units, kubelet enabled and running, no temporary file left.
//! The node: docker as the runtime (daemon.json, docker restarted, its nat rules, docker0)
//! and a swap line in /etc/fstab (edited with a backup, its unit masked).

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use apiserver_double::ApiServer;
use support::node::{api, node};
use support::overlay::overlay;
use support::testbed::{self, Testbed};
use support::text;

/// Files whose content differs from run to run by nature: kubejoin's report (times) and
/// its record (which holds the report's hash), kubelet's certificate (a fresh key).
const PRESENCE_ONLY: [&str; 3] = [
    "/var/lib/kubejoin/",
    "/var/lib/kubelet/kubelet-client",
    "/etc/docker/key.json",
];

/// What differs between two testbeds whatever kubejoin does: the testbed's own name, the
/// private temporary directories systemd makes per boot, and this machine's database
/// server, which the testbed boots too.
const NOT_COMPARED: [&str; 4] = [
    "/etc/hostname",
    "/tmp/systemd-private-",
    "/var/tmp/systemd-private-",
    "/var/lib/postgresql/",
];

fn worker() -> Testbed {
    let tb = node(true, "")
        .with_file(
            "/etc/kubejoin/config.d/20-host.toml",
            "[host]\nswap = true\ncontainer_runtime = \"docker\"\n",
            0o644,
        )
        .boot()
        .unwrap();
    let out = tb.sh("echo '/dev/kubejoin-test-swap none swap sw 0 0' >> /etc/fstab");
    assert!(out.status.success(), "{}", text(&out));
    tb
}

/// The host as kubejoin left it, for comparison.
fn end_state(tb: &Testbed) -> BTreeMap<PathBuf, String> {
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
    let units = text(&tb.exec(&["systemctl", "is-enabled", "kubelet.service"]));
    state.insert(
        "unit kubelet.service".into(),
        format!("{} {}", units.trim(), tb.unit_state("kubelet.service")),
    );
    state
}

fn run(tb: &Testbed, failpoint: Option<&str>) -> std::process::Output {
    let mut cmd = tb.command(&["kubejoin", "run"]);
    if let Some(point) = failpoint {
        // nsenter passes its environment on to kubejoin.
        cmd.env("KUBEJOIN_TEST_FAILPOINT", point);
    }
    cmd.output().unwrap()
}

#[test]
fn a_run_killed_at_any_point_converges_when_run_again() {
    if !testbed::available() {
        return;
    }
    // kubejoin turns off every active swap, and swap is the kernel's: none may be on.
    let _swap = testbed::lock_swap().unwrap();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap();
    if swaps.lines().count() > 1 {
        assert!(
            std::env::var("CI").is_err(),
            "this machine has swap, which the test would turn off"
        );
        eprintln!("SKIPPED: this machine has swap of its own");
        return;
    }

    // A clean join, which also names every fail point it passes.
    let reference = worker();
    let _api = api(&reference, ApiServer::builder());
    let out = run(&reference, Some("list"));
    assert!(out.status.success(), "{}", text(&out));
    let points: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("failpoint: "))
        .map(str::to_string)
        .collect();
    assert!(points.len() > 20, "{points:?}");
    eprintln!("fail points: {}", points.join(" "));
    let want = end_state(&reference);
    drop(_api);
    drop(reference);

    // Each point in a fresh worker, two at a time.
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<&[String]> = points.chunks(points.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let want = &want;
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for point in chunk {
                        let tb = worker();
                        let _api = api(&tb, ApiServer::builder());
                        let killed = run(&tb, Some(point));
                        let sigkilled = killed.status.signal() == Some(9)
                            || killed.status.code() == Some(128 + 9);
                        if !sigkilled {
                            failures.push(format!(
                                "{point}: not killed: {:?}\n{}",
                                killed.status,
                                text(&killed)
                            ));
                            continue;
                        }
                        let again = run(&tb, None);
                        if !again.status.success() {
                            failures
                                .push(format!("{point}: the next run failed:\n{}", text(&again)));
                            continue;
                        }
                        let got = end_state(&tb);
                        if &got != want {
                            let diff: Vec<String> = got
                                .iter()
                                .filter(|(p, w)| want.get(*p) != Some(w))
                                .map(|(p, w)| {
                                    format!("  {} {w} (clean join: {:?})", p.display(), want.get(p))
                                })
                                .chain(
                                    want.keys()
                                        .filter(|p| !got.contains_key(*p))
                                        .map(|p| format!("  {} missing", p.display())),
                                )
                                .collect();
                            failures.push(format!(
                                "{point}: differs from a clean join:\n{}",
                                diff.join("\n")
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    eprintln!(
        "kill matrix: {} points, {} converged",
        points.len(),
        points.len() - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
