//! Rendering kubelet's unit and configuration: pure functions of the `[kubelet]` settings.

use std::fmt::Write;
use std::path::PathBuf;

pub const KUBELET_UNIT: &str = "kubelet.service";
pub const KUBELET_UNIT_PATH: &str = "/etc/systemd/system/kubelet.service";
pub const BOOTSTRAP_KUBECONFIG: &str = "/var/lib/kubelet/bootstrap-kubeconfig";
pub const KUBELET_KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const CERT_DIR: &str = "/var/lib/kubelet/";
/// Where kubeadm puts the cluster CA; kubelet authenticates the API server's client
/// certificates with it.
pub const CLUSTER_CA: &str = "/etc/kubernetes/pki/ca.crt";

/// The validated `[kubelet]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletSettings {
    pub binary: PathBuf,
    pub extra_args: Vec<String>,
    /// `key=value` labels, sorted by key.
    pub node_labels: Vec<(String, String)>,
    /// `key=value:Effect` or `key:Effect`.
    pub register_with_taints: Vec<String>,
    pub container_runtime_endpoint: String,
    /// `After=` and `Requires=` this unit; none when empty.
    pub runtime_unit: Option<String>,
    pub cgroup_driver: String,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
}

impl Default for KubeletSettings {
    fn default() -> Self {
        KubeletSettings {
            binary: PathBuf::from("/usr/local/bin/kubelet"),
            extra_args: Vec::new(),
            node_labels: Vec::new(),
            register_with_taints: Vec::new(),
            container_runtime_endpoint: "unix:///run/containerd/containerd.sock".into(),
            runtime_unit: Some("containerd.service".into()),
            cgroup_driver: "systemd".into(),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// kubelet's command line: the seed's flags, then ours, then `extra_args`.
pub fn kubelet_argv(s: &KubeletSettings) -> Vec<String> {
    let mut argv = vec![
        s.binary.display().to_string(),
        format!("--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}"),
        format!("--cert-dir={CERT_DIR}"),
        format!("--kubeconfig={KUBELET_KUBECONFIG}"),
        "--rotate-certificates=true".into(),
        "--runtime-cgroups=/systemd/system.slice".into(),
        "--kubelet-cgroups=/systemd/system.slice".into(),
        format!("--config={KUBELET_CONFIG}"),
        format!(
            "--container-runtime-endpoint={}",
            s.container_runtime_endpoint
        ),
    ];
    if !s.node_labels.is_empty() {
        let labels: Vec<String> = s
            .node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        argv.push(format!("--node-labels={}", labels.join(",")));
    }
    if !s.register_with_taints.is_empty() {
        argv.push(format!(
            "--register-with-taints={}",
            s.register_with_taints.join(",")
        ));
    }
    argv.extend(s.extra_args.iter().cloned());
    argv
}

/// One word of an `ExecStart=` line: quoted when needed, with systemd's specifiers (`%`)
/// and variable expansion (`$`) escaped, so that kubelet gets exactly this string.
fn exec_word(w: &str) -> String {
    let escaped = w.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%$".contains(c));
    if plain {
        escaped
    } else {
        let mut out = String::from("\"");
        for c in escaped.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

/// `/etc/systemd/system/kubelet.service`. The token never appears here.
pub fn kubelet_unit(s: &KubeletSettings) -> String {
    let mut u = String::from(
        "# Written by kubejoin; changes are overwritten by the next `kubejoin run`.\n",
    );
    u.push_str("[Unit]\nDescription=Kubernetes Kubelet (configured by kubejoin)\n");
    u.push_str("Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/\n");
    u.push_str("Wants=network-online.target\n");
    match &s.runtime_unit {
        Some(rt) => {
            // kubelet needs its container runtime up first, and stops with it.
            let _ = writeln!(u, "After=network-online.target {rt}\nRequires={rt}");
        }
        None => u.push_str("After=network-online.target\n"),
    }
    u.push_str("\n[Service]\nExecStart=");
    let words: Vec<String> = kubelet_argv(s).iter().map(|w| exec_word(w)).collect();
    u.push_str(&words.join(" \\\n    "));
    u.push_str("\nRestart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n");
    u
}

/// `/var/lib/kubelet/config.yaml`: a KubeletConfiguration as kubeadm writes it for a
/// worker (webhook authentication and authorization, no anonymous access, the cluster
/// CA for client certificates, certificate rotation).
pub fn kubelet_config(s: &KubeletSettings) -> String {
    let mut c = String::from(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    cacheTTL: 0s\n    enabled: true\n  x509:\n",
    );
    let _ = writeln!(c, "    clientCAFile: {CLUSTER_CA}");
    c.push_str("authorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 0s\n    cacheUnauthorizedTTL: 0s\n");
    let _ = writeln!(c, "cgroupDriver: {}", s.cgroup_driver);
    if !s.cluster_dns.is_empty() {
        c.push_str("clusterDNS:\n");
        for ip in &s.cluster_dns {
            let _ = writeln!(c, "- {ip}");
        }
    }
    let _ = writeln!(c, "clusterDomain: {}", s.cluster_domain);
    c.push_str("rotateCertificates: true\nstaticPodPath: /etc/kubernetes/manifests\n");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_flags_first_then_ours() {
        let s = KubeletSettings {
            node_labels: vec![
                ("role".into(), "worker".into()),
                ("zone".into(), "a".into()),
            ],
            register_with_taints: vec!["dedicated=infra:NoSchedule".into()],
            extra_args: vec!["--v=2".into()],
            ..Default::default()
        };
        assert_eq!(
            kubelet_argv(&s),
            [
                "/usr/local/bin/kubelet",
                "--bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig",
                "--cert-dir=/var/lib/kubelet/",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--rotate-certificates=true",
                "--runtime-cgroups=/systemd/system.slice",
                "--kubelet-cgroups=/systemd/system.slice",
                "--config=/var/lib/kubelet/config.yaml",
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
                "--node-labels=role=worker,zone=a",
                "--register-with-taints=dedicated=infra:NoSchedule",
                "--v=2",
            ]
        );
    }

    #[test]
    fn unit_orders_after_the_runtime_and_restarts() {
        let u = kubelet_unit(&KubeletSettings::default());
        assert!(
            u.contains(
                "After=network-online.target containerd.service\nRequires=containerd.service\n"
            ),
            "{u}"
        );
        assert!(u.contains("ExecStart=/usr/local/bin/kubelet \\\n    --bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig \\\n"), "{u}");
        assert!(u.contains("Restart=on-failure\nRestartSec=5\n"));
        assert!(u.ends_with("[Install]\nWantedBy=multi-user.target\n"));
        let none = kubelet_unit(&KubeletSettings {
            runtime_unit: None,
            ..Default::default()
        });
        assert!(!none.contains("Requires="), "{none}");
    }

    #[test]
    fn exec_words_are_escaped() {
        assert_eq!(exec_word("--v=2"), "--v=2");
        assert_eq!(exec_word("a b"), "\"a b\"");
        assert_eq!(exec_word("100%"), "100%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(exec_word(""), "\"\"");
    }

    #[test]
    fn kubelet_configuration() {
        let c = kubelet_config(&KubeletSettings {
            cluster_dns: vec!["10.96.0.10".into()],
            ..Default::default()
        });
        let v: serde_json::Value = serde_saphyr::from_str(&c).unwrap();
        assert_eq!(v["kind"], "KubeletConfiguration");
        assert_eq!(v["cgroupDriver"], "systemd");
        assert_eq!(v["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(v["authentication"]["x509"]["clientCAFile"], CLUSTER_CA);
        assert_eq!(v["authorization"]["mode"], "Webhook");
        assert_eq!(v["clusterDNS"][0], "10.96.0.10");
        assert_eq!(v["rotateCertificates"], true);
    }
}
