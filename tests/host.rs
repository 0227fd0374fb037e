//! Host preparation by `kubejoin run`, in testbeds with real swap and real systemd.

mod support;

use support::text;

use apiserver_double::ApiServer;
use support::node::{api, node};
use support::testbed;

/// Skips (or, under CI, fails) a test that cannot run without changing this machine.
fn unsafe_here(why: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    true
}

/// A testbed whose configuration turns `[host] kernel` on, with `kubelet` keys, and the
/// double serving it.
fn with_kernel_step(kubelet: &str) -> (testbed::Testbed, ApiServer) {
    let tb = node(false, kubelet)
        .with_file(
            "/etc/kubejoin/config.d/20-kernel.toml",
            "[host]\nkernel = true\n",
            0o644,
        )
        .boot()
        .unwrap();
    let api = api(&tb, ApiServer::builder());
    (tb, api)
}

/// The seed's worker preparation in one run: a testbed with docker running (docker0,
/// docker's nat rules; dockerd turned forwarding on itself) and a loop-device swap on
/// and in /etc/fstab.
#[test]
fn the_seeds_worker_preparation_in_one_run() {
    if !testbed::available() {
        return;
    }
    // Loading a module would change this machine's kernel: run only where both are in.
    let modules = std::path::Path::new("/sys/module/overlay").exists()
        && std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists();
    if !modules
        && unsafe_here(
            "overlay or br_netfilter is not in this kernel; loading it would change the machine",
        )
    {
        return;
    }
    let tb = node(true, "")
        .with_file(
            "/etc/kubejoin/config.d/20-host.toml",
            "[host]\nswap = true\nkernel = true\ncontainer_runtime = \"docker\"\n",
            0o644,
        )
        .with_swap(16 << 20)
        .boot()
        .unwrap();
    let device = tb.swap_device().unwrap().to_string();
    // kubejoin turns off every swap it sees, and swap is the kernel's: only ours may be on.
    let host_swaps = std::fs::read_to_string("/proc/swaps").unwrap();
    let others: Vec<&str> = host_swaps
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(&device))
        .collect();
    if !others.is_empty()
        && unsafe_here(&format!(
            "this machine has swap of its own, which the test would turn off: {others:?}"
        ))
    {
        return;
    }
    let out = tb.sh(&format!("echo '{device} none swap sw 0 0' >> /etc/fstab"));
    assert!(out.status.success(), "{}", text(&out));
    let fstab_before = tb.read("/etc/fstab").unwrap();
    let unit = format!("{}.swap", device.trim_start_matches('/').replace('/', "-"));
    let _api = api(&tb, ApiServer::builder());
    let nat = || text(&tb.exec(&["iptables", "-t", "nat", "-S"]));
    let networks = || text(&tb.exec(&["docker", "network", "ls", "--format", "{{.Name}}"]));
    // Sysctls under /proc/sys/net answer for the reader's network namespace: ask inside.
    let forwarding = || text(&tb.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]));
    assert!(nat().contains("-N DOCKER"), "{}", nat());
    assert!(networks().lines().any(|n| n == "bridge"), "{}", networks());

    // The plan lists every change, and changes nothing.
    let files_before = tb.changed_files_except_logs();
    let out = tb.exec_ok(&["kubejoin", "run", "--dry-run"]);
    let plan = text(&out);
    for line in [
        format!("host:          would swapoff {device} (kubelet does not run with swap on)"),
        "host:          would edit /etc/fstab (so that swap stays off after a reboot), original kept as /etc/fstab.kubejoin-orig".into(),
        format!("+ # kubejoin: swap off for kubelet: {device} none swap sw 0 0"),
        format!("host:          would MaskUnitFiles {unit}"),
        "host:          would write /etc/modules-load.d/kubejoin.conf".into(),
        "host:          would write /etc/sysctl.d/90-kubejoin.conf".into(),
        "host:          would write /etc/docker/daemon.json".into(),
        "+   \"bridge\": \"none\",".into(),
        "host:          would RestartUnit docker.service replace".into(),
        "host:          would iptables -t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE".into(),
        "host:          would iptables -t nat -X DOCKER".into(),
        "host:          would delete link docker0".into(),
        format!("preflight:     warning Swap: swap is active: {device} (host preparation turns it off)"),
    ] {
        assert!(plan.contains(&line), "{line:?} not in:\n{plan}");
    }
    assert!(!plan.contains("RestartUnit systemd-modules-load"), "{plan}");
    assert_eq!(tb.changed_files_except_logs(), files_before);
    assert!(
        std::fs::read_to_string("/proc/swaps")
            .unwrap()
            .contains(&device)
    );

    tb.exec_ok(&["kubejoin", "run"]);
    // Swap off, now and after reboot.
    assert!(
        !std::fs::read_to_string("/proc/swaps")
            .unwrap()
            .contains(&device),
        "swap is off"
    );
    let fstab = String::from_utf8(tb.read("/etc/fstab").unwrap()).unwrap();
    assert!(
        fstab.ends_with(&format!(
            "# kubejoin: swap off for kubelet: {device} none swap sw 0 0\n"
        )),
        "{fstab}"
    );
    assert_eq!(tb.read("/etc/fstab.kubejoin-orig").unwrap(), fstab_before);
    let state = text(&tb.exec(&["systemctl", "show", "--value", "-p", "UnitFileState", &unit]));
    assert_eq!(state.trim(), "masked");
    // Kernel prerequisites, in this testbed's namespace only.
    assert_eq!(forwarding(), "1\n");
    assert_eq!(
        std::fs::read("/proc/sys/net/ipv4/ip_forward").unwrap(),
        b"0\n",
        "the machine's own"
    );
    let modules = String::from_utf8(tb.read("/etc/modules-load.d/kubejoin.conf").unwrap()).unwrap();
    assert!(modules.ends_with("overlay\nbr_netfilter\n"), "{modules}");
    let sysctls = String::from_utf8(tb.read("/etc/sysctl.d/90-kubejoin.conf").unwrap()).unwrap();
    assert!(sysctls.contains("net.ipv4.ip_forward = 1\n"), "{sysctls}");
    // docker with the seed's settings, in effect in the running daemon.
    assert_eq!(tb.unit_state("docker.service"), "active running");
    let json: serde_json::Value =
        serde_json::from_slice(&tb.read("/etc/docker/daemon.json").unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "bridge": "none", "iptables": false, "ip-masq": false})
    );
    assert!(!networks().lines().any(|n| n == "bridge"), "{}", networks());
    assert!(!nat().contains("DOCKER"), "{}", nat());
    assert!(!nat().contains("docker0"), "{}", nat());
    assert!(
        !tb.exec(&["ip", "link", "show", "docker0"]).status.success(),
        "docker0 is gone"
    );
    assert_eq!(tb.unit_state("kubelet.service"), "active running");

    // A docker0 left behind (docker already configured): deleted over rtnetlink. (With
    // kubelet stopped: a joined node with kubelet active is left alone.)
    tb.exec_ok(&["systemctl", "stop", "kubelet.service"]);
    tb.exec_ok(&["ip", "link", "add", "docker0", "type", "bridge"]);
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("host:          delete link docker0"),
        "{}",
        text(&out)
    );
    assert!(
        !tb.exec(&["ip", "link", "show", "docker0"]).status.success(),
        "docker0 is gone"
    );

    // Prepared: the next run's host preparation plans and changes nothing (kubelet
    // stopped again, so that the run does not stop at "already joined"; the token is
    // gone since the join, so kubelet is started with its own credentials).
    tb.exec_ok(&["systemctl", "stop", "kubelet.service"]);
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       started"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("host:          "), "{}", text(&out));
}

#[test]
fn kernel_prerequisites_are_written_and_applied() {
    if !testbed::available() {
        return;
    }
    // Loading a module would change this machine's kernel: run only where both are in.
    let present = std::path::Path::new("/sys/module/overlay").exists()
        && std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists();
    if !present {
        let why =
            "overlay or br_netfilter is not in this kernel; loading it would change the machine";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    // Swaps are global: keep the swap test's from showing up in this run's preflight.
    let _swap = testbed::lock_swap().unwrap();
    let (tb, _api) = with_kernel_step("");
    // A new network namespace starts without forwarding (per namespace, like these
    // sysctls: read them from inside, /proc/sys/net answers for the reader's namespace).
    let forwarding = || text(&tb.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]));
    assert_eq!(forwarding(), "0\n");

    let out = tb.exec_ok(&["kubejoin", "run", "--dry-run"]);
    let plan = text(&out);
    for line in [
        "host:          would write /etc/modules-load.d/kubejoin.conf (load overlay and br_netfilter at every boot)",
        "host:          would write /etc/sysctl.d/90-kubejoin.conf (forwarding and bridge netfilter at every boot)",
        "host:          would sysctl net.ipv4.ip_forward = 1 (now 0)",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    assert!(!plan.contains("RestartUnit systemd-modules-load"), "{plan}");

    tb.exec_ok(&["kubejoin", "run"]);
    assert_eq!(forwarding(), "1\n");
    let modules = String::from_utf8(tb.read("/etc/modules-load.d/kubejoin.conf").unwrap()).unwrap();
    assert!(modules.ends_with("overlay\nbr_netfilter\n"), "{modules}");
    let sysctls = String::from_utf8(tb.read("/etc/sysctl.d/90-kubejoin.conf").unwrap()).unwrap();
    assert!(sysctls.contains("net.ipv4.ip_forward = 1\n"), "{sysctls}");
    // The host's own forwarding is untouched.
    assert_eq!(
        std::fs::read("/proc/sys/net/ipv4/ip_forward").unwrap(),
        b"0\n"
    );

    // Joined now (the stand-in bootstrapped and registered): left alone.
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
}

/// An IPv6 node (its address chosen in an IPv6 network): IPv6 forwarding, with router
/// advertisements still accepted on the node's link (accept_ra 2, set before forwarding
/// turns them off), now and in the sysctl file for every boot; container links untouched.
#[test]
fn an_ipv6_node_forwards_and_keeps_router_advertisements() {
    if !testbed::available() {
        return;
    }
    let present = std::path::Path::new("/sys/module/overlay").exists()
        && std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
        && std::path::Path::new("/proc/sys/net/ipv6").exists();
    if !present && unsafe_here("overlay, br_netfilter or IPv6 is not in this kernel") {
        return;
    }
    let _swap = testbed::lock_swap().unwrap();
    let (tb, _api) = with_kernel_step("node_ip_cidrs = [\"fd00:77::/64\"]\n");
    let machines = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap();
    // The node's link (kernel RA on, as ifupdown leaves it) and a container's veth.
    let out = tb.sh("set -e
         ip link add ens9 type veth peer name veth9; ip link set ens9 up; ip link set veth9 up
         ip addr add fd00:77::2/64 dev ens9 nodad
         echo 1 > /proc/sys/net/ipv6/conf/ens9/accept_ra
         echo 1 > /proc/sys/net/ipv6/conf/veth9/accept_ra");
    assert!(out.status.success(), "{}", text(&out));
    let sysctl = |key: &str| {
        let path = format!("/proc/sys/net/ipv6/conf/{key}");
        text(&tb.exec(&["cat", &path])).trim().to_string()
    };
    assert_eq!(sysctl("all/forwarding"), "0");

    let plan = text(&tb.exec_ok(&["kubejoin", "run", "--dry-run"]));
    for line in [
        "host:          would sysctl net.ipv6.conf.ens9.accept_ra = 2 (now 1)",
        "host:          would sysctl net.ipv6.conf.all.forwarding = 1 (now 0)",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    assert!(!plan.contains("veth9"), "{plan}");

    let out = tb.exec(&["kubejoin", "run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("kubelet's node IP: fd00:77::2 (in node_ip_cidrs fd00:77::/64)"),
        "{}",
        text(&out)
    );
    assert_eq!(sysctl("all/forwarding"), "1");
    assert_eq!(sysctl("ens9/accept_ra"), "2");
    assert_eq!(sysctl("veth9/accept_ra"), "1");
    let file = String::from_utf8(tb.read("/etc/sysctl.d/90-kubejoin.conf").unwrap()).unwrap();
    assert!(
        file.ends_with("net.ipv6.conf.ens9.accept_ra = 2\nnet.ipv6.conf.all.forwarding = 1\n"),
        "{file}"
    );
    // The machine's own IPv6 forwarding is untouched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap(),
        machines
    );
    // Joined now: nothing to do, the same file.
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
}

/// An operator's containerd configuration, comments and all.
const CONTAINERD_CONFIG: &str = "# Managed by ops: containerd for workers\nversion = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    # our CNI lives here\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

#[test]
fn containerd_is_configured_in_place_and_restarted() {
    if !testbed::available() {
        return;
    }
    let _swap = testbed::lock_swap().unwrap();
    let tb = node(true, "")
        .with_file(
            "/etc/kubejoin/config.d/20-containerd.toml",
            "[host]\ncontainer_runtime = \"containerd\"\n",
            0o644,
        )
        .with_file("/etc/containerd/config.toml", CONTAINERD_CONFIG, 0o644)
        .boot()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());
    let entered = |unit: &str| {
        text(&tb.exec(&[
            "systemctl",
            "show",
            "--value",
            "-p",
            "ActiveEnterTimestampMonotonic",
            unit,
        ]))
    };
    let before = entered("containerd.service");

    // A dry run changes nothing, not even a file.
    let files_before = tb.changed_files_except_logs();
    let out = tb.exec_ok(&["kubejoin", "plan"]);
    let plan = text(&out);
    for line in [
        "host:          would edit /etc/containerd/config.toml (the CRI plugin on and runc's cgroup driver matching kubelet's), original kept as /etc/containerd/config.toml.kubejoin-orig",
        "+ [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]",
        "+ SystemdCgroup = true",
        "host:          would RestartUnit containerd.service replace",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    assert_eq!(tb.changed_files_except_logs(), files_before);

    tb.exec_ok(&["kubejoin", "run"]);
    // Every byte of the operator's file kept, comments included; the setting appended.
    let config = String::from_utf8(tb.read("/etc/containerd/config.toml").unwrap()).unwrap();
    assert_eq!(
        config,
        format!(
            "{CONTAINERD_CONFIG}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n"
        )
    );
    assert_eq!(
        tb.read("/etc/containerd/config.toml.kubejoin-orig")
            .unwrap(),
        CONTAINERD_CONFIG.as_bytes()
    );
    assert_eq!(tb.unit_state("containerd.service"), "active running");
    assert_ne!(
        entered("containerd.service"),
        before,
        "containerd was restarted"
    );
    assert_eq!(tb.unit_state("kubelet.service"), "active running");

    // Joined now (the stand-in bootstrapped and registered): left alone.
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
}
