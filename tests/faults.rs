//! Local faults, one row each: the system bus refuses connections, docker's restart job
//! fails, /etc is read-only, /var/lib/kubelet is full (a tiny tmpfs). Each in a fresh
//! testbed worker that edits files with backups (daemon.json, fstab): `kubejoin run` must
//! end with exit 1, the cause and the fix, no secret in what it prints, no partial or
//! temporary file, and the backups holding the originals byte for byte. Then the fault is
//! removed and the next run must leave the host exactly as a clean join does.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use apiserver_double::{ApiServer, REAL_TOKEN_SECRET};
use support::node::{api, no_swap_on_this_machine, prepared_worker};
use support::overlay::{end_state, state_differences};
use support::testbed::{self, Testbed};
use support::{text, two_at_a_time};

struct Fault {
    name: &'static str,
    /// Shell run in the testbed before the run.
    inject: &'static str,
    /// Environment of the faulty run.
    env: &'static [(&'static str, &'static str)],
    /// Shell run in the testbed after it: the fault removed.
    remove: &'static str,
    /// What the error must say (each a substring of its output).
    says: &'static [&'static str],
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "the system bus refuses connections",
        // A socket nobody listens on any more: connect(2) gets ECONNREFUSED.
        inject: "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.bind(\"/run/dead-bus\"); s.close()'",
        env: &[("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dead-bus")],
        remove: "rm /run/dead-bus",
        says: &[
            "cannot talk to systemd over the system D-Bus",
            "Connection refused",
            "fix: kubejoin needs systemd as PID 1 and the system bus (dbus.service) running",
        ],
    },
    Fault {
        name: "docker's restart job fails",
        inject: "mkdir -p /etc/systemd/system/docker.service.d && \
                 printf '[Service]\\nExecStartPre=/bin/false\\n' > /etc/systemd/system/docker.service.d/50-broken.conf && \
                 systemctl daemon-reload",
        env: &[],
        remove: "rm -r /etc/systemd/system/docker.service.d && systemctl daemon-reload",
        says: &[
            "systemd's job to restart docker.service ended with result \"failed\"",
            "fix: see why with `journalctl -u docker.service`",
        ],
    },
    Fault {
        name: "/etc is read-only",
        inject: "mount --bind /etc /etc && mount -o remount,bind,ro /etc",
        env: &[],
        remove: "umount /etc",
        says: &["Read-only file system", "fix: "],
    },
    Fault {
        name: "/var/lib/kubelet is full",
        inject: "mkdir -m 0700 /var/lib/kubelet && \
                 mount -t tmpfs -o size=64k,mode=0700 tmpfs /var/lib/kubelet && \
                 (dd if=/dev/zero of=/var/lib/kubelet/filler bs=4k 2>/dev/null || true)",
        env: &[],
        // The space back: the node's own disk again.
        remove: "umount /var/lib/kubelet",
        says: &["No space left on device", "fix: "],
    },
];

/// Temporary files of kubejoin's atomic writes, anywhere it writes.
fn temporaries(tb: &Testbed) -> String {
    text(
        &tb.sh("find /etc /var/lib/kubelet /var/lib/kubejoin -name '*.kubejoin-*.tmp' 2>/dev/null"),
    )
}

/// The files kubejoin backs up, as they are before any run.
const EDITED: [&str; 2] = ["/etc/fstab", "/etc/docker/daemon.json"];

fn one(fault: &Fault, want: &BTreeMap<PathBuf, String>) -> Result<(), String> {
    let tb = prepared_worker();
    let _api = api(&tb, ApiServer::builder());
    let originals: Vec<Option<Vec<u8>>> = EDITED.iter().map(|p| tb.read(p).ok()).collect();

    let out = tb.sh(fault.inject);
    if !out.status.success() {
        return Err(format!("injecting it failed: {}", text(&out)));
    }
    let mut cmd = tb.command(&["kubejoin", "run"]);
    for (k, v) in fault.env {
        cmd.env(k, v);
    }
    let failed = cmd.output().unwrap();
    let said = text(&failed);
    let mut problems = Vec::new();
    if failed.status.code() != Some(1) {
        problems.push(format!("exit {:?}, not 1", failed.status.code()));
    }
    for s in fault.says {
        if !said.contains(s) {
            problems.push(format!("does not say {s:?}"));
        }
    }
    if said.contains(REAL_TOKEN_SECRET) {
        problems.push("prints the token secret".into());
    }
    let tmp = temporaries(&tb);
    if !tmp.trim().is_empty() {
        problems.push(format!("left temporary files: {tmp}"));
    }
    let partial = text(&tb.sh("ls -A /var/lib/kubelet 2>/dev/null | grep -v '^filler$'"));
    if fault.name.contains("full") && !partial.trim().is_empty() {
        problems.push(format!("left files on the full file system: {partial}"));
    }
    for (path, original) in EDITED.iter().zip(&originals) {
        let backup = format!("{path}.kubejoin-orig");
        if let Ok(b) = tb.read(&backup)
            && Some(&b) != original.as_ref()
        {
            problems.push(format!("{backup} does not hold the original {path}"));
        }
    }
    if !problems.is_empty() {
        return Err(format!("{}\n--- it said:\n{said}", problems.join("\n")));
    }

    let out = tb.sh(fault.remove);
    if !out.status.success() {
        return Err(format!("removing it failed: {}", text(&out)));
    }
    let again = tb.exec(&["kubejoin", "run"]);
    if !again.status.success() {
        return Err(format!("the next run failed:\n{}", text(&again)));
    }
    let diff = state_differences(&end_state(&tb), want);
    if !diff.is_empty() {
        return Err(format!("differs from a clean join:\n{}", diff.join("\n")));
    }
    eprintln!("{}: exit 1, then converged; it said:\n{said}", fault.name);
    Ok(())
}

#[test]
fn local_faults_fail_clearly_keep_backups_and_the_next_run_converges() {
    if !testbed::available() {
        return;
    }
    let Some(_swap) = no_swap_on_this_machine() else {
        return;
    };
    let reference = prepared_worker();
    let api_server = api(&reference, ApiServer::builder());
    let out = reference.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       joined"),
        "{}",
        text(&out)
    );
    let want = end_state(&reference);
    drop(api_server);
    drop(reference);

    let failures = two_at_a_time(FAULTS, |f| f.name.to_string(), |f| one(f, &want));
    eprintln!(
        "local faults: {} rows, {} as required",
        FAULTS.len(),
        FAULTS.len() - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
