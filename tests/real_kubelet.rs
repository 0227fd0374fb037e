//! `kubejoin run` with a REAL kubelet against a REAL control plane (etcd, kube-apiserver,
//! kube-controller-manager), v1.20.2 and v1.36.2 as `scripts/real-kubernetes.sh` builds
//! them, in a testbed with docker.io and containerd, configured with only the cluster keys
//! and `[host] container_runtime` (plus `swap = false` and `kernel = false`, which keep
//! host preparation off this machine's own swap and kernel modules).
//!
//! The testbed shares this machine's kernel. kubelet writes six kernel-wide sysctls; the
//! testbed binds read-only files holding exactly kubelet's values over them, so kubelet has
//! nothing to write, and each test checks that the machine's values are unchanged.
//! kubelet refuses to run with swap on: these tests hold the swap lock, so no test with a
//! swap of its own runs meanwhile.
//!
//! Slow (a control plane and a kubelet each): run them by name, e.g.
//! `cargo test --test real_kubelet v1_20_containerd`.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{self, ControlPlane, configure, host_sysctls, pin_sysctls, worker};
use support::testbed::{self, Testbed};
use support::text;

const POD_IMAGE: &str = "kubejoin.test/sleeper:1";
const PAUSE_IMAGE: &str = "kubejoin.test/pause:1";

fn sleeper_image(dir: &std::path::Path) -> std::path::PathBuf {
    support::images::sleeper(dir, &[POD_IMAGE, PAUSE_IMAGE])
}

/// containerd as a testbed needs it for pods: runc may not lower oom_score_adj here (the
/// machine lacks CAP_SYS_RESOURCE), and the sandbox image is the local one. Then the
/// images, imported into CRI's namespace.
fn prepare_pods(tb: &Testbed) {
    let image = sleeper_image(&tb.dir().join("image"));
    tb.write("/root/image.tar", std::fs::read(&image).unwrap(), 0o644);
    let script = format!(
        "set -e\nsed -i 's|^  \\[plugins.\"io.containerd.grpc.v1.cri\"\\]$|&\\n    restrict_oom_score_adj = true\\n    sandbox_image = \"{PAUSE_IMAGE}\"|' /etc/containerd/config.toml\ngrep -q restrict_oom_score_adj /etc/containerd/config.toml\nsystemctl restart containerd\nctr -n k8s.io images import /root/image.tar\n"
    );
    let out = tb.sh(&script);
    assert!(out.status.success(), "{}", text(&out));
}

/// A hostNetwork static pod from the local image reaches Running.
fn static_pod_runs(tb: &Testbed, cp: &ControlPlane, node: &str) {
    tb.write(
        "/etc/kubernetes/manifests/sleeper.yaml",
        support::images::static_pod(POD_IMAGE),
        0o644,
    );
    let pod = format!("sleeper-{node}");
    let running = support::testbed::wait_for(Duration::from_secs(120), || {
        (cp.pod_field(tb, &pod, "{.status.phase}") == "Running").then_some(())
    });
    assert!(
        running.is_some(),
        "the static pod did not run: {}\n--- kubelet:\n{}",
        text(&cp.kubectl_out(tb, &["get", "pod", "-n", "default", &pod, "-o", "yaml"])),
        text(&tb.exec(&["journalctl", "--no-pager", "-n", "40", "-u", "kubelet"]))
    );
}

fn monotonic_us() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1000
}

fn show(tb: &Testbed, unit: &str, property: &str) -> String {
    text(&tb.exec(&["systemctl", "show", "--value", "-p", property, unit]))
        .trim()
        .to_string()
}

fn pem_certs(pem: &str) -> Vec<String> {
    pem.split("-----END CERTIFICATE-----")
        .filter_map(|c| c.split_once("-----BEGIN CERTIFICATE-----").map(|(_, b)| b))
        .map(|b| b.split_whitespace().collect::<String>())
        .collect()
}

/// Joins a testbed worker with the real kubelet of `version` and checks everything the
/// node itself and the control plane say.
fn joins(version: &str, runtime: &str) {
    let Some(bin) = cluster::binaries(version) else {
        return;
    };
    if !testbed::available() {
        return;
    }
    let _swap = testbed::lock_swap().unwrap();
    let kernel_before = host_sysctls();
    let tb = worker(&bin).boot().unwrap();
    pin_sysctls(&tb);
    if runtime == "containerd" {
        prepare_pods(&tb);
    }
    let cp = ControlPlane::start(&tb, version, &bin);
    // With containerd, the cluster is kubeadm's: it publishes its kubelet configuration,
    // and the node adds a field of its own. With docker, the cluster publishes none.
    let kubeadms = runtime == "containerd";
    let configmap = kubeadms.then(|| cp.apply_kubeadm_kubelet_config(&tb));
    configure(
        &tb,
        &cp,
        runtime,
        &match (kubeadms, version) {
            (false, _) => String::new(),
            // Graceful node shutdown is on by default from kubelet 1.21.
            (true, "v1.20.2") => {
                "\n[kubelet]\nreservations = \"gke\"\n\n[kubelet.config]\nmaxPods = 42\n"
                    .to_string()
            }
            (true, _) => "\n[kubelet]\nreservations = \"gke\"\nshutdown_grace_period = \"45s\"\n\n\
                          [kubelet.config]\nmaxPods = 42\n"
                .to_string(),
        },
    );

    let started = Instant::now();
    let out = tb.exec(&["kubejoin", "run"]);
    let wall = started.elapsed();
    let report = text(&out);
    assert!(
        out.status.success(),
        "{report}\n--- kubelet:\n{}\n--- controller-manager:\n{}",
        text(&tb.exec(&["journalctl", "--no-pager", "-n", "60", "-u", "kubelet"])),
        cp.log("kube-controller-manager")
    );
    assert!(report.contains("outcome:       joined"), "{report}");
    eprintln!("{version} {runtime}: kubejoin run took {wall:?}\n{report}");
    assert!(report.contains("kubejoin's own cost: "), "{report}");

    // The CSR from the bootstrap token is approved and issued, and that is the cert on disk.
    let csrs = cp.kubectl_json(&tb, &["get", "csr"]);
    let requester = format!("system:bootstrap:{}", cp.token_id);
    let csr = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["spec"]["username"] == requester.as_str())
        .unwrap_or_else(|| panic!("no CSR from {requester}: {csrs}"));
    let conditions = csr["status"]["conditions"].to_string();
    assert!(conditions.contains("\"Approved\""), "{conditions}");
    use base64::Engine;
    let issued = base64::engine::general_purpose::STANDARD
        .decode(csr["status"]["certificate"].as_str().expect("issued"))
        .unwrap();
    let on_disk = text(&tb.exec_ok(&["cat", "/var/lib/kubelet/kubelet-client-current.pem"]));
    assert_eq!(
        pem_certs(&on_disk).first(),
        pem_certs(&String::from_utf8(issued).unwrap()).first(),
        "the certificate on disk is the one issued"
    );

    // The Node is registered, under the testbed's hostname.
    let hostname = text(&tb.exec_ok(&["hostname"])).trim().to_string();
    let node = cp.kubectl_json(&tb, &["get", "node", &hostname]);
    assert_eq!(node["metadata"]["name"], hostname.as_str());
    assert!(
        report.contains(&format!("node:          {hostname}")),
        "{report}"
    );

    // kubelet runs with the cluster's configuration and the node's own field, or, where
    // the cluster has none, kubejoin's defaults and no clusterDNS, said once.
    let configz = cp.configz(&tb);
    match &configmap {
        Some(name) => {
            assert!(
                report.contains(&format!("kubelet conf:  the cluster's kube-system/{name}")),
                "{report}"
            );
            assert_eq!(
                configz["clusterDNS"],
                serde_json::json!(["10.96.0.10"]),
                "{configz}"
            );
            assert_eq!(configz["maxPods"], 42, "{configz}");
            assert_eq!(node["status"]["capacity"]["pods"], "42", "{node}");
            if version != "v1.20.2" {
                // Graceful node shutdown: kubelet's periods, logind's delay, kubelet's lock.
                assert_eq!(configz["shutdownGracePeriod"], "45s", "{configz}");
                assert_eq!(
                    configz["shutdownGracePeriodCriticalPods"], "15s",
                    "{configz}"
                );
                let delay = text(&tb.exec_ok(&[
                    "busctl",
                    "get-property",
                    "org.freedesktop.login1",
                    "/org/freedesktop/login1",
                    "org.freedesktop.login1.Manager",
                    "InhibitDelayMaxUSec",
                ]));
                assert_eq!(delay.trim(), "t 45000000");
                let mut locks = String::new();
                let held = testbed::wait_for(Duration::from_secs(20), || {
                    locks = text(&tb.exec(&["systemd-inhibit", "--list", "--no-pager"]));
                    (locks.contains("kubelet") && locks.contains("delay")).then_some(())
                });
                assert!(held.is_some(), "no delay lock of kubelet's:\n{locks}");
            }
            // The node's field is where this kubelet reads it: a drop-in from 1.30.
            let config = text(&tb.exec_ok(&["cat", "/var/lib/kubelet/config.yaml"]));
            let drop_in = tb.exec(&["cat", "/etc/kubernetes/kubelet.conf.d/50-kubejoin.conf"]);
            if version == "v1.20.2" {
                assert!(config.contains("\nmaxPods: 42\n"), "{config}");
                assert!(!drop_in.status.success(), "no drop-in for kubelet 1.20");
            } else {
                assert!(!config.contains("maxPods"), "{config}");
                assert!(
                    text(&drop_in).contains("\nmaxPods: 42\n"),
                    "{}",
                    text(&drop_in)
                );
            }
            // kubeReserved sized by GKE's formula for this host, and held back from pods.
            let (cpus, memory) = kubejoin::kubelet::reserve::host_size();
            let want = kubejoin::kubelet::reserve::gke(cpus, memory);
            assert_eq!(configz["kubeReserved"], want.kube_reserved(), "{configz}");
            let node = cp.kubectl_json(&tb, &["get", "node", &hostname]);
            let mib = |q: &serde_json::Value| -> u64 {
                let q = q.as_str().unwrap();
                let kib: u64 = q
                    .strip_suffix("Ki")
                    .expect("kubelet reports memory in Ki")
                    .parse()
                    .unwrap();
                kib / 1024
            };
            let (capacity, allocatable) = (
                mib(&node["status"]["capacity"]["memory"]),
                mib(&node["status"]["allocatable"]["memory"]),
            );
            assert!(
                capacity - allocatable >= want.memory_mib,
                "allocatable {allocatable} MiB of {capacity} MiB holds back less than {} MiB",
                want.memory_mib
            );
        }
        None => {
            assert!(
                report.contains("kubelet conf:  kubejoin's defaults"),
                "{report}"
            );
            assert_eq!(
                report
                    .matches("kubelet's configuration starts from kubejoin's defaults")
                    .count(),
                1,
                "{report}"
            );
            assert!(configz.get("clusterDNS").is_none(), "{configz}");
        }
    }

    if runtime == "containerd" {
        static_pod_runs(&tb, &cp, &hostname);
    }

    // kubelet stays up.
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    assert_eq!(show(&tb, "kubelet.service", "NRestarts"), "0");

    // kubelet's journal: no deprecated flag, no complaint about a file kubejoin owns.
    let journal = text(&tb.exec(&["journalctl", "--no-pager", "-o", "cat", "-u", "kubelet"]));
    for line in journal.lines() {
        assert!(!line.contains("has been deprecated"), "{line}");
        let ours = [
            "/etc/kubernetes/manifests",
            "/var/lib/kubelet/config.yaml",
            "/etc/kubernetes/pki/ca.crt",
            "/var/lib/kubelet/bootstrap-kubeconfig",
        ];
        let complaint = line.contains("no such file")
            || line.contains("does not exist")
            || line.contains("Permission denied");
        assert!(
            !(complaint && ours.iter().any(|p| line.contains(p))),
            "kubelet complains about a file kubejoin owns: {line}"
        );
    }

    // Again: nothing changes.
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
    assert_eq!(show(&tb, "kubelet.service", "NRestarts"), "0");

    drop(cp);
    drop(tb);
    assert_eq!(
        host_sysctls(),
        kernel_before,
        "this machine's kernel settings"
    );
}

#[test]
fn v1_20_containerd() {
    joins("v1.20.2", "containerd");
}

#[test]
fn v1_20_docker() {
    joins("v1.20.2", "docker");
}

#[test]
fn v1_36_containerd() {
    joins("v1.36.2", "containerd");
}

#[test]
fn v1_36_docker_names_cri_dockerd() {
    let Some(bin) = cluster::binaries("v1.36.2") else {
        return;
    };
    if !testbed::available() {
        return;
    }
    // Held by every test here: one control plane at a time (and none beside a swap).
    let _lock = testbed::lock_swap().unwrap();
    let tb = worker(&bin).boot().unwrap();
    let cp = ControlPlane::start(&tb, "v1.36.2", &bin);
    configure(&tb, &cp, "docker", "");
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("CRIDockerd"), "{msg}");
    assert!(msg.contains("cri-dockerd"), "{msg}");
    assert!(msg.contains("container_runtime = \"containerd\""), "{msg}");
    assert_eq!(tb.unit_state("kubelet.service"), "inactive dead");
}

/// A v1.36.2 worker testbed, booted, its kernel-wide sysctls pinned, with the lock every
/// test here holds (one control plane at a time, none beside a swap); `None`, skipped, where
/// the binaries or testbeds are missing.
fn v1_36_worker() -> Option<(std::path::PathBuf, std::fs::File, Testbed)> {
    let bin = cluster::binaries("v1.36.2")?;
    if !testbed::available() {
        return None;
    }
    let lock = testbed::lock_swap().unwrap();
    let tb = worker(&bin).boot().unwrap();
    pin_sysctls(&tb);
    Some((bin, lock, tb))
}

#[test]
fn a_broken_runtime_fails_the_join_with_kubelets_own_words() {
    let Some((bin, _lock, tb)) = v1_36_worker() else {
        return;
    };
    let cp = ControlPlane::start(&tb, "v1.36.2", &bin);
    // containerd masked and stopped: kubelet starts (nothing Requires= it) and cannot
    // reach its runtime.
    tb.exec_ok(&[
        "systemctl",
        "mask",
        "--now",
        "containerd.service",
        "docker.service",
        "docker.socket",
    ]);
    configure(&tb, &cp, "none", "\n[kubelet]\nruntime_unit = \"\"\n");
    let out = tb.exec(&["kubejoin", "run"]);
    let returned = monotonic_us();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    // kubelet's own words, never "joined".
    assert!(msg.contains("kubelet exited ("), "{msg}");
    assert!(msg.contains("validate service connection"), "{msg}");
    assert!(msg.contains("containerd.sock"), "{msg}");
    assert!(
        msg.contains("kubelet cannot reach its container runtime"),
        "{msg}"
    );
    assert!(!msg.contains("joined"), "{msg}");
    // Within seconds of kubelet's first exit (CLOCK_MONOTONIC is the machine's).
    let exited: u64 = show(&tb, "kubelet.service", "ExecMainExitTimestampMonotonic")
        .parse()
        .unwrap();
    let after = Duration::from_micros(returned.saturating_sub(exited));
    eprintln!("kubejoin failed {after:?} after kubelet's first exit:\n{msg}");
    assert!(after < Duration::from_secs(5), "{after:?}");
}

/// A host with two networks: a management network holding the default route (where
/// kubelet would look for its address) and the cluster's network, where the API server is.
/// kubelet is given the address on the route to the API server, and the Node says it.
#[test]
fn a_host_with_two_addresses_gets_the_one_on_the_route_to_the_api_server() {
    let Some((bin, _lock, tb)) = v1_36_worker() else {
        return;
    };
    let out = tb.sh("set -e
         for n in kjmgmt kjclus; do
           ip link add $n type veth peer name $n-peer; ip link set $n up; ip link set $n-peer up
         done
         ip addr add 192.168.77.2/24 dev kjmgmt; ip route add default dev kjmgmt
         ip addr add 10.0.2.2/24 dev kjclus");
    assert!(out.status.success(), "{}", text(&out));
    let cp = ControlPlane::start_with(
        &tb,
        "v1.36.2",
        &bin,
        cluster::Setup {
            bind_any: true,
            ..Default::default()
        },
    );
    configure(&tb, &cp, "containerd", "");
    // cluster-info names the loopback; this worker uses the cluster network's address.
    tb.write(
        "/etc/kubejoin/config.d/50-server.toml",
        "[cluster]\nserver = \"https://10.0.2.2:6443\"\nuse_configured_server = true\n",
        0o600,
    );
    let out = tb.exec(&["kubejoin", "run"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("kubelet's node IP: 10.0.2.2 (the source address of the route to the API server, of 2 on this host)"),
        "{report}"
    );
    let hostname = text(&tb.exec_ok(&["hostname"])).trim().to_string();
    let node = cp.kubectl_json(&tb, &["get", "node", &hostname]);
    let addresses = node["status"]["addresses"].to_string();
    assert!(
        addresses.contains(r#"{"address":"10.0.2.2","type":"InternalIP"}"#),
        "{addresses}"
    );
    assert!(!addresses.contains("192.168.77.2"), "{addresses}");
}
