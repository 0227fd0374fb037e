//! A run killed anywhere converges: `kubejoin run` is killed with SIGKILL at every fail
//! point it passes, each reach of a point passed several times by its own name
//! (`KUBEJOIN_TEST_FAILPOINT=name@n`, src/failpoint.rs): every phase boundary,
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
use support::node::{api, no_swap_on_this_machine, prepared_worker as worker};
use support::overlay::{end_state, state_differences};
use support::testbed::{self, Testbed};
use support::{text, two_at_a_time};

fn run(tb: &Testbed, failpoint: Option<&str>) -> std::process::Output {
    let mut cmd = tb.command(&["kubejoin", "run"]);
    if let Some(point) = failpoint {
        // nsenter passes its environment on to kubejoin.
        cmd.env("KUBEJOIN_TEST_FAILPOINT", point);
    }
    cmd.output().unwrap()
}

/// Kills a run at `point` in a fresh worker, runs again, and compares with `want`.
fn killed_at(point: &str, want: &BTreeMap<PathBuf, String>) -> Result<(), String> {
    let tb = worker();
    let _api = api(&tb, ApiServer::builder());
    let killed = run(&tb, Some(point));
    let sigkilled = killed.status.signal() == Some(9) || killed.status.code() == Some(128 + 9);
    if !sigkilled {
        return Err(format!(
            "not killed: {:?}\n{}",
            killed.status,
            text(&killed)
        ));
    }
    let again = run(&tb, None);
    if !again.status.success() {
        return Err(format!("the next run failed:\n{}", text(&again)));
    }
    let diff = state_differences(&end_state(&tb), want);
    if !diff.is_empty() {
        return Err(format!("differs from a clean join:\n{}", diff.join("\n")));
    }
    Ok(())
}

#[test]
fn a_run_killed_at_any_point_converges_when_run_again() {
    if !testbed::available() {
        return;
    }
    let Some(_swap) = no_swap_on_this_machine() else {
        return;
    };

    // A clean join, which also names every fail point it passes.
    let reference = worker();
    let _api = api(&reference, ApiServer::builder());
    let out = run(&reference, Some("list"));
    assert!(out.status.success(), "{}", text(&out));
    let points = support::fail_points(&String::from_utf8_lossy(&out.stderr));
    assert!(points.len() > 20, "{points:?}");
    eprintln!("fail points: {}", points.join(" "));
    let want = end_state(&reference);
    drop(_api);
    drop(reference);

    // Each point in a fresh worker, two at a time.
    let failures = two_at_a_time(&points, String::clone, |point| killed_at(point, &want));
    eprintln!(
        "kill matrix: {} points, {} converged",
        points.len(),
        points.len() - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
