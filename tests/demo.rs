//! The quick-start demo's second half (`demo/run.sh`): a whole join in a testbed with
//! docker running and swap on, shown the way an operator would look at a node. Ignored by
//! `cargo test`; the demo runs it with `cargo test --test demo -- --ignored --nocapture`.

mod support;

use apiserver_double::ApiServer;
use support::node::{api, node, with_unit};
use support::testbed;

/// Runs a command on the worker and shows its output, which holds no Rust insides.
fn show(tb: &testbed::Testbed, title: &str, argv: &[&str]) {
    println!("\n== {title}: {}", argv.join(" "));
    let out = support::text(&tb.exec(argv));
    print!("{out}");
    if argv[0] == "kubejoin" || argv.contains(&"kubejoin.service") {
        support::assert_readable(title, &out);
    }
}

#[test]
#[ignore = "the demo; run by demo/run.sh"]
fn join_a_worker_in_a_testbed() {
    if !testbed::available() {
        return;
    }
    // Host preparation acts on the kernel's swap and modules, which are this machine's:
    // turn those steps on only where they touch nothing but the testbed.
    let own_swap = std::fs::read_to_string("/proc/swaps")
        .map(|s| s.lines().count() > 1)
        .unwrap_or(true);
    let modules_in = std::path::Path::new("/sys/module/overlay").exists()
        && std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists();
    let host = format!(
        "[host]\nswap = {}\nkernel = {}\ncontainer_runtime = \"docker\"\n",
        !own_swap, modules_in
    );
    println!(
        "booting a testbed: this machine under the real systemd, in namespaces, docker running"
    );
    let mut builder = with_unit(node(
        true,
        "node_labels = { \"node.kubernetes.io/pool\" = \"demo\" }\n",
    ))
    .with_file("/etc/kubejoin/config.d/10-demo.toml", host, 0o644);
    if !own_swap {
        builder = builder.with_swap(64 << 20);
    } else {
        println!("(this machine has swap of its own: the demo leaves swap alone)");
    }
    let tb = builder.boot().expect("testbed boots");
    if let Some(device) = tb.swap_device() {
        tb.sh(&format!("echo '{device} none swap sw 0 0' >> /etc/fstab"));
        println!("swap on: {device}, listed in /etc/fstab");
    }
    println!(
        "booted in {:.1?}; cluster-info served on the testbed's 127.0.0.1:6443, its signer 1 s late",
        tb.boot_time
    );
    let _api = api(
        &tb,
        ApiServer::builder().sign_after(std::time::Duration::from_secs(1)),
    );

    show(
        &tb,
        "before: docker's bridge and nat rules, swap",
        &[
            "sh",
            "-c",
            "ip -br link show docker0; iptables -t nat -S | grep -c DOCKER; cat /proc/swaps",
        ],
    );
    show(&tb, "what a run would do", &["kubejoin", "plan"]);
    show(
        &tb,
        "systemd starts kubejoin.service (returns once kubelet is up)",
        &["systemctl", "start", "kubejoin.service"],
    );
    show(
        &tb,
        "the join's story",
        &[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "kubejoin.service",
        ],
    );
    println!(
        "(expected above: the warning that swap is on, which host preparation then turns off; \
         the one that no CNI plugins are where the runtime looks, true of this node, which runs no \
         pods in the demo (a network plugin or the administrator installs them); and \
         \"cluster-info not usable yet\" while the double's bootstrap signer takes its second, \
         as a real one lags a new token: kubejoin waits and retries)"
    );
    show(
        &tb,
        "the units",
        &[
            "systemctl",
            "status",
            "--no-pager",
            "--lines=0",
            "kubejoin.service",
            "kubelet.service",
            "docker.service",
        ],
    );
    show(
        &tb,
        "after: no docker0, no nat rules, no swap",
        &[
            "sh",
            "-c",
            "ip -br link show docker0 2>&1; iptables -t nat -S | grep -c DOCKER; cat /proc/swaps; tail -1 /etc/fstab",
        ],
    );
    show(
        &tb,
        "kubelet's own credentials; the bootstrap kubeconfig and the token's file are gone",
        &["sh", "-c", "ls -l /var/lib/kubelet/ /etc/kubejoin/"],
    );
    show(
        &tb,
        "kubejoin status (each phase's time)",
        &["kubejoin", "status"],
    );
    show(&tb, "a second run", &["kubejoin", "run"]);
    assert_eq!(tb.unit_state("kubejoin.service"), "active exited");
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
}

/// The same main job with REAL Kubernetes: kubejoin.service joins a testbed worker with
/// the real kubelet to a real etcd, kube-apiserver and kube-controller-manager (built by
/// `scripts/real-kubernetes.sh`), and the cluster shows the node and its approved CSR.
#[test]
#[ignore = "the demo; run by demo/run.sh when real Kubernetes is built"]
fn join_a_worker_to_real_kubernetes() {
    use support::cluster::{self, ControlPlane};
    let version = ["v1.36.2", "v1.20.2"]
        .into_iter()
        .find(|v| cluster::cache().join(v).join("kubelet").exists())
        .unwrap_or("v1.36.2");
    let Some(bin) = cluster::binaries(version) else {
        return;
    };
    if !testbed::available() {
        return;
    }
    let _one_at_a_time = testbed::lock_swap().unwrap();
    println!("booting a testbed worker with docker.io, containerd and the real kubelet {version}");
    let tb = with_unit(cluster::worker(&bin))
        .boot()
        .expect("testbed boots");
    cluster::pin_sysctls(&tb);
    println!(
        "starting etcd, kube-apiserver and kube-controller-manager {version} on the testbed's loopback: a bare cluster, none of the seed's objects"
    );
    let cp = ControlPlane::start_with(
        &tb,
        version,
        &bin,
        cluster::Setup {
            seed: false,
            signer: true,
            token_auth: true,
            ..Default::default()
        },
    );
    // The operator's half, on the control plane (here: this machine, on the testbed's
    // loopback), with the admin kubeconfig, which never leaves it.
    let operator = |title: &str, args: &[&str]| {
        println!(
            "\n== {title}: kubejoin {} --kubeconfig=admin.conf",
            args.join(" ")
        );
        let out = cp.kubejoin(&tb, args);
        let said = support::text(&out);
        print!("{said}");
        support::assert_readable(title, &said);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    operator(
        "the control plane's half, planned",
        &["cluster", "prepare", "--dry-run"],
    );
    operator("and done", &["cluster", "prepare"]);
    println!(
        "\n== a token for the worker: kubejoin token create --output config --kubeconfig=admin.conf"
    );
    let out = cp.kubejoin(
        &tb,
        &[
            "token",
            "create",
            "--output",
            "config",
            "--description",
            "demo worker",
        ],
    );
    assert!(out.status.success(), "{}", support::text(&out));
    let config = String::from_utf8(out.stdout).unwrap();
    let redacted: String = config
        .lines()
        .map(|l| match l.strip_prefix("token = \"") {
            Some(t) => format!("token = \"{}.<secret, printed only here>\"\n", &t[..6]),
            None => format!("{l}\n"),
        })
        .collect();
    print!("{redacted}");
    operator(
        "the cluster's tokens (never their secrets)",
        &["token", "list"],
    );
    // cloud-init's part: that configuration, plus the runtime, with host preparation kept
    // off this machine's own swap and kernel modules.
    tb.write(
        "/etc/kubejoin/config.toml",
        format!(
            "[host]\ncontainer_runtime = \"containerd\"\nswap = false\nkernel = false\n\n{config}"
        ),
        0o600,
    );
    show(
        &tb,
        "on the worker, before anything changes: would a join succeed?",
        &["kubejoin", "doctor"],
    );
    show(
        &tb,
        "systemd starts kubejoin.service (returns once the node is in)",
        &["systemctl", "start", "kubejoin.service"],
    );
    show(
        &tb,
        "the join's story",
        &[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "kubejoin.service",
        ],
    );
    show(&tb, "kubejoin status", &["kubejoin", "status"]);
    let kubectl = |title: &str, args: &[&str]| {
        println!("\n== {title}: kubectl {}", args.join(" "));
        print!("{}", support::text(&cp.kubectl_out(&tb, args)));
    };
    kubectl(
        "the cluster's view: the node, NotReady until a network plugin is installed (as kubejoin status says)",
        &["get", "nodes", "-o", "wide"],
    );
    kubectl("its CSR, approved and issued", &["get", "csr"]);
    show(
        &tb,
        "kubelet keeps running",
        &[
            "systemctl",
            "status",
            "--no-pager",
            "--lines=0",
            "kubelet.service",
        ],
    );
    assert_eq!(tb.unit_state("kubejoin.service"), "active exited");
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
}
