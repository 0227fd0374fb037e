//! Workloads on a kubejoin worker, with REAL Kubernetes v1.36.2 (`scripts/real-kubernetes.sh`
//! with its `workloads` part): a whole cluster (etcd, kube-apiserver, kube-controller-manager
//! allocating pod CIDRs, kube-scheduler) on a testbed's loopback, a worker joined by
//! `kubejoin run` with only the cluster keys and its images carried in `[host]
//! image_archives`, and a pod network made as a network plugin makes one
//! (`support::podnet`). Then what a worker is for: pods the cluster schedules run at
//! pod-network addresses, logs and exec reach kubelet through the API server at the
//! address the Node reports, limits reach the pod's cgroup, and Kubernetes' own end-to-end
//! specs (`e2e.test`, from the same source tree) pass on the node, with e2e.test's JUnit
//! report under `target/conformance/`.
//!
//! The images are local, under the exact names `e2e.test --list-images` gives, so nothing
//! is ever pulled: the sandbox ("pause") image is a static program that sleeps, busybox is
//! Debian's busybox-static (`support::images`).
//!
//! Slow (a control plane, a kubelet and e2e.test, about 5 minutes): run it by name,
//! `cargo test --test workloads`, or `scripts/conformance.sh` for its output.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::cluster::{
    self, ControlPlane, Setup, WORKLOADS, configure, host_sysctls, in_netns_of, pin_sysctls,
    testbed_containerd, worker,
};
use support::testbed::{self, Testbed, wait_for};
use support::{podnet, text};

const VERSION: &str = "v1.36.2";
/// The images as v1.36.2's e2e.test names them (`--list-images`).
const PAUSE: &str = "registry.k8s.io/pause:3.10.2";
const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1";
/// agnhost's names in v1.36.2's e2e.test (the current one and the one before).
const AGNHOST: [&str; 2] = [
    "registry.k8s.io/e2e-test-images/agnhost:2.63.0",
    "registry.k8s.io/e2e-test-images/agnhost:2.55",
];
/// The worker's address on its (test) network: with loopback alone, kubelet reports no
/// address and the API server cannot reach it.
const NODE_IP: &str = "10.0.2.15";

/// The conformance list, each spec as e2e.test names it (`../shared/workloads.md` §2), all
/// of Kubernetes' conformance: the first five need only busybox and pause, the rest
/// agnhost. Every CI run runs it (about 3 of the test's 5 minutes). Left out, and why:
/// [`LEFT_OUT`].
const LIST: [&str; 10] = [
    "Kubelet when scheduling a busybox command in a pod should print the output to logs",
    "Pods should be submitted and removed",
    "Pods should support remote command execution over websockets",
    "Pods should support retrieving logs from the container over websockets",
    "Probing container should be restarted with a exec \"cat /tmp/health\" liveness probe",
    "ConfigMap should be consumable from pods in volume [NodeConformance]",
    "Networking Granular Checks: Pods should function for intra-pod communication: http [NodeConformance]",
    "Networking Granular Checks: Pods should function for intra-pod communication: udp [NodeConformance]",
    "Networking Granular Checks: Pods should function for node-pod communication: http [LinuxOnly]",
    "Networking Granular Checks: Pods should function for node-pod communication: udp [LinuxOnly]",
];

/// Specs of the issue's list that cannot run here, and why (the README says the same).
const LEFT_OUT: [(&str, &str); 2] = [
    (
        "DNS should provide DNS for the cluster",
        "no DNS server for the cluster (CoreDNS is not in Debian's archive), and its probe pod \
         needs the glibc-dns-testing image and agnhost's dig, which are not built here",
    ),
    (
        "Services should serve a basic endpoint from pods",
        "it reaches the Service by its name (`nc endpoint-test2 80`), which needs the \
         cluster's DNS",
    ),
];

/// The worker's network: one interface with [`NODE_IP`] and the default route, leading
/// nowhere (a veth whose peer is in the testbed too: nothing leaves it).
fn node_network(tb: &Testbed) {
    let out = tb.sh(&format!(
        "set -e; ip link add kjnode type veth peer name kjnode-peer
         ip link set kjnode up; ip link set kjnode-peer up
         ip addr add {NODE_IP}/24 dev kjnode; ip route add default via 10.0.2.1 dev kjnode"
    ));
    assert!(out.status.success(), "{}", text(&out));
}

/// The images, in the directory `[host] image_archives` names.
fn carry_images(tb: &Testbed, agnhost: &Path) {
    let images = [
        (
            "pause",
            support::images::sleeper(&tb.dir().join("pause"), &[PAUSE]),
        ),
        (
            "busybox",
            support::images::busybox(&tb.dir().join("busybox"), &[BUSYBOX]),
        ),
        (
            "agnhost",
            support::images::agnhost(&tb.dir().join("agnhost"), agnhost, &AGNHOST),
        ),
    ];
    for (name, archive) in images {
        tb.write(
            format!("/var/lib/kubejoin-images/{name}.tar"),
            std::fs::read(&archive).unwrap(),
            0o644,
        );
    }
}

fn hostname(tb: &Testbed) -> String {
    text(&tb.exec_ok(&["hostname"])).trim().to_string()
}

/// The Node's Ready condition's status (`True`, `False`, `Unknown`, or empty).
fn node_ready(tb: &Testbed, cp: &ControlPlane, node: &str) -> String {
    let out = cp.kubectl_out(
        tb,
        &[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn kubectl_ok(tb: &Testbed, cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl_out(tb, args);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a cluster's approver of serving CSRs does: the node's pending
/// `kubernetes.io/kubelet-serving` CSR is approved once it is the node's own and names
/// only the Node's addresses and hostname.
fn approve_serving_csr(tb: &Testbed, cp: &ControlPlane, node: &str) {
    let csr = wait_for(Duration::from_secs(30), || {
        let list = cp.kubectl_json(tb, &["get", "csr"]);
        list["items"].as_array()?.iter().find_map(|c| {
            (c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
                && c["spec"]["username"] == format!("system:node:{node}")
                && c["status"]["conditions"].is_null())
            .then(|| c.clone())
        })
    })
    .unwrap_or_else(|| panic!("no pending serving CSR of {node}"));
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(csr["spec"]["request"].as_str().unwrap())
        .unwrap();
    let file = tb.dir().join("serving.csr");
    std::fs::write(&file, pem).unwrap();
    let text_form = text(&cluster::run(std::process::Command::new("openssl").args([
        "req",
        "-noout",
        "-text",
        "-in",
        &file.display().to_string(),
    ])));
    let sans = text_form
        .lines()
        .skip_while(|l| !l.contains("Subject Alternative Name"))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut names: Vec<&str> = sans.split(", ").collect();
    names.sort();
    let mut want = vec![format!("DNS:{node}"), format!("IP Address:{NODE_IP}")];
    want.sort();
    assert_eq!(names, want, "the serving CSR's names:\n{text_form}");
    kubectl_ok(
        tb,
        cp,
        &[
            "certificate",
            "approve",
            csr["metadata"]["name"].as_str().unwrap(),
        ],
    );
}

/// A shell command that GETs `/` from `ip:port` with busybox's nc (its wget looks the
/// port's name up through NSS, which a static busybox without /etc/services crashes on).
fn get(ip: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}")
}

/// What the worker's kubelet and runtime said, for a failure's message.
fn worker_logs(tb: &Testbed) -> String {
    format!(
        "--- kubelet:\n{}\n--- containerd:\n{}",
        text(&tb.exec(&["journalctl", "--no-pager", "-n", "60", "-u", "kubelet"])),
        text(&tb.exec(&["journalctl", "--no-pager", "-n", "30", "-u", "containerd"]))
    )
}

fn wait_running(tb: &Testbed, cp: &ControlPlane, pod: &str) {
    let running = wait_for(Duration::from_secs(120), || {
        (cp.pod_field(tb, pod, "{.status.phase}") == "Running").then_some(())
    });
    assert!(
        running.is_some(),
        "pod {pod} did not run: {}\n{}",
        text(&cp.kubectl_out(tb, &["describe", "pod", "-n", "default", pod])),
        worker_logs(tb)
    );
}

/// Where e2e.test's reports of a run go: `target/conformance/<name>/`.
fn report_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/conformance")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each spec of e2e.test's JUnit report with its status (`passed`, `failed`, ...), the
/// skipped ones (every spec the focus left out) and the suite's own steps left out.
fn junit_results(report: &Path) -> Vec<(String, String)> {
    let xml = std::fs::read_to_string(report.join("junit_01.xml"))
        .unwrap_or_else(|e| panic!("{}: {e}", report.display()));
    let attr = |tag: &str, name: &str| {
        let key = format!(" {name}=\"");
        tag.find(&key).map(|i| {
            let rest = &tag[i + key.len()..];
            rest[..rest.find('"').unwrap_or(rest.len())]
                .replace("&#34;", "\"")
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
        })
    };
    xml.split("<testcase ")
        .skip(1)
        .filter_map(|tc| {
            let tag = format!(" {}", &tc[..tc.find('>').unwrap_or(tc.len())]);
            let name = attr(&tag, "name")?;
            let status = attr(&tag, "status")?;
            // The specs themselves, not the suite's setup and reports.
            let spec = name.strip_prefix("[It] ")?.to_string();
            (status != "skipped").then_some((spec, status))
        })
        .collect()
}

/// The focus that selects exactly `specs` (each a substring of a spec's full text).
fn focus(specs: &[&str]) -> String {
    specs
        .iter()
        .map(|s| regex_escape(s))
        .collect::<Vec<_>>()
        .join("|")
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs e2e.test against the cluster, in the testbed's network namespace, with the
/// admin's kubeconfig: the specs `specs` name, its report in `report`; prints each spec
/// run and its status, and fails unless every one ran and passed.
fn e2e(tb: &Testbed, cp: &ControlPlane, specs: &[&str], report: &Path) {
    let log = report.join("e2e.log");
    let out = in_netns_of(tb.pid(), cp.bin.join("e2e.test"))
        .env("HOME", tb.dir())
        .args([
            &format!("--kubeconfig={}", cp.admin_conf().display()),
            &format!("--kubectl-path={}", cp.bin.join("kubectl").display()),
            "--provider=skeleton",
            &format!("--report-dir={}", report.display()),
            &format!("--ginkgo.focus={}", focus(specs)),
            "--ginkgo.skip=\\[Serial\\]|\\[Disruptive\\]|\\[Flaky\\]",
            "--ginkgo.no-color",
            "--ginkgo.timeout=40m",
        ])
        .output()
        .unwrap();
    std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat()).unwrap();
    let results = junit_results(report);
    eprintln!("e2e.test on a kubejoin worker:");
    for (name, status) in &results {
        eprintln!("  {status}: {name}");
    }
    let failed: Vec<_> = results.iter().filter(|(_, s)| s != "passed").collect();
    assert!(
        out.status.success() && failed.is_empty() && results.len() == specs.len(),
        "e2e.test: {} of {} specs ran, not passed: {failed:?}; its log: {}\n{}",
        results.len(),
        specs.len(),
        log.display(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("SSSS"))
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A pod with CPU and memory limits, which prints what its cgroup holds (cgroup v2:
/// memory.max and cpu.max; v1: memory.limit_in_bytes and cpu.cfs_quota_us).
const LIMITED: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: limited
  namespace: default
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/busybox:1.37.0-1
    command: ["sh", "-c", "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2 $(cat /sys/fs/cgroup/memory.max) $(cat /sys/fs/cgroup/cpu.max); else echo v1 $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi; sleep 3600"]
    resources:
      limits:
        cpu: 250m
        memory: 64Mi
"#;

/// A cluster and its worker, joined by kubejoin, Ready with a pod network and kube-proxy.
struct Cluster {
    tb: Testbed,
    cp: ControlPlane,
    node: String,
    /// The Node's pod CIDR.
    cidr: String,
    kernel_before: Vec<String>,
    _swap: std::fs::File,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(
                host_sysctls(),
                self.kernel_before,
                "the machine's sysctls changed"
            );
        }
    }
}

/// Starts the cluster and joins its worker with `kubejoin run`, its images carried in
/// `[host] image_archives`; `None` (skipped, said why) where the binaries or testbeds are
/// missing.
fn joined_worker() -> Option<Cluster> {
    let bin = cluster::binaries_with(VERSION, &WORKLOADS)?;
    if !testbed::available() {
        return None;
    }
    let _swap = testbed::lock_swap().unwrap();
    let kernel_before = host_sysctls();
    let tb = worker(&bin).boot().unwrap();
    pin_sysctls(&tb);
    testbed_containerd(&tb);
    node_network(&tb);
    carry_images(&tb, &bin.join("agnhost"));
    let mut cp = ControlPlane::start_with(
        &tb,
        VERSION,
        &bin,
        Setup {
            workloads: true,
            verify_kubelets: true,
            ..Default::default()
        },
    );
    configure(&tb, &cp, "containerd", "");
    tb.write(
        "/etc/kubejoin/config.d/20-images.toml",
        format!(
            "[host]\nsandbox_image = \"{PAUSE}\"\nimage_archives = \"/var/lib/kubejoin-images\"\n\n\
             [kubelet.config]\nserverTLSBootstrap = true\n"
        ),
        0o644,
    );

    // Before the join: the node's part of the pod network, as preflight sees it.
    let preflight = text(&tb.exec(&["kubejoin", "preflight"]));
    for line in [
        "CNIPlugins       containerd finds the CNI plugins in /usr/lib/cni (bin_dir in /etc/containerd/config.toml)",
        "BridgeNetfilter  net.bridge.bridge-nf-call-iptables is 1",
    ] {
        assert!(preflight.contains(line), "{line:?} not in:\n{preflight}");
    }

    let out = tb.exec(&["kubejoin", "run"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}\n{}", worker_logs(&tb));
    assert!(report.contains("no network plugin yet"), "{report}");
    let node = hostname(&tb);

    // The cluster's side: kube-controller-manager gives the Node its pod CIDR, and the
    // network plugin (the test's) configures the node from it.
    let cidr = wait_for(Duration::from_secs(60), || {
        let c = String::from_utf8_lossy(
            &cp.kubectl_out(
                &tb,
                &["get", "node", &node, "-o", "jsonpath={.spec.podCIDR}"],
            )
            .stdout,
        )
        .trim()
        .to_string();
        (!c.is_empty()).then_some(c)
    })
    .unwrap_or_else(|| panic!("no podCIDR:\n{}", cp.log("kube-controller-manager")));
    podnet::install(&tb, &cidr);
    // Up to about 140 s: kubelet annotates its CSINode on its own schedule (see
    // kubelet::node_status), and a Node that registered late waits for the next try.
    let ready = wait_for(Duration::from_secs(200), || {
        (node_ready(&tb, &cp, &node) == "True").then_some(())
    });
    assert!(
        ready.is_some(),
        "the Node did not turn Ready: {}\n{}",
        kubectl_ok(&tb, &cp, &["describe", "node", &node]),
        worker_logs(&tb)
    );
    let addresses =
        cp.kubectl_json(&tb, &["get", "node", &node])["status"]["addresses"].to_string();
    assert!(
        addresses.contains(&format!(r#"{{"address":"{NODE_IP}","type":"InternalIP"}}"#)),
        "{addresses}"
    );
    cp.start_kube_proxy(&tb, &node);

    // kubelet asked the cluster for its serving certificate: until the CSR is approved,
    // status and doctor say so, with the fix.
    let status = text(&tb.exec(&["kubejoin", "status"]));
    assert!(
        status.contains("ready:         Ready, but kubelet has no serving certificate yet"),
        "{status}"
    );
    assert!(status.contains("kubectl certificate approve"), "{status}");
    assert!(!status.contains("no address"), "{status}");
    let doctor = text(&tb.exec(&["kubejoin", "doctor"]));
    assert!(
        doctor.contains(
            "warn  node-ready           Ready, but kubelet has no serving certificate yet"
        ),
        "{doctor}"
    );
    approve_serving_csr(&tb, &cp, &node);
    // A link to an absolute path: read it inside the testbed.
    let issued = wait_for(Duration::from_secs(30), || {
        tb.exec(&["test", "-s", "/var/lib/kubelet/kubelet-server-current.pem"])
            .status
            .success()
            .then_some(())
    });
    assert!(
        issued.is_some(),
        "no serving certificate\n{}\n{}\n--- kubelet on certificates:\n{}",
        text(&cp.kubectl_out(&tb, &["get", "csr", "-o", "wide"])),
        text(&tb.exec(&["ls", "-lR", "/var/lib/kubelet/"])),
        text(&tb.sh(
            "journalctl --no-pager -u kubelet | grep -i -E 'csr|certificate|serving' | tail -30"
        ))
    );
    let status = text(&tb.exec(&["kubejoin", "status"]));
    assert!(status.contains("ready:         Ready\n"), "{status}");
    let doctor = text(&tb.exec(&["kubejoin", "doctor"]));
    assert!(
        doctor.contains("ok    node-ready           Ready"),
        "{doctor}"
    );
    Some(Cluster {
        tb,
        cp,
        node,
        cidr,
        kernel_before,
        _swap,
    })
}

#[test]
fn a_kubejoin_worker_runs_the_clusters_pods_and_passes_kubernetes_own_specs() {
    let Some(c) = joined_worker() else {
        return;
    };
    let (tb, cp, node, cidr) = (&c.tb, &c.cp, &c.node, &c.cidr);
    // A pod the cluster schedules (no nodeName, no hostNetwork): it runs at an address of
    // the Node's pod CIDR, and the API server reaches kubelet for its logs and exec.
    kubectl_ok(
        tb,
        cp,
        &[
            "run",
            "hello",
            &format!("--image={BUSYBOX}"),
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo hello from $(hostname); sleep 3600",
        ],
    );
    wait_running(tb, cp, "hello");
    let ip = cp.pod_field(tb, "hello", "{.status.podIP}");
    let prefix = cidr.trim_end_matches(".0/24");
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "pod IP {ip} is not in {cidr}"
    );
    assert_eq!(&cp.pod_field(tb, "hello", "{.spec.nodeName}"), node);
    let logs = wait_for(Duration::from_secs(20), || {
        let l = kubectl_ok(tb, cp, &["logs", "hello"]);
        l.contains("hello from hello").then_some(l)
    });
    assert!(
        logs.is_some(),
        "{:?}",
        kubectl_ok(tb, cp, &["logs", "hello"])
    );
    let exec = kubectl_ok(
        tb,
        cp,
        &[
            "exec",
            "hello",
            "--",
            "sh",
            "-c",
            "echo exec in $(hostname)",
        ],
    );
    assert_eq!(exec.trim(), "exec in hello");

    // A Service in front of a pod of this node, reached from another pod of this node
    // through its ClusterIP: kube-proxy's rules, and the bridge's traffic through netfilter
    // (br_netfilter), without which exactly this case fails.
    kubectl_ok(
        tb,
        cp,
        &[
            "run",
            "web",
            &format!("--image={BUSYBOX}"),
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "mkdir -p /www && echo served by $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );
    wait_running(tb, cp, "web");
    kubectl_ok(
        tb,
        cp,
        &["expose", "pod", "web", "--port=80", "--target-port=8080"],
    );
    let service_ip = kubectl_ok(
        tb,
        cp,
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
    );
    let served = wait_for(Duration::from_secs(60), || {
        let out = cp.kubectl_out(
            tb,
            &["exec", "hello", "--", "sh", "-c", &get(&service_ip, 80)],
        );
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        body.contains("served by web").then_some(body)
    });
    if served.is_none() {
        let web_ip = cp.pod_field(tb, "web", "{.status.podIP}");
        let direct = cp.kubectl_out(
            tb,
            &["exec", "hello", "--", "sh", "-c", &get(&web_ip, 8080)],
        );
        let via = cp.kubectl_out(
            tb,
            &["exec", "hello", "--", "sh", "-c", &get(&service_ip, 80)],
        );
        panic!(
            "the Service {service_ip} did not answer from a pod of the same node\n--- the pod {web_ip} directly: {}\n--- the Service: {}\n--- sysctls: {}\n--- kube-proxy:\n{}\n--- nat:\n{}",
            text(&direct),
            text(&via),
            text(&tb.sh("sysctl net.bridge.bridge-nf-call-iptables net.ipv4.ip_forward; ip route; ip -br link")),
            cp.log("kube-proxy"),
            text(&tb.exec(&["iptables-save"]))
        );
    }

    // Limits reach the pod's cgroup.
    let manifest = tb.dir().join("limited.yaml");
    std::fs::write(&manifest, LIMITED).unwrap();
    kubectl_ok(tb, cp, &["create", "-f", &manifest.display().to_string()]);
    wait_running(tb, cp, "limited");
    let cgroup = wait_for(Duration::from_secs(20), || {
        let l = kubectl_ok(tb, cp, &["logs", "limited"]);
        (!l.trim().is_empty()).then_some(l)
    })
    .unwrap_or_default();
    let expected = if cgroup.starts_with("v2") {
        "v2 67108864 25000 100000"
    } else {
        "v1 67108864 25000 100000"
    };
    assert_eq!(cgroup.trim(), expected);

    // Kubernetes' own specs: the list, or those of its specs whose name has
    // KUBEJOIN_CONFORMANCE_FOCUS in it (`scripts/conformance.sh SUBSTRING`).
    let specs: Vec<&str> = match std::env::var("KUBEJOIN_CONFORMANCE_FOCUS") {
        Ok(f) if !f.is_empty() => LIST
            .iter()
            .copied()
            .filter(|s| s.contains(f.as_str()))
            .collect(),
        _ => LIST.to_vec(),
    };
    for (spec, why) in LEFT_OUT {
        eprintln!("  left out: {spec}: {why}");
    }
    e2e(tb, cp, &specs, &report_dir("testbed-v1.36.2"));
}
