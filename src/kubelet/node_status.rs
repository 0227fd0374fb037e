//! Is the Node Ready, and if not, why, in a sentence and a fix (pure): kubelet's Ready
//! condition carries its runtime's words (`container runtime network not ready:
//! NetworkReady=false reason:NetworkPluginNotReady message:... cni plugin not initialized`),
//! which read like a failure to a newcomer although every node of a cluster without a
//! network plugin says them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the Node's conditions say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// The Ready condition is True.
    pub ready: bool,
    /// `Ready`, or why not in a few words (`no network plugin yet`).
    pub summary: String,
    /// Why not, in a sentence: what kubelet said, translated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Expected for now, not a fault, and until when (no network plugin on a new cluster:
    /// `expected until one is installed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// kubelet's own message, as the Ready condition has it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Readiness {
    /// With a problem besides the Ready condition's (the node cannot be reached, its
    /// serving certificate is missing): a Ready node says it in its summary, a NotReady one
    /// in why; the fix is added.
    pub fn and(mut self, problem: &str, fix: &str) -> Readiness {
        if self.ready {
            self.summary = format!("{}, but {problem}", self.summary);
        } else {
            self.why = Some(match self.why.take() {
                Some(why) => format!("{why}; and {problem}"),
                None => problem.into(),
            });
        }
        self.fix = Some(match self.fix.take() {
            Some(f) => format!("{f}; and {fix}"),
            None => fix.into(),
        });
        self
    }

    /// As a clause in a sentence: `Ready`, `NotReady: no network plugin yet, expected until
    /// one is installed`.
    pub fn clause(&self) -> String {
        match (&self.expected, self.ready) {
            (Some(until), false) => format!("NotReady: {}, {until}", self.summary),
            _ => self.line(),
        }
    }

    /// The line, then why and the fix where it is not Ready (or under pressure), each
    /// line prefixed with `indent` after the first.
    pub fn lines(&self, indent: &str) -> String {
        let mut out = self.line();
        if let Some(why) = self.why.as_ref().filter(|_| !self.ready) {
            out.push_str(&format!("\n{indent}{why}"));
        }
        if let Some(fix) = &self.fix {
            out.push_str(&format!("\n{indent}fix: {fix}"));
        }
        out
    }

    /// One line: `Ready`, or `NotReady: <summary>` with `(expected ...)` where it is.
    pub fn line(&self) -> String {
        if self.ready {
            return self.summary.clone();
        }
        match &self.expected {
            Some(until) => format!("NotReady: {} ({until})", self.summary),
            None => format!("NotReady: {}", self.summary),
        }
    }
}

/// The directory CNI plugins put their network configuration in.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";

/// What a Node without an address is missing, and the fix.
const NO_ADDRESS: &str = "the Node has no address: the API server cannot reach kubelet, so \
                          logs, exec and port-forward fail (\"no preferred addresses found\")";
const NO_ADDRESS_FIX: &str = "kubelet found no address on this host but loopback: give the host \
                              an address on the network the API server reaches it on (or set \
                              [kubelet] node_ip_cidrs to it), then restart kubelet";

/// The Node reports an address the API server can dial kubelet at (an InternalIP or an
/// ExternalIP). kubelet reports none on a host whose only address is loopback.
pub fn has_address(node: &Value) -> bool {
    node["status"]["addresses"].as_array().is_some_and(|a| {
        a.iter().any(|a| {
            matches!(a["type"].as_str(), Some("InternalIP" | "ExternalIP"))
                && a["address"].as_str().is_some_and(|ip| !ip.is_empty())
        })
    })
}

/// Reads a Node object's conditions and addresses.
pub fn explain(node: &Value) -> Readiness {
    let conditions: Vec<&Value> = node["status"]["conditions"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let r = readiness(&conditions);
    // Only once kubelet has posted its status: a Node without a Ready condition has no
    // addresses yet either.
    let reported = conditions.iter().any(|c| c["type"] == "Ready");
    if reported && !has_address(node) {
        return r.and(NO_ADDRESS, NO_ADDRESS_FIX);
    }
    r
}

/// What the Node's conditions say.
fn readiness(conditions: &[&Value]) -> Readiness {
    let condition = |kind: &str| conditions.iter().find(|c| c["type"] == kind).copied();
    let pressure: Vec<&str> = [
        ("MemoryPressure", "memory"),
        ("DiskPressure", "disk"),
        ("PIDPressure", "process IDs"),
    ]
    .into_iter()
    .filter(|(kind, _)| condition(kind).is_some_and(|c| c["status"] == "True"))
    .map(|(_, what)| what)
    .collect();
    let Some(ready) = condition("Ready") else {
        return Readiness {
            ready: false,
            summary: "not reported yet".into(),
            why: Some("kubelet has not posted the Node's Ready condition yet".into()),
            fix: None,
            expected: Some("expected for some seconds after registering".into()),
            message: String::new(),
        };
    };
    let message = ready["message"].as_str().unwrap_or_default().to_string();
    if ready["status"] == "True" {
        let summary = if pressure.is_empty() {
            "Ready".to_string()
        } else {
            format!("Ready, under {} pressure", pressure.join(" and "))
        };
        return Readiness {
            ready: true,
            summary,
            why: None,
            fix: (!pressure.is_empty()).then(|| pressure_fix(&pressure)),
            expected: None,
            message,
        };
    }
    let lower = message.to_lowercase();
    let (summary, why, fix, expected) = if lower.contains("networkpluginnotready")
        || lower.contains("cni plugin not initialized")
        || lower.contains("cni config uninitialized")
        || lower.contains("networkready=false")
    {
        (
            "no network plugin yet".to_string(),
            format!(
                "the container runtime has no pod network: no CNI configuration in {CNI_CONF_DIR}"
            ),
            "install a network plugin on the cluster (Calico, Cilium, Flannel, ...): its \
             DaemonSet writes a configuration into /etc/cni/net.d on every node, and the node \
             turns Ready. Every node of a cluster without one is NotReady"
                .to_string(),
            Some("expected until one is installed".to_string()),
        )
    } else if lower.contains("container runtime is down")
        || lower.contains("runtimeready=false")
        || lower.contains("container runtime status check may not have completed yet")
    {
        (
            "the container runtime is not ready".to_string(),
            "kubelet cannot use the container runtime".to_string(),
            "check the runtime: `systemctl status containerd` (or docker and cri-docker), and \
             `journalctl -u kubelet -b` for what kubelet gets from it"
                .to_string(),
            None,
        )
    } else if lower.contains("failed to initialize csinode")
        || lower.contains("csinode is not yet initialized")
    {
        // kubelet annotates its CSINode once its Node exists, retrying at 30 ms x 8^n
        // (about 140 s in all) and exiting to be restarted after: a Node that registers
        // more than about 18 s after kubelet starts is NotReady until the next try.
        (
            "kubelet is still initializing its CSINode".to_string(),
            "kubelet's CSI volume manager tried to annotate the node's CSINode before the Node \
             registered; it tries again on its own schedule (about 140 s in all) and restarts \
             kubelet if it still cannot"
                .to_string(),
            "nothing, if it clears within about two minutes; if it lasts, see `journalctl -u \
             kubelet -b | grep CSINode`"
                .to_string(),
            Some("expected for up to about two minutes after registering".to_string()),
        )
    } else if lower.contains("pleg is not healthy") {
        (
            "the runtime answers too slowly (PLEG)".to_string(),
            "kubelet's pod lifecycle events lag behind: the runtime takes minutes to list \
             containers"
                .to_string(),
            "look at the runtime's load and log (`journalctl -u containerd -b`); restart it if \
             it hangs"
                .to_string(),
            None,
        )
    } else if ready["status"] == "Unknown" {
        (
            "kubelet stopped reporting".to_string(),
            "the API server has not heard from kubelet for a while".to_string(),
            "check that kubelet.service runs and reaches the API server: `systemctl status \
             kubelet`, `journalctl -u kubelet -b`"
                .to_string(),
            None,
        )
    } else if !pressure.is_empty() {
        (
            format!("under {} pressure", pressure.join(" and ")),
            format!("kubelet reports {} pressure", pressure.join(" and ")),
            pressure_fix(&pressure),
            None,
        )
    } else {
        (
            ready["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .unwrap_or("not ready")
                .to_string(),
            format!("kubelet says: {message}"),
            "see `kubectl describe node` and `journalctl -u kubelet -b`".to_string(),
            None,
        )
    };
    Readiness {
        ready: false,
        summary,
        why: Some(why),
        fix: Some(fix),
        expected,
        message,
    }
}

fn pressure_fix(pressure: &[&str]) -> String {
    let mut fixes = Vec::new();
    for p in pressure {
        fixes.push(match *p {
            "memory" => "free memory (or reserve some for the system: [kubelet] reservations)",
            "disk" => {
                "free disk space where kubelet and the runtime keep images and logs (/var/lib)"
            }
            _ => "fewer processes, or a higher kernel.pid_max",
        });
    }
    fixes.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(status: &str, reason: &str, message: &str) -> Value {
        json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": status, "reason": reason, "message": message},
        ], "addresses": [
            {"type": "InternalIP", "address": "10.0.2.15"},
            {"type": "Hostname", "address": "worker-1"},
        ]}})
    }

    #[test]
    fn a_node_without_an_address_is_named() {
        // What real kubelet 1.36 registers on a host with only loopback: no addresses
        // but its hostname, Ready all the same.
        let mut lonely = node("True", "KubeletReady", "kubelet is posting ready status");
        lonely["status"]["addresses"] = json!([{"type": "Hostname", "address": "worker-1"}]);
        let r = explain(&lonely);
        assert!(r.ready);
        assert_eq!(
            r.line(),
            "Ready, but the Node has no address: the API server cannot reach kubelet, so logs, exec and port-forward fail (\"no preferred addresses found\")"
        );
        assert!(r.fix.as_ref().unwrap().contains("node_ip_cidrs"));
        // NotReady as well: both are said.
        lonely["status"]["conditions"][1]["status"] = json!("False");
        lonely["status"]["conditions"][1]["message"] = json!("container runtime is down");
        let r = explain(&lonely);
        assert!(r.why.as_ref().unwrap().ends_with("; and the Node has no address: the API server cannot reach kubelet, so logs, exec and port-forward fail (\"no preferred addresses found\")"), "{:?}", r.why);
        assert!(r.fix.as_ref().unwrap().starts_with("check the runtime"));
        // Before kubelet posts its status, no addresses is no news.
        assert!(explain(&json!({"metadata": {"name": "n"}})).fix.is_none());
        assert!(has_address(&node("True", "", "")));
    }

    #[test]
    fn the_common_causes_in_a_sentence() {
        // What real kubelet 1.36 says on a cluster without a network plugin.
        let no_cni = explain(&node(
            "False",
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
        ));
        assert!(!no_cni.ready && no_cni.expected.is_some());
        assert_eq!(
            no_cni.line(),
            "NotReady: no network plugin yet (expected until one is installed)"
        );
        assert!(no_cni.fix.as_ref().unwrap().contains("/etc/cni/net.d"));
        // kubelet 1.20 with docker: dockershim's words.
        let old = explain(&node(
            "False",
            "KubeletNotReady",
            "runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:docker: network plugin is not ready: cni config uninitialized",
        ));
        assert_eq!(old.summary, "no network plugin yet");

        let runtime = explain(&node(
            "False",
            "KubeletNotReady",
            "container runtime is down",
        ));
        assert_eq!(
            runtime.line(),
            "NotReady: the container runtime is not ready"
        );
        assert!(runtime.expected.is_none());
        // What real kubelet 1.36 said when its Node registered ~20 s after it started.
        let csinode = explain(&node(
            "False",
            "KubeletNotReady",
            "failed to initialize CSINode: error updating CSINode annotation: timed out waiting for the condition; caused by: nodes \"worker-1\" not found",
        ));
        assert_eq!(
            csinode.line(),
            "NotReady: kubelet is still initializing its CSINode (expected for up to about two minutes after registering)"
        );
        let pleg = explain(&node(
            "False",
            "KubeletNotReady",
            "PLEG is not healthy: pleg was last seen active 3m0s ago",
        ));
        assert!(pleg.summary.contains("PLEG"));
        let gone = explain(&node(
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        ));
        assert_eq!(gone.summary, "kubelet stopped reporting");
        let other = explain(&node("False", "SomethingNew", "a new reason"));
        assert_eq!(other.summary, "SomethingNew");
        assert!(other.why.unwrap().contains("a new reason"));

        let ready = explain(&node(
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ));
        assert!(ready.ready);
        assert_eq!(ready.line(), "Ready");
        let mut pressed = node("True", "KubeletReady", "");
        pressed["status"]["conditions"][0]["status"] = json!("True");
        let pressed = explain(&pressed);
        assert_eq!(pressed.line(), "Ready, under memory pressure");
        assert!(pressed.fix.is_some());

        let fresh = explain(&json!({"metadata": {"name": "n"}}));
        assert_eq!(
            fresh.clause(),
            "NotReady: not reported yet, expected for some seconds after registering"
        );
        assert_eq!(
            no_cni.clause(),
            "NotReady: no network plugin yet, expected until one is installed"
        );
    }
}
