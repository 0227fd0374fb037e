//! A worker node in a testbed, as cloud-init leaves it, and the API server double on its
//! loopback: shared by the tests of `kubejoin run` and the demo.

#![allow(dead_code)] // each test binary uses a different part

use apiserver_double::{ApiServer, Builder, REAL_TOKEN_ID, REAL_TOKEN_SECRET};

use super::testbed::{self, Testbed};

/// A worker as cloud-init leaves it: kubejoin installed, its config and token in place,
/// kubelet (the stand-in) at the seed's path. `kubelet` is extra `[kubelet]` keys.
///
/// Swap and kernel modules are the kernel's, not the testbed's: host preparation's swap
/// and kernel steps are off here (`[host] swap = false`, `kernel = false`), so that no
/// test turns off a swap it did not make or loads a module into this machine's kernel.
/// tests/host.rs turns them on where that is safe.
pub fn node(docker: bool, kubelet: &str) -> testbed::Builder {
    let config = format!(
        "[host]\nswap = false\nkernel = false\n\n[cluster]\nserver = \"https://127.0.0.1:6443\"\nca_cert_hashes = [\"{}\"]\ndiscovery_timeout = \"30s\"\n\n[kubelet]\nstart_timeout = \"30s\"\njoin_timeout = \"30s\"\n{kubelet}",
        apiserver_double::real_ca_pin()
    );
    let runtime = if docker { "" } else { "runtime_unit = \"\"\n" };
    Testbed::builder()
        .with_docker(docker)
        .with_file(
            "/usr/bin/kubejoin",
            std::fs::read(env!("CARGO_BIN_EXE_kubejoin")).unwrap(),
            0o755,
        )
        .with_kubelet_standin("/usr/local/bin/kubelet")
        .with_file(
            "/etc/kubejoin/token",
            format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}\n"),
            0o600,
        )
        .with_file(
            "/etc/kubejoin/config.toml",
            format!("{config}{runtime}"),
            0o600,
        )
}

/// The double, serving on the testbed's own 127.0.0.1:6443.
pub fn api(tb: &Testbed, b: Builder) -> ApiServer {
    b.listener(tb.bind_tcp("127.0.0.1:6443").unwrap())
        .advertise("https://127.0.0.1:6443")
        .token(REAL_TOKEN_ID, REAL_TOKEN_SECRET)
        .start()
        .unwrap()
}

/// kubejoin.service as shipped, with a short RestartSec for the test.
pub fn with_unit(b: testbed::Builder) -> testbed::Builder {
    b.with_file(
        "/etc/systemd/system/kubejoin.service",
        include_str!("../../systemd/kubejoin.service"),
        0o644,
    )
    .with_file(
        "/etc/systemd/system/kubejoin.service.d/test.conf",
        "[Service]\nRestartSec=1s\n",
        0o644,
    )
}

/// A worker whose host preparation edits files with backups: docker as the runtime
/// (daemon.json, docker restarted, its nat rules, docker0) and a swap line in /etc/fstab
/// (edited with a backup, its unit masked). The swap line names no real device, and the
/// caller holds [`no_swap_on_this_machine`]: with `swap = true` kubejoin turns off every
/// active swap, and swap is the kernel's.
pub fn prepared_worker() -> Testbed {
    let tb = node(true, "")
        .with_file(
            "/etc/kubejoin/config.d/20-host.toml",
            "[host]\nswap = true\ncontainer_runtime = \"docker\"\n",
            0o644,
        )
        .boot()
        .unwrap();
    let out = tb.sh("echo '/dev/kubejoin-test-swap none swap sw 0 0' >> /etc/fstab");
    assert!(out.status.success(), "{}", super::text(&out));
    tb
}

/// The swap lock, when this machine has no swap of its own (which a run with `swap = true`
/// would turn off); `None`, saying so, when it has (a failure in CI, which has none).
pub fn no_swap_on_this_machine() -> Option<std::fs::File> {
    let lock = testbed::lock_swap().unwrap();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap();
    if swaps.lines().count() > 1 {
        assert!(
            std::env::var("CI").is_err(),
            "this machine has swap, which the test would turn off"
        );
        eprintln!("SKIPPED: this machine has swap of its own");
        return None;
    }
    Some(lock)
}
