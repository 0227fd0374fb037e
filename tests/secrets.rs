//! No secret escapes: a node joins through kubejoin.service in a testbed while every
//! process's argv and environment are sampled; then the token secret is searched for in
//! the whole journal, in every file of the root's overlay (all that was written under
//! /etc, /var, /usr, ...), in /run, /tmp and /dev/shm, and in what kubejoin's commands
//! print. Only the token file, the bootstrap kubeconfig and a credential may hold it, each
//! readable by root alone. The fault tables (tests/discovery.rs) check every error they
//! provoke the same way, and the unit tests check `Debug`.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use apiserver_double::{ApiServer, REAL_TOKEN_SECRET};
use support::node::{api, node, with_unit};
use support::testbed::{self, Testbed};
use support::text;

/// Where the secret belongs, and nowhere else.
const MAY_HOLD: [&str; 2] = [
    "/etc/kubejoin/token",
    "/var/lib/kubelet/bootstrap-kubeconfig",
];

/// Every process of the testbed (its PID namespace), sampled until `stop`: the places
/// where argv or the environment held the secret, and how many samples were taken.
fn watch_processes(tb: &Testbed, stop: &AtomicBool) -> (BTreeSet<String>, usize) {
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", tb.pid())).unwrap();
    let (mut found, mut samples) = (BTreeSet::new(), 0);
    while !stop.load(Ordering::SeqCst) {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let p = e.path();
            if std::fs::read_link(p.join("ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            for what in ["cmdline", "environ"] {
                let Ok(bytes) = std::fs::read(p.join(what)) else {
                    continue;
                };
                if contains(&bytes, REAL_TOKEN_SECRET) {
                    let argv = std::fs::read(p.join("cmdline")).unwrap_or_default();
                    found.insert(format!(
                        "{what} of {}",
                        String::from_utf8_lossy(&argv).replace('\0', " ")
                    ));
                }
            }
        }
        samples += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (found, samples)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Files under `dir` (not following links) that hold the secret.
fn files_holding(dir: &Path, out: &mut Vec<(PathBuf, u32)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            files_holding(&p, out);
        } else if meta.is_file() && std::fs::read(&p).is_ok_and(|b| contains(&b, REAL_TOKEN_SECRET))
        {
            out.push((p, meta.mode() & 0o7777));
        }
    }
}

#[test]
fn the_token_secret_is_only_where_it_belongs() {
    if !testbed::available() {
        return;
    }
    let tb = with_unit(node(true, "")).boot().unwrap();
    let _api = api(&tb, ApiServer::builder());

    let stop = AtomicBool::new(false);
    let (leaks, samples, outputs) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch_processes(&tb, &stop));
        // A control: the watcher sees a process holding the secret in its environment.
        let control = tb
            .command(&["sleep", "0.5"])
            .env("CONTROL", REAL_TOKEN_SECRET)
            .output()
            .unwrap();
        assert!(control.status.success());
        let mut outputs = Vec::new();
        let started = tb.exec(&["systemctl", "start", "kubejoin.service"]);
        outputs.push(("systemctl start kubejoin.service", started));
        for argv in [
            &["kubejoin", "status"][..],
            &["kubejoin", "plan"],
            &["kubejoin", "plan", "--output", "json"],
            &["kubejoin", "run"],
            &["kubejoin", "reset", "--dry-run"],
            &["kubejoin", "discover"],
            &["kubejoin", "preflight"],
        ] {
            outputs.push((argv.join(" ").leak(), tb.exec(argv)));
        }
        stop.store(true, Ordering::SeqCst);
        let (leaks, samples) = watcher.join().unwrap();
        (leaks, samples, outputs)
    });
    let state = tb.unit_state("kubejoin.service");
    assert!(
        state.starts_with("active"),
        "{state}: {}",
        tb.journal("kubejoin.service")
    );
    assert!(samples > 20, "only {samples} samples of the processes");
    let mut leaks = leaks;
    assert!(
        leaks.remove("environ of sleep 0.5 "),
        "the watcher missed the control: {leaks:?}"
    );
    assert!(
        leaks.is_empty(),
        "the secret in a process's argv or environment: {leaks:?}"
    );

    // What the commands printed.
    for (what, out) in &outputs {
        let printed = text(out);
        assert!(
            !printed.contains(REAL_TOKEN_SECRET),
            "`{what}` printed the secret:\n{printed}"
        );
    }

    // The whole journal, every field of every entry.
    let journal = tb.exec(&["journalctl", "--no-pager", "-o", "export"]);
    assert!(journal.status.success());
    assert!(journal.stdout.len() > 10_000, "the journal is nearly empty");
    assert!(
        !contains(&journal.stdout, REAL_TOKEN_SECRET),
        "the journal holds the secret"
    );

    // Every file written to the root (the overlay's upper layer), and the testbed's own
    // /run, /tmp and /dev/shm, which are not on the overlay.
    let mut found = Vec::new();
    files_holding(&tb.dir().join("layers/upper"), &mut found);
    let upper = tb.dir().join("layers/upper");
    let mut holding: Vec<(String, u32)> = found
        .into_iter()
        .map(|(p, m)| {
            (
                Path::new("/")
                    .join(p.strip_prefix(&upper).unwrap())
                    .display()
                    .to_string(),
                m,
            )
        })
        .collect();
    let scan = tb
        .command(&[
            "sh",
            "-c",
            "grep -rlsF --devices=skip -e \"$SECRET\" /run /tmp /dev/shm | while read -r f; do stat -c '%n %a' \"$f\"; done",
        ])
        .env("SECRET", REAL_TOKEN_SECRET)
        .output()
        .unwrap();
    for line in text(&scan).lines() {
        let (path, mode) = line.rsplit_once(' ').unwrap();
        holding.push((path.to_string(), u32::from_str_radix(mode, 8).unwrap()));
    }
    // The node is in: kubejoin removed the bootstrap kubeconfig and the token's file, so
    // no file of the node holds the secret any more.
    assert!(
        holding.is_empty(),
        "files still hold the secret after the join: {holding:?}"
    );
    for (path, mode) in &holding {
        let credential = path.starts_with("/run/credentials/");
        assert!(
            MAY_HOLD.contains(&path.as_str()) || credential,
            "{path} holds the secret"
        );
        assert_eq!(
            mode & 0o077,
            0,
            "{path} holds the secret and is mode {mode:o}"
        );
    }
    eprintln!(
        "secret scan: {samples} samples of every process's argv and environment, {} bytes of journal, \
         {} commands' output, the overlay's files and /run, /tmp, /dev/shm: only in {:?}",
        journal.stdout.len(),
        outputs.len(),
        holding.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()
    );
}
