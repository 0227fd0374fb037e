//! A pod network for the tests, made as a network plugin makes one (the cluster's side,
//! not kubejoin's): Debian's containernetworking-plugins (bridge, host-local, loopback,
//! portmap, firewall) with a conflist rendered from the Node's `spec.podCIDR`, written
//! atomically (a temporary file renamed into /etc/cni/net.d, which the runtime watches).
//! One worker so far: no routes to other workers' pod CIDRs (host-gw) yet. The `firewall`
//! plugin accepts each pod's traffic in the FORWARD chain, as network plugins do: a host
//! whose FORWARD policy is DROP (docker sets it) drops traffic between pods of one bridge
//! otherwise, once br_netfilter sends bridged traffic through iptables.

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
