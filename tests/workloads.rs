//! Workloads on kubejoin workers, with REAL Kubernetes v1.36.2 (`scripts/real-kubernetes.sh`
//! with its `workloads` part): a whole cluster (etcd, kube-apiserver, kube-controller-manager
//! allocating pod CIDRs, kube-scheduler, a DNS server in CoreDNS's place) in a network
//! namespace of the test's own, two workers on one L2 segment with it, each joined by
//! `kubejoin run` with only the cluster keys and its images carried in `[host]
//! image_archives`, and a pod network made as a network plugin makes one, host-gw routes
//! between the workers (`support::podnet`). Then what a worker is for: pods the cluster
//! schedules run at pod-network addresses, logs and exec reach kubelet through the API
//! server at the address the Node reports, pods and Services answer across nodes and by
//! name, limits reach the pod's cgroup, and Kubernetes' own end-to-end specs (`e2e.test`,
//! from the same source tree) pass on the nodes, with e2e.test's JUnit report under
//! `target/conformance/`.
//!
//! The images are local, under the exact names `e2e.test --list-images` gives, so nothing
//! is ever pulled: the sandbox ("pause") image is a static program that sleeps, busybox is
//! Debian's busybox-static (`support::images`).
//!
//! Slow (a control plane, two kubelets and e2e.test, about 6 minutes): run it by name,
//! `cargo test --test workloads`, or `scripts/conformance.sh` for its output.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::cluster::{
    self, ControlPlane, Place, Setup, WORKLOADS, configure, host_sysctls, in_netns_of, pin_sysctls,
    testbed_containerd, worker,
};
use support::podnet::{self, GATEWAY, Segment};
use support::testbed::{self, Testbed, wait_for};
use support::text;

const VERSION: &str = "v1.36.2";
/// The images as v1.36.2's e2e.test names them (`--list-images`).
const PAUSE: &str = "registry.k8s.io/pause:3.10.2";
const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1";
/// agnhost's names in v1.36.2's e2e.test (the current one and the one before).
const AGNHOST: [&str; 2] = [
    "registry.k8s.io/e2e-test-images/agnhost:2.63.0",
    "registry.k8s.io/e2e-test-images/agnhost:2.55",
];
const DNS_TESTING: &str = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.0.0";
/// The workers' addresses on their segment: with loopback alone, kubelet reports no
/// address and the API server cannot reach it.
const NODE_IPS: [&str; 2] = ["10.0.2.15", "10.0.2.16"];
/// The API server, as the workers reach it (cluster-info names the loopback).
const SERVER: &str = "https://10.0.2.2:6443";

/// The conformance list, each spec as e2e.test names it (`../shared/workloads.md` §2), all
/// of Kubernetes' conformance: the first five need only busybox and pause, the rest
/// agnhost (and the DNS spec glibc-dns-testing). Every CI run runs it.
const LIST: [&str; 12] = [
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
    "Services should serve a basic endpoint from pods",
    "DNS should provide DNS for the cluster [Conformance]",
];

/// The list, or those of its specs whose name has KUBEJOIN_CONFORMANCE_FOCUS in it
/// (`scripts/conformance.sh SUBSTRING`).
fn specs() -> Vec<&'static str> {
    match std::env::var("KUBEJOIN_CONFORMANCE_FOCUS") {
        Ok(f) if !f.is_empty() => LIST
            .iter()
            .copied()
            .filter(|s| s.contains(f.as_str()))
            .collect(),
        _ => LIST.to_vec(),
    }
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
        (
            "dns-testing",
            support::images::dns_testing(&tb.dir().join("dns-testing"), &[DNS_TESTING]),
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

fn kubectl_ok(tb: &impl Place, cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl_out(tb, args);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a cluster's approver of serving CSRs does: the node's pending
/// `kubernetes.io/kubelet-serving` CSR is approved once it is the node's own and names
/// only the Node's address `ip` and hostname.
fn approve_serving_csr(tb: &impl Place, cp: &ControlPlane, node: &str, ip: &str) {
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
    let mut want = vec![format!("DNS:{node}"), format!("IP Address:{ip}")];
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

fn wait_running(c: &Cluster, pod: &str) {
    let running = wait_for(Duration::from_secs(120), || {
        (c.cp.pod_field(c.lan(), pod, "{.status.phase}") == "Running").then_some(())
    });
    assert!(
        running.is_some(),
        "pod {pod} did not run: {}\n{}",
        text(
            &c.cp
                .kubectl_out(c.lan(), &["describe", "pod", "-n", "default", pod])
        ),
        c.workers
            .iter()
            .map(|w| worker_logs(&w.tb))
            .collect::<Vec<_>>()
            .join("\n")
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

/// Runs e2e.test against the cluster, in the control plane's network namespace, with the
/// admin's kubeconfig: the specs `specs` name, its report in `report`; prints each spec
/// run and its status, and fails unless every one ran and passed.
fn e2e(tb: &impl Place, cp: &ControlPlane, specs: &[&str], report: &Path) {
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

/// A worker, joined.
struct Worker {
    tb: Testbed,
    node: String,
    ip: &'static str,
    /// The Node's pod CIDR.
    cidr: String,
}

/// A cluster and its two workers, joined by kubejoin, Ready with a pod network, host-gw
/// routes, kube-proxy and DNS. Dropped in this order: the control plane's processes, the
/// workers, the segment.
struct Cluster {
    cp: ControlPlane,
    workers: Vec<Worker>,
    segment: Segment,
    kernel_before: Vec<String>,
    _swap: std::fs::File,
}

impl Cluster {
    /// Where the control plane runs and kubectl and e2e.test are run.
    fn lan(&self) -> &impl Place {
        &self.segment.ns
    }
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

/// A worker testbed, containerd ready for pods, the images in the directory `[host]
/// image_archives` will name.
fn boot_worker(bin: &Path) -> Testbed {
    let tb = worker(bin).boot().unwrap();
    pin_sysctls(&tb);
    testbed_containerd(&tb);
    carry_images(&tb, &bin.join("agnhost"));
    tb
}

/// Joins the worker `tb` with `kubejoin run`: only the cluster keys, the server as the
/// segment reaches it, the images, `serverTLSBootstrap`. Returns the Node's name.
fn join(tb: &Testbed, cp: &ControlPlane) -> String {
    configure(tb, cp, "containerd", "");
    tb.write(
        "/etc/kubejoin/config.d/20-images.toml",
        format!(
            "[cluster]\nserver = \"{SERVER}\"\nuse_configured_server = true\n\n\
             [host]\nsandbox_image = \"{PAUSE}\"\nimage_archives = \"/var/lib/kubejoin-images\"\n\n\
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
    assert!(out.status.success(), "{report}\n{}", worker_logs(tb));
    assert!(report.contains("no network plugin yet"), "{report}");
    hostname(tb)
}

/// Starts the cluster and joins its two workers with `kubejoin run`; `None` (skipped, said
/// why) where the binaries or testbeds are missing.
fn joined_workers() -> Option<Cluster> {
    let bin = cluster::binaries_with(VERSION, &WORKLOADS)?;
    if !testbed::available() {
        return None;
    }
    let _swap = testbed::lock_swap().unwrap();
    let kernel_before = host_sysctls();
    let testbeds = [boot_worker(&bin), boot_worker(&bin)];
    // The segment's namespace keeps its files (the control plane's) in the first worker's
    // directory, which outlives the control plane.
    let mut segment = Segment::new(&testbeds[0].dir().join("segment"));
    for (tb, ip) in testbeds.iter().zip(NODE_IPS) {
        segment.attach(tb, ip);
    }
    let mut cp = ControlPlane::start_with(
        &segment.ns,
        VERSION,
        &bin,
        Setup {
            workloads: true,
            verify_kubelets: true,
            bind_any: true,
            ..Default::default()
        },
    );
    let lan = &segment.ns;
    // The cluster's kubelet configuration as kubeadm publishes it (clusterDNS 10.96.0.10,
    // clusterDomain cluster.local), and its DNS.
    cp.apply_kubeadm_kubelet_config(lan);
    cp.start_dns(lan, GATEWAY);

    let mut workers = Vec::new();
    for (tb, ip) in testbeds.into_iter().zip(NODE_IPS) {
        let node = join(&tb, &cp);
        workers.push(Worker {
            tb,
            node,
            ip,
            cidr: String::new(),
        });
    }

    // The cluster's side: kube-controller-manager gives each Node its pod CIDR, and the
    // network plugin (the test's) configures the node from it, with a route to every other
    // node's pods through that node's address.
    for w in &mut workers {
        w.cidr = wait_for(Duration::from_secs(60), || {
            let c = cp.node_field(lan, &w.node, "{.spec.podCIDR}");
            (!c.is_empty()).then_some(c)
        })
        .unwrap_or_else(|| panic!("no podCIDR:\n{}", cp.log("kube-controller-manager")));
        podnet::install(&w.tb, &w.cidr);
        segment.route(&w.cidr, w.ip);
    }
    for w in &workers {
        for other in workers.iter().filter(|o| o.ip != w.ip) {
            podnet::route(&w.tb, &other.cidr, other.ip);
        }
    }
    for w in &workers {
        // Up to about 140 s: kubelet annotates its CSINode on its own schedule (see
        // kubelet::node_status), and a Node that registered late waits for the next try.
        let ready = wait_for(Duration::from_secs(200), || {
            (cp.node_ready(lan, &w.node) == "True").then_some(())
        });
        assert!(
            ready.is_some(),
            "the Node did not turn Ready: {}\n{}",
            kubectl_ok(lan, &cp, &["describe", "node", &w.node]),
            worker_logs(&w.tb)
        );
        let addresses =
            cp.kubectl_json(lan, &["get", "node", &w.node])["status"]["addresses"].to_string();
        assert!(
            addresses.contains(&format!(r#"{{"address":"{}","type":"InternalIP"}}"#, w.ip)),
            "{addresses}"
        );
        cp.start_kube_proxy(&w.tb, &w.node, SERVER);
    }

    for w in &workers {
        // kubelet asked the cluster for its serving certificate: until the CSR is
        // approved, status and doctor say so, with the fix.
        let tb = &w.tb;
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
        approve_serving_csr(lan, &cp, &w.node, w.ip);
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
            text(&cp.kubectl_out(lan, &["get", "csr", "-o", "wide"])),
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
    }
    Some(Cluster {
        cp,
        workers,
        segment,
        kernel_before,
        _swap,
    })
}

/// `kubectl run NAME` of busybox on the Node `node` (a nodeSelector: the scheduler still
/// places it) with `script`.
fn run_on(c: &Cluster, name: &str, node: &str, script: &str) {
    let out =
        c.cp.run_pod_on(c.lan(), name, BUSYBOX, node, &["sh", "-c", script]);
    assert!(out.status.success(), "kubectl run {name}: {}", text(&out));
    wait_running(c, name);
    assert_eq!(c.cp.pod_field(c.lan(), name, "{.spec.nodeName}"), node);
}

/// What `GET /` from the pod `from` to `ip:port` answers, waiting up to a minute for
/// `expect` in it; panics with the state of both nodes' networks otherwise.
fn answers(c: &Cluster, from: &str, ip: &str, port: u16, expect: &str, what: &str) {
    let served = wait_for(Duration::from_secs(60), || {
        let out =
            c.cp.kubectl_out(c.lan(), &["exec", from, "--", "sh", "-c", &get(ip, port)]);
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        body.contains(expect).then_some(body)
    });
    if served.is_none() {
        let last =
            c.cp.kubectl_out(c.lan(), &["exec", from, "--", "sh", "-c", &get(ip, port)]);
        let nodes: Vec<String> = c
            .workers
            .iter()
            .map(|w| {
                format!(
                    "--- {} ({}):\n{}\n--- its kube-proxy:\n{}",
                    w.node,
                    w.ip,
                    text(&w.tb.sh(
                        "sysctl net.bridge.bridge-nf-call-iptables net.ipv4.ip_forward; ip route; ip -br addr; iptables-save"
                    )),
                    c.cp.log(&format!("kube-proxy-{}", w.node))
                )
            })
            .collect();
        panic!(
            "{what}: {ip}:{port} did not answer {expect:?} to {from}: {}\n{}",
            text(&last),
            nodes.join("\n")
        );
    }
}

#[test]
fn kubejoin_workers_run_the_clusters_pods_and_pass_kubernetes_own_specs() {
    let Some(c) = joined_workers() else {
        return;
    };
    let (lan, cp) = (c.lan(), &c.cp);
    // A pod the cluster schedules (no nodeName, no hostNetwork): it runs at an address of
    // its Node's pod CIDR, and the API server reaches kubelet for its logs and exec.
    kubectl_ok(
        lan,
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
    wait_running(&c, "hello");
    let here_name = cp.pod_field(lan, "hello", "{.spec.nodeName}");
    let here = c.workers.iter().find(|w| w.node == here_name).unwrap();
    let there = c.workers.iter().find(|w| w.node != here_name).unwrap();
    let ip = cp.pod_field(lan, "hello", "{.status.podIP}");
    let prefix = here.cidr.trim_end_matches(".0/24");
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "pod IP {ip} is not in {}",
        here.cidr
    );
    let logs = wait_for(Duration::from_secs(20), || {
        let l = kubectl_ok(lan, cp, &["logs", "hello"]);
        l.contains("hello from hello").then_some(l)
    });
    assert!(
        logs.is_some(),
        "{:?}",
        kubectl_ok(lan, cp, &["logs", "hello"])
    );
    let exec = kubectl_ok(
        lan,
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

    // A web server on each node, each behind a Service.
    let serve = "mkdir -p /www && echo served by $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www";
    run_on(&c, "near", &here.node, serve);
    run_on(&c, "far", &there.node, serve);
    let mut service_ips = Vec::new();
    for pod in ["near", "far"] {
        kubectl_ok(
            lan,
            cp,
            &["expose", "pod", pod, "--port=80", "--target-port=8080"],
        );
        service_ips.push(kubectl_ok(
            lan,
            cp,
            &["get", "service", pod, "-o", "jsonpath={.spec.clusterIP}"],
        ));
    }
    // The Service whose endpoint is on the same node: kube-proxy's rules, and the bridge's
    // traffic through netfilter (br_netfilter), without which exactly this case fails.
    answers(
        &c,
        "hello",
        &service_ips[0],
        80,
        "served by near",
        "same node, Service",
    );
    // The other node's pod at its own address (the host-gw route), and through its Service.
    let far_ip = cp.pod_field(lan, "far", "{.status.podIP}");
    answers(
        &c,
        "hello",
        &far_ip,
        8080,
        "served by far",
        "other node, pod",
    );
    answers(
        &c,
        "hello",
        &service_ips[1],
        80,
        "served by far",
        "other node, Service",
    );

    // The cluster's DNS, as kubelet configured the pod from the cluster's kubelet
    // configuration: the Service's name gives its ClusterIP.
    let resolv = kubectl_ok(lan, cp, &["exec", "hello", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 10.96.0.10")
            && resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    let found = wait_for(Duration::from_secs(30), || {
        let out = cp.kubectl_out(
            lan,
            &[
                "exec",
                "hello",
                "--",
                "nslookup",
                "far.default.svc.cluster.local",
            ],
        );
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        t.contains(&format!("Address: {}", service_ips[1]))
            .then_some(t)
    });
    assert!(
        found.is_some(),
        "{}\n--- dns:\n{}",
        text(&cp.kubectl_out(
            lan,
            &[
                "exec",
                "hello",
                "--",
                "nslookup",
                "far.default.svc.cluster.local"
            ]
        )),
        cp.log("dns")
    );

    // Limits reach the pod's cgroup.
    let manifest = c.workers[0].tb.dir().join("limited.yaml");
    std::fs::write(&manifest, LIMITED).unwrap();
    kubectl_ok(lan, cp, &["create", "-f", &manifest.display().to_string()]);
    wait_running(&c, "limited");
    let cgroup = wait_for(Duration::from_secs(20), || {
        let l = kubectl_ok(lan, cp, &["logs", "limited"]);
        (!l.trim().is_empty()).then_some(l)
    })
    .unwrap_or_default();
    let expected = if cgroup.starts_with("v2") {
        "v2 67108864 25000 100000"
    } else {
        "v1 67108864 25000 100000"
    };
    assert_eq!(cgroup.trim(), expected);

    // Kubernetes' own specs.
    e2e(lan, cp, &specs(), &report_dir("testbed-v1.36.2"));
}

/// The worker VMs of [`kubejoin_worker_vms_pass_kubernetes_own_specs`]: release, hostname,
/// address, MAC address.
const VMS: [(&str, &str, &str, &str); 2] = [
    (
        "bookworm",
        "worker-bookworm",
        "10.0.2.15",
        "52:54:00:6b:6a:0f",
    ),
    ("trixie", "worker-trixie", "10.0.2.16", "52:54:00:6b:6a:10"),
];

/// The sandbox image under the names containerd 1.6 (bookworm) and 1.7 (trixie) ask for by
/// default and the one kubelet v1.36.2 names, so no configuration beyond kubejoin's is
/// needed.
const VM_PAUSE: [&str; 5] = [
    "registry.k8s.io/pause:3.6",
    "registry.k8s.io/pause:3.8",
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/pause:3.10",
    PAUSE,
];

/// `kubejoin token create --output cloud-init`'s user-data with its `packages:` line
/// replaced: these VMs reach no package archive, so a `runcmd` item installs from the seed
/// disk the .deb, kubelet and the images (as an air-gapped image carries them), and what
/// the cluster's DaemonSets would bring: the CNI plugins where Debian's containerd looks
/// (/usr/lib/cni, where Debian's containernetworking-plugins puts them) and kube-proxy with
/// its kubeconfig.
fn vm_user_data(printed: &str) -> String {
    support::vm::without_packages(
        printed,
        "  # In place of `packages: [kubejoin]` and the cluster's DaemonSets: this VM reaches no archive or registry.\n  - [sh, -c, \"set -e; mkdir -p /run/seed; mount -o ro LABEL=cidata /run/seed; dpkg -i /run/seed/kubejoin.deb; install -m 0755 /run/seed/kubelet /usr/local/bin/kubelet; for i in /run/seed/image-*.tar; do ctr -n k8s.io images import $i; done; mkdir -p /usr/lib/cni /opt/kube-proxy; tar -C /usr/lib/cni -xf /run/seed/cni.tar; install -m 0755 /run/seed/kube-proxy /opt/kube-proxy/kube-proxy; install -m 0600 /run/seed/kube-proxy.conf /opt/kube-proxy/kubeconfig; umount /run/seed; sync\"]\n",
    )
}

/// Kubernetes' conformance list on kubejoin workers that are VMs, Debian 12 and Debian 13
/// (their own kernels, cgroup v2), each from the user-data `kubejoin token create --output
/// cloud-init` prints, on one L2 segment (tap devices on the segment's bridge, addresses
/// from its DHCP server) with the control plane, the pod network and host-gw routes as
/// above, kube-proxy a unit in each VM. Slow under TCG: `scripts/conformance.sh --vm`.
#[test]
#[ignore = "two worker VMs under emulation, about 30 minutes: scripts/conformance.sh --vm"]
fn kubejoin_worker_vms_pass_kubernetes_own_specs() {
    use support::vm::{self, Vm};
    if !vm::available() {
        return;
    }
    let Some(bin) = cluster::binaries_with(VERSION, &WORKLOADS) else {
        return;
    };
    let (Some(deb), Some(images)) = (
        vm::deb(),
        VMS.iter()
            .map(|(release, ..)| vm::image(release))
            .collect::<Option<Vec<_>>>(),
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("kubejoin-vm-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut segment = Segment::new(&dir.join("segment"));
    let leases: Vec<(&str, &str)> = VMS.iter().map(|(_, _, ip, mac)| (*mac, *ip)).collect();
    segment.serve_dhcp(&dir.join("dhcp"), &leases);
    let lan = &segment.ns;
    let mut cp = ControlPlane::start_with(
        lan,
        VERSION,
        &bin,
        Setup {
            seed: false,
            workloads: true,
            bind_any: true,
            ..Default::default()
        },
    );
    // The cluster's DNS first: `kubejoin cluster prepare` then gives the kubelet-config it
    // publishes clusterDNS from the Service kube-system/kube-dns.
    cp.start_dns(lan, GATEWAY);
    let out = cp.kubejoin(lan, &["cluster", "prepare", "--server", SERVER]);
    assert!(out.status.success(), "cluster prepare: {}", text(&out));
    assert!(
        text(&out).contains("clusterDNS 10.96.0.10 (Service kube-system/kube-dns)"),
        "{}",
        text(&out)
    );

    // What the seed disks carry.
    let carried = dir.join("carried");
    std::fs::create_dir_all(&carried).unwrap();
    let archives = [
        support::images::sleeper(&carried.join("pause"), &VM_PAUSE),
        support::images::busybox(&carried.join("busybox"), &[BUSYBOX]),
        support::images::agnhost(&carried.join("agnhost"), &bin.join("agnhost"), &AGNHOST),
        support::images::dns_testing(&carried.join("dns-testing"), &[DNS_TESTING]),
    ];
    let cni = vm::cni_tar(&carried);
    let proxy_conf = carried.join("kube-proxy.conf");
    std::fs::write(&proxy_conf, cp.admin_conf_embedded(SERVER)).unwrap();

    let (kubelet, proxy) = (bin.join("kubelet"), bin.join("kube-proxy"));
    let image_names: Vec<String> = (0..archives.len())
        .map(|i| format!("image-{i}.tar"))
        .collect();
    let mut vms = Vec::new();
    for ((release, hostname, _, mac), image) in VMS.iter().zip(&images) {
        let out = cp.kubejoin(
            lan,
            &[
                "token",
                "create",
                "--output",
                "cloud-init",
                "--description",
                hostname,
            ],
        );
        assert!(out.status.success(), "token create: {}", text(&out));
        let printed = String::from_utf8(out.stdout).unwrap();
        let tap = format!("kjtap-{release}");
        segment.tap(&tap);
        let mut files: Vec<(&str, &Path)> = vec![
            ("kubejoin.deb", &deb),
            ("kubelet", &kubelet),
            ("kube-proxy", &proxy),
            ("kube-proxy.conf", &proxy_conf),
            ("cni.tar", &cni),
        ];
        for (name, archive) in image_names.iter().zip(&archives) {
            files.push((name, archive));
        }
        let vm_dir = dir.join(hostname);
        let seed = vm::seed_disk(&vm_dir, &vm_user_data(&printed), hostname, &files);
        let mut vm = Vm::create(hostname, &vm_dir, image, &seed, lan);
        vm.on_tap(&tap, mac);
        vm.boot("");
        vms.push(vm);
    }

    // Each joins on its first boot: its Node registers and gets a pod CIDR.
    let mut cidrs = Vec::new();
    for (vm, (release, hostname, ip, _)) in vms.iter_mut().zip(VMS) {
        let cidr = wait_for(Duration::from_secs(25 * 60), || {
            if !vm.running() {
                panic!("{hostname} stopped:\n{}", vm.console(40));
            }
            let c = cp.node_field(lan, hostname, "{.spec.podCIDR}");
            (!c.is_empty()).then_some(c)
        })
        .unwrap_or_else(|| {
            panic!(
                "{hostname} did not join:\n{}\n{}",
                vm.try_sh(
                    "journalctl --no-pager -o short-monotonic -u kubejoin -u kubelet -u cloud-final | tail -n 60",
                    Duration::from_secs(30)
                )
                .map(|(_, o)| o)
                .unwrap_or_else(|e| e),
                vm.console(30)
            )
        });
        eprintln!(
            "{hostname} ({release}): registered with pod CIDR {cidr}, {:.0} s after power-on",
            vm.booted_at().elapsed().as_secs_f64()
        );
        // The network plugin's part, as on the testbeds, in the guest.
        vm.sh(&podnet::install_script(&cidr));
        segment.route(&cidr, ip);
        cidrs.push(cidr);
    }
    for (i, vm) in vms.iter().enumerate() {
        let (other_cidr, other_ip) = (&cidrs[1 - i], VMS[1 - i].2);
        vm.sh(&format!("ip route replace {other_cidr} via {other_ip}"));
    }
    // kube-proxy, as its DaemonSet would run it: a unit of each VM's.
    for (vm, (_, hostname, ..)) in vms.iter().zip(VMS) {
        vm.sh(
            &format!(
                "systemd-run --unit=kube-proxy /opt/kube-proxy/kube-proxy --kubeconfig=/opt/kube-proxy/kubeconfig --hostname-override={hostname} --cluster-cidr={} --proxy-mode=iptables",
                cluster::CLUSTER_CIDR
            ),
        );
    }
    for (vm, (release, hostname, ip, _)) in vms.iter().zip(VMS) {
        let ready = wait_for(Duration::from_secs(300), || {
            (cp.node_ready(lan, hostname) == "True").then_some(())
        });
        assert!(
            ready.is_some(),
            "{hostname} did not turn Ready: {}\n{}",
            kubectl_ok(lan, &cp, &["describe", "node", hostname]),
            vm.sh("journalctl --no-pager -u kubelet | tail -n 40")
        );
        let addresses =
            cp.kubectl_json(lan, &["get", "node", hostname])["status"]["addresses"].to_string();
        assert!(
            addresses.contains(&format!(r#"{{"address":"{ip}","type":"InternalIP"}}"#)),
            "{addresses}"
        );
        let status = vm.sh("kubejoin status || true");
        assert!(status.contains("ready:         Ready\n"), "{status}");
        let preflight = vm.sh("kubejoin preflight || true");
        assert!(
            preflight.contains("CNIPlugins       containerd finds the CNI plugins in /usr/lib/cni"),
            "{preflight}"
        );
        eprintln!(
            "{hostname} ({release}): Ready {:.0} s after power-on",
            vm.booted_at().elapsed().as_secs_f64()
        );
    }

    // A pod with limits on each (cgroup v2 workers): memory.max and cpu.max.
    for (_, hostname, ..) in VMS {
        let name = format!("limited-{hostname}");
        let manifest = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &manifest,
            LIMITED.replace("name: limited\n", &format!("name: {name}\n")).replace(
                "spec:\n  restartPolicy: Never\n",
                &format!(
                    "spec:\n  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/hostname: {hostname}}}\n"
                ),
            ),
        )
        .unwrap();
        kubectl_ok(lan, &cp, &["create", "-f", &manifest.display().to_string()]);
        let cgroup = wait_for(Duration::from_secs(600), || {
            let out = cp.kubectl_out(lan, &["logs", &name]);
            let l = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!l.is_empty()).then_some(l)
        });
        assert_eq!(
            cgroup.as_deref(),
            Some("v2 67108864 25000 100000"),
            "{}",
            text(&cp.kubectl_out(lan, &["describe", "pod", &name]))
        );
    }

    e2e(lan, &cp, &specs(), &report_dir("vm-v1.36.2"));
    drop(cp);
    for mut vm in vms {
        vm.power_cut();
    }
    drop(segment);
    let _ = std::fs::remove_dir_all(&dir);
}
