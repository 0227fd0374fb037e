//! Tests of the testbed harness itself: real systemd, D-Bus, journald, docker, netfilter
//! and cloud-init in namespaces, and kubejoin discover run inside one against the API
//! server double on the testbed's own loopback.

mod support;

use support::text;

use std::time::{Duration, Instant};

use apiserver_double::{ApiServer, REAL_TOKEN_ID, REAL_TOKEN_SECRET};
use support::testbed::{self, Testbed};

#[test]
fn boots_to_running_with_docker_and_its_nat_rules() {
    if !testbed::available() {
        return;
    }
    let tb = Testbed::builder().with_docker(true).boot().unwrap();
    println!("testbed boot time (with docker): {:?}", tb.boot_time);
    assert_eq!(
        text(&tb.exec(&["systemctl", "is-system-running"])).trim(),
        "running"
    );
    assert_eq!(tb.unit_state("docker.service"), "active running");
    assert_eq!(tb.unit_state("dbus.service"), "active running");
    let link = text(&tb.exec(&["ip", "-o", "link", "show", "docker0"]));
    assert!(link.contains("docker0"), "{link}");
    let nat = text(&tb.exec(&["iptables", "-t", "nat", "-S"]));
    assert!(nat.contains("-N DOCKER"), "{nat}");
    assert!(
        nat.contains("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"),
        "{nat}"
    );
    // Its own network namespace: the host has no docker0 (docker is not running here).
    assert_ne!(
        std::fs::read_link(format!("/proc/{}/ns/net", tb.pid())).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
}

#[test]
fn boot_time_without_docker() {
    if !testbed::available() {
        return;
    }
    let started = Instant::now();
    let tb = Testbed::builder().boot().unwrap();
    println!("testbed boot time: {:?}", tb.boot_time);
    assert_eq!(tb.unit_state("docker.service"), "inactive dead");
    drop(tb);
    println!("testbed boot and teardown: {:?}", started.elapsed());
}

#[test]
fn kubejoin_discover_inside_against_the_double_on_the_testbeds_loopback() {
    if !testbed::available() {
        return;
    }
    let token = format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}");
    let config = format!(
        "[cluster]\nserver = \"https://127.0.0.1:6443\"\ntoken_file = \"/etc/kubejoin/token\"\nca_cert_hashes = [\"{}\"]\ndiscovery_timeout = \"30s\"\n",
        apiserver_double::real_ca_pin()
    );
    let kubejoin = std::fs::read(env!("CARGO_BIN_EXE_kubejoin")).unwrap();
    let tb = Testbed::builder()
        .with_file("/usr/local/bin/kubejoin", kubejoin, 0o755)
        .with_file("/etc/kubejoin/token", format!("{token}\n"), 0o600)
        .with_file("/etc/kubejoin/config.toml", config, 0o644)
        .boot()
        .unwrap();
    // The double serves on the testbed's 127.0.0.1:6443, which is not the host's.
    let api = ApiServer::builder()
        .listener(tb.bind_tcp("127.0.0.1:6443").unwrap())
        .advertise("https://127.0.0.1:6443")
        .token(REAL_TOKEN_ID, REAL_TOKEN_SECRET)
        .start()
        .unwrap();

    let out = tb.exec(&[
        "systemd-run",
        "--unit=kubejoin-discover",
        "--wait",
        "--quiet",
        "--property=Type=exec",
        "/usr/local/bin/kubejoin",
        "discover",
        "--write-kubeconfig",
        "/var/lib/kubelet/bootstrap-kubeconfig",
    ]);
    let journal = tb.journal("kubejoin-discover");
    assert!(out.status.success(), "{}\n{journal}", text(&out));
    assert_eq!(
        api.requests().len(),
        1,
        "one fetch: the presented chain is verified against the CA"
    );

    // Structured lines in the testbed's journal, and never the secret.
    assert!(journal.contains("MESSAGE=discovery done"), "{journal}");
    assert!(journal.contains("PHASE=discovery"), "{journal}");
    assert!(journal.contains("SYSLOG_IDENTIFIER=kubejoin"), "{journal}");
    assert!(
        !journal.contains(REAL_TOKEN_SECRET),
        "the secret is in the journal"
    );

    let kubeconfig =
        String::from_utf8(tb.read("/var/lib/kubelet/bootstrap-kubeconfig").unwrap()).unwrap();
    assert!(kubeconfig.contains(&format!("token: {token}\n")));
    let mode = text(&tb.exec(&["stat", "-c", "%a", "/var/lib/kubelet/bootstrap-kubeconfig"]));
    assert_eq!(mode.trim(), "600");
    let changed = tb.changed_files();
    assert!(
        changed
            .iter()
            .any(|p| p.ends_with("var/lib/kubelet/bootstrap-kubeconfig")),
        "{changed:?}"
    );
}

#[test]
fn files_written_inside_stay_inside() {
    if !testbed::available() {
        return;
    }
    let tb = Testbed::builder()
        .with_file("/etc/kubejoin/seeded", "seed\n", 0o640)
        .boot()
        .unwrap();
    let path = format!("/etc/testbed-{}-written", tb.id());
    let out = tb.sh(&format!("echo inside > {path}"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tb.read(&path).unwrap(), b"inside\n");
    assert_eq!(tb.read("/etc/kubejoin/seeded").unwrap(), b"seed\n");
    let changed = tb.changed_files();
    assert!(changed.contains(&path.clone().into()), "{changed:?}");
    assert!(
        !std::path::Path::new(&path).exists(),
        "the file reached the host"
    );
    assert!(!std::path::Path::new("/etc/kubejoin/seeded").exists());
}

#[test]
fn a_swap_made_by_the_harness_is_seen_inside_and_gone_afterwards() {
    if !testbed::available() {
        return;
    }
    let tb = Testbed::builder().with_swap(16 << 20).boot().unwrap();
    let device = tb.swap_device().unwrap().to_string();
    let dir = tb.dir().to_path_buf();
    let swaps = String::from_utf8(tb.read("/proc/swaps").unwrap()).unwrap();
    assert!(swaps.contains(&device), "{swaps}");
    drop(tb);
    // No other testbed may make a swap (and reuse the device name) while we look.
    let _lock = testbed::lock_swap().unwrap();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap();
    assert!(!swaps.contains(&device), "{swaps}");
    let loops = text(
        &std::process::Command::new("losetup")
            .arg("-a")
            .output()
            .unwrap(),
    );
    assert!(!loops.contains(dir.to_str().unwrap()), "{loops}");
}

#[test]
fn a_panicking_test_leaves_no_process_mount_or_loop_device() {
    if !testbed::available() {
        return;
    }
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let tb = Testbed::builder().with_swap(8 << 20).boot().unwrap();
        *seen.lock().unwrap() = Some((
            tb.pid(),
            tb.dir().to_path_buf(),
            tb.swap_device().unwrap().to_string(),
        ));
        panic!("a test fails with a testbed up");
    });
    assert!(result.is_err());
    let (pid, dir, device) = seen.into_inner().unwrap().unwrap();
    let _lock = testbed::lock_swap().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "PID 1 {pid} survived"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "a mount survived:\n{mounts}"
    );
    assert!(!dir.exists(), "{} survived", dir.display());
    let loops = text(
        &std::process::Command::new("losetup")
            .arg("-a")
            .output()
            .unwrap(),
    );
    assert!(!loops.contains(dir.to_str().unwrap()), "{loops}");
    assert!(
        !std::fs::read_to_string("/proc/swaps")
            .unwrap()
            .contains(&device)
    );
    let id = dir.file_name().unwrap().to_str().unwrap();
    let leftover = std::process::Command::new("find")
        .args(["/sys/fs/cgroup", "-maxdepth", "6", "-name"])
        .arg(format!("kubejoin-testbed-{id}"))
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "cgroups survived: {}",
        text(&leftover)
    );
}

#[test]
fn two_testbeds_run_at_once() {
    if !testbed::available() {
        return;
    }
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Testbed::builder().boot().unwrap());
        let b = s.spawn(|| Testbed::builder().boot().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.id(), b.id());
    let name_a = text(&a.exec(&["hostname"]));
    let name_b = text(&b.exec(&["hostname"]));
    assert_ne!(name_a, name_b);
    // Each systemd has a cgroup tree of its own (a cgroup namespace rooted at its own
    // cgroup), so the two never manage the same /system.slice.
    for tb in [&a, &b] {
        let own = text(&tb.exec(&["cat", "/proc/1/cgroup"]));
        assert!(own.contains(":/init.scope"), "{own}");
    }
    // Each has its own loopback: the same port binds in both.
    let _la = a.bind_tcp("127.0.0.1:6443").unwrap();
    let _lb = b.bind_tcp("127.0.0.1:6443").unwrap();
}

#[test]
fn cloud_init_runs_the_nocloud_seed_at_boot() {
    if !testbed::available() {
        return;
    }
    let user_data = "#cloud-config\nwrite_files:\n- path: /etc/kubejoin/from-cloud-init\n  content: hello\n  permissions: '0600'\nruncmd:\n- [touch, /run/runcmd-ran]\n";
    let tb = Testbed::builder()
        .with_cloud_init(user_data)
        .boot()
        .unwrap();
    let status = text(&tb.exec(&["cloud-init", "status", "--long"]));
    assert!(status.contains("status: done"), "{status}");
    assert_eq!(tb.read("/etc/kubejoin/from-cloud-init").unwrap(), b"hello");
    let mode = text(&tb.exec(&["stat", "-c", "%a", "/etc/kubejoin/from-cloud-init"]));
    assert_eq!(mode.trim(), "600");
    assert!(tb.read("/run/runcmd-ran").is_ok());
}

/// The seed's bootstrap kubeconfig for the real cluster's token 1.
fn bootstrap_kubeconfig(token: &str) -> String {
    use base64::Engine;
    let ca = std::fs::read(apiserver_double::fixtures_dir().join("real-apiserver/ca.crt")).unwrap();
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:6443\n  name: bootstrap\ncontexts:\n- context:\n    cluster: bootstrap\n    user: kubelet-bootstrap\n  name: bootstrap\ncurrent-context: bootstrap\nkind: Config\npreferences: {{}}\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: {token}\n",
        base64::engine::general_purpose::STANDARD.encode(ca)
    )
}

/// The seed's kubelet.service, without the containerd dependency.
const KUBELET_UNIT: &str = "[Unit]\nDescription=Kubernetes Kubelet\n[Service]\nExecStart=/usr/local/bin/kubelet --bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig --cert-dir=/var/lib/kubelet/ --kubeconfig=/var/lib/kubelet/kubeconfig --rotate-certificates=true\nRestart=on-failure\nRestartSec=5\n[Install]\nWantedBy=multi-user.target\n";

#[test]
fn the_kubelet_standin_is_started_and_supervised_by_systemd() {
    if !testbed::available() {
        return;
    }
    let token = format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}");
    let tb = Testbed::builder()
        .with_kubelet_standin("/usr/local/bin/kubelet")
        .with_file("/etc/systemd/system/kubelet.service", KUBELET_UNIT, 0o644)
        .with_file(
            "/var/lib/kubelet/bootstrap-kubeconfig",
            bootstrap_kubeconfig(&token),
            0o600,
        )
        .boot()
        .unwrap();
    tb.exec_ok(&["systemctl", "start", "kubelet.service"]);
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    // Type=simple: started means forked; the stand-in records itself a moment later.
    let inv = testbed::wait_for(Duration::from_secs(10), || tb.kubelet_invocation())
        .expect("the stand-in recorded its start");
    assert_eq!(
        inv["argv"][1],
        "--bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig"
    );
    assert_eq!(inv["bootstrap"]["token_id"], REAL_TOKEN_ID);
    assert_eq!(inv["bootstrap"]["server"], "https://127.0.0.1:6443");
    assert!(
        inv["env"]["INVOCATION_ID"].is_string(),
        "started by systemd"
    );
    assert_eq!(tb.kubelet_starts(), 1);

    // A kubeconfig without a token (and no credentials of its own from before): the
    // stand-in fails like kubelet, systemd restarts it. Stopped first: the running one may
    // still be writing the client certificate of its TLS bootstrap (slow on a busy machine).
    let out = tb.sh("systemctl stop kubelet.service && \
         sed -i '/token:/d' /var/lib/kubelet/bootstrap-kubeconfig && \
         rm -f /var/lib/kubelet/kubeconfig /var/lib/kubelet/kubelet-client-current.pem && \
         systemctl start kubelet.service");
    assert!(out.status.success(), "{}", text(&out));
    let state = testbed::wait_for(Duration::from_secs(10), || {
        let s = tb.unit_state("kubelet.service");
        (s == "activating auto-restart" || s.starts_with("failed")).then_some(s)
    });
    assert!(state.is_some(), "{}", tb.unit_state("kubelet.service"));
    let journal = testbed::wait_for(Duration::from_secs(10), || {
        let j = tb.journal("kubelet.service");
        j.contains("the user has no bootstrap token").then_some(j)
    });
    assert!(journal.is_some(), "{}", tb.journal("kubelet.service"));
    assert_eq!(
        tb.kubelet_invocation().unwrap()["error"],
        "the user has no bootstrap token"
    );
}
