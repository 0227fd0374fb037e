//! A pod network for the tests, made as a network plugin makes one (the cluster's side,
//! not kubejoin's): Debian's containernetworking-plugins (bridge, host-local, loopback,
//! portmap, firewall) with a conflist rendered from the Node's `spec.podCIDR`, written atomically
//! (a temporary file renamed into /etc/cni/net.d, which the runtime watches), and a route
//! to each other worker's pod CIDR via its InternalIP (host-gw, as kindnetd and Kubernetes
//! the Hard Way do). The `firewall` plugin accepts each pod's traffic in the FORWARD chain,
//! as network plugins do: a host whose FORWARD policy is DROP (docker sets it) drops
//! traffic between pods of one bridge otherwise, once br_netfilter sends bridged traffic
//! through iptables.

#![allow(dead_code)] // not every test binary has pods

use super::testbed::Testbed;

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
      "ipMasq": true,
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

/// Writes the node's configuration, atomically.
pub fn install(tb: &Testbed, pod_cidr: &str) {
    let tmp = format!("{CONFLIST}.temp");
    tb.write(&tmp, conflist(pod_cidr), 0o644);
    tb.exec_ok(&["mv", "-f", &tmp, CONFLIST]);
}

/// Routes `peer_cidr` via the peer node's address (on the same L2 segment).
pub fn route(tb: &Testbed, peer_cidr: &str, peer_ip: &str) {
    tb.exec_ok(&["ip", "route", "replace", peer_cidr, "via", peer_ip]);
}
