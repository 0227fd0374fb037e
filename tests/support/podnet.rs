//! A pod network for the tests, made as a network plugin makes one (the cluster's side,
//! not kubejoin's): Debian's containernetworking-plugins (bridge, host-local, loopback,
//! portmap, firewall) with a conflist rendered from the Node's `spec.podCIDR`, written
//! atomically (a temporary file renamed into /etc/cni/net.d, which the runtime watches),
//! and host-gw routes: each worker reaches another's pod CIDR through that worker's
//! InternalIP, on one L2 segment ([`Segment`]), as flannel's host-gw backend does. Pods'
//! traffic is not masqueraded: a pod sees the other pod's own address.
//!
//! The `firewall` plugin and a rule for the cluster CIDR accept pods' traffic in the
//! FORWARD chain, as network plugins do: a host whose FORWARD policy is DROP (docker sets
//! it) drops traffic between pods otherwise, once br_netfilter sends bridged traffic
//! through iptables.

#![allow(dead_code)] // not every test binary has pods

use std::path::Path;
use std::time::Duration;

use super::cluster::{CLUSTER_CIDR, Place, in_netns_of};
use super::testbed::{Testbed, wait_for};
use super::vm::Netns;

pub const CONFLIST: &str = "/etc/cni/net.d/10-kubejoin-test.conflist";

/// The conflist for a node whose pods get addresses from `pod_cidr`. host-local keeps its
/// leases on /run (an unclean reboot leaks none).
pub fn conflist(pod_cidr: &str) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "kubejoin-test",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "ranges": [[{{"subnet": "{pod_cidr}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}]
      }}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}},
    {{"type": "firewall"}}
  ]
}}
"#
    )
}

/// The shell script that configures a node (a testbed or a VM): it accepts the cluster
/// CIDR's traffic in the FORWARD chain (pods of other nodes, whose connections the
/// `firewall` plugin, which knows only this node's pods, would leave to the policy), and
/// writes the conflist atomically.
pub fn install_script(pod_cidr: &str) -> String {
    format!(
        "set -e; for d in -s -d; do
           iptables -C FORWARD $d {CLUSTER_CIDR} -j ACCEPT 2>/dev/null || iptables -I FORWARD $d {CLUSTER_CIDR} -j ACCEPT
         done
         mkdir -p /etc/cni/net.d; cat > {CONFLIST}.temp <<'CONF'\n{}CONF\nmv -f {CONFLIST}.temp {CONFLIST}",
        conflist(pod_cidr)
    )
}

/// Configures the testbed `tb` as a node of the pod network ([`install_script`]).
pub fn install(tb: &Testbed, pod_cidr: &str) {
    let out = tb.sh(&install_script(pod_cidr));
    assert!(out.status.success(), "{}", super::text(&out));
}

/// One L2 segment, 10.0.2.0/24: a bridge in a network namespace of the test's own, which
/// has 10.0.2.2 on it (where the control plane listens, as qemu's user network shows the
/// host to a VM) and a veth into each worker attached to it. Nothing leaves the namespaces.
pub struct Segment {
    pub ns: Netns,
    workers: usize,
    dhcp: Option<std::process::Child>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(mut d) = self.dhcp.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// The segment's address in its own namespace: the control plane's, the workers' gateway.
pub const GATEWAY: &str = "10.0.2.2";

impl Segment {
    pub fn new(dir: &Path) -> Segment {
        let ns = Netns::new(dir);
        let out = in_netns_of(ns.pid(), "sh")
            .args([
                "-c",
                &format!(
                    "set -e; ip link add kjlan type bridge forward_delay 0 stp_state 0; ip link set kjlan up
                     ip addr add {GATEWAY}/24 dev kjlan"
                ),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", super::text(&out));
        Segment {
            ns,
            workers: 0,
            dhcp: None,
        }
    }

    /// Plugs `tb` in with address `ip` on its interface `kjnode`, its default route through
    /// [`GATEWAY`].
    pub fn attach(&mut self, tb: &Testbed, ip: &str) {
        self.workers += 1;
        let port = format!("kjport{}", self.workers);
        let out = in_netns_of(tb.pid(), "ip")
            .args([
                "link", "add", "kjnode", "type", "veth", "peer", "name", &port,
            ])
            .args(["netns", &self.ns.pid().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", super::text(&out));
        self.sh(&format!("ip link set {port} master kjlan up"));
        let out = tb.sh(&format!(
            "set -e; ip link set kjnode up; ip addr add {ip}/24 dev kjnode
             ip route add default via {GATEWAY} dev kjnode"
        ));
        assert!(out.status.success(), "{}", super::text(&out));
        // Until the bridge forwards on the port (at once: no STP, no forward delay).
        let forwarding = wait_for(Duration::from_secs(30), || {
            let out = in_netns_of(self.ns.pid(), "bridge")
                .args(["link", "show", "dev", &port])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("state forwarding")
                .then_some(())
        });
        assert!(forwarding.is_some(), "{port} does not forward");
    }

    /// A tap device `name` on the segment, for a VM's network card (`Vm::on_tap`; qemu
    /// runs in the segment's namespace).
    pub fn tap(&self, name: &str) {
        self.sh(&format!(
            "ip tuntap add dev {name} mode tap && ip link set {name} master kjlan up"
        ));
    }

    /// A DHCP server on the segment, as qemu's user-mode network has one: each MAC address
    /// of `leases` gets its address, the gateway [`GATEWAY`]; busybox's udhcpd, its files in
    /// `dir`. It runs as long as the segment.
    pub fn serve_dhcp(&mut self, dir: &Path, leases: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("udhcpd.conf");
        let mut text = format!(
            "start 10.0.2.100\nend 10.0.2.120\ninterface kjlan\nlease_file {}\npidfile {}\n\
             option subnet 255.255.255.0\noption router {GATEWAY}\noption lease 86400\n",
            dir.join("udhcpd.leases").display(),
            dir.join("udhcpd.pid").display()
        );
        for (mac, ip) in leases {
            text.push_str(&format!("static_lease {mac} {ip}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        std::fs::write(dir.join("udhcpd.leases"), "").unwrap();
        let log = std::fs::File::create(dir.join("udhcpd.log")).unwrap();
        let mut c = in_netns_of(self.ns.pid(), "busybox");
        c.args(["udhcpd", "-f", "-S"])
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        super::dies_with_parent(&mut c);
        self.dhcp = Some(c.spawn().expect("busybox udhcpd"));
    }

    /// Routes `cidr` through `via` in the segment's own namespace (where the API server
    /// dials pods, e.g. for its pod proxy, and the DNS server answers them).
    pub fn route(&self, cidr: &str, via: &str) {
        self.sh(&format!("ip route replace {cidr} via {via}"));
    }

    fn sh(&self, script: &str) {
        let out = in_netns_of(self.ns.pid(), "sh")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", super::text(&out));
    }
}

/// A host-gw route on the worker `tb`: `cidr` (another worker's pods) through `via` (that
/// worker's InternalIP).
pub fn route(tb: &Testbed, cidr: &str, via: &str) {
    let out = tb.sh(&format!("ip route replace {cidr} via {via} dev kjnode"));
    assert!(out.status.success(), "{}", super::text(&out));
}
