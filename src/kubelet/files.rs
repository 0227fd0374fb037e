//! kubelet's files: where they are, and their contents rendered from the `[kubelet]`
//! settings and this node's [`Profile`] (pure functions).

use std::path::PathBuf;

use super::profile::{Cri, Profile};
use crate::config::KubeletSettings;
use crate::endpoint::Endpoint;
use crate::kubeconfig;
use crate::token::BootstrapToken;
use std::fmt::Write;

pub const KUBELET_UNIT: &str = "kubelet.service";
pub const KUBELET_UNIT_PATH: &str = "/etc/systemd/system/kubelet.service";
pub const BOOTSTRAP_KUBECONFIG: &str = "/var/lib/kubelet/bootstrap-kubeconfig";
pub const KUBELET_KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const CERT_DIR: &str = "/var/lib/kubelet/";
/// kubelet's link to its current client certificate and key, in [`CERT_DIR`]. Without a
/// usable `--kubeconfig`, kubelet uses it while it has not expired (whichever node it
/// names) and bootstraps only without it.
pub const CLIENT_CURRENT: &str = "/var/lib/kubelet/kubelet-client-current.pem";
/// kubelet's drop-in directory (`--config-dir`, kubelet >= 1.30; the path of Kubernetes'
/// documentation) and kubejoin's drop-in there, for the per-node fields.
pub const CONFIG_DIR: &str = "/etc/kubernetes/kubelet.conf.d";
pub const DROP_IN: &str = "/etc/kubernetes/kubelet.conf.d/50-kubejoin.conf";
/// Where kubeadm puts the cluster CA; kubelet authenticates the API server's client
/// certificates with it.
pub const CLUSTER_CA: &str = "/etc/kubernetes/pki/ca.crt";

/// kubelet's health endpoint, written into its configuration so that kubejoin knows
/// where to ask (kubelet's defaults).
pub const HEALTHZ_ADDRESS: &str = "127.0.0.1";
pub const HEALTHZ_PORT: u16 = 10248;
/// Where kubelet looks for static pods; kubelet logs its absence every second.
pub const STATIC_POD_PATH: &str = "/etc/kubernetes/manifests";

/// A file kubejoin owns, as it should be.
#[derive(Debug, Clone)]
pub struct DesiredFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// Never shown in plans or diffs (the bootstrap kubeconfig holds the token).
    pub secret: bool,
    /// What it is for, in the plan.
    pub purpose: &'static str,
    /// A change to it means kubelet must restart to pick it up.
    pub restarts_kubelet: bool,
    /// A change to it means systemd must reload its unit files.
    pub is_unit: bool,
}

/// kubelet's configuration, rendered: config.yaml and the drop-in of the per-node fields
/// (kubelet >= 1.30).
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    pub config_yaml: String,
    pub drop_in: Option<String>,
}

/// The files kubelet starts from, as they should be once discovery found the server and
/// its CA: kubejoin owns each of them. `bootstrap`: the server and token of the bootstrap
/// kubeconfig; `None` on a node that has joined, which needs none.
pub fn desired(
    settings: &KubeletSettings,
    profile: &Profile,
    bootstrap: Option<(&Endpoint, &BootstrapToken)>,
    ca_pem: &[u8],
    kubelet_config: ConfigFiles,
    node_ip: &[std::net::IpAddr],
) -> Vec<DesiredFile> {
    let drop_in = kubelet_config.drop_in.map(|text| DesiredFile {
        path: DROP_IN.into(),
        contents: text.into_bytes(),
        mode: 0o644,
        secret: false,
        purpose: "KubeletConfiguration drop-in: the per-node fields",
        restarts_kubelet: true,
        is_unit: false,
    });
    let bootstrap = bootstrap.map(|(server, token)| DesiredFile {
        path: BOOTSTRAP_KUBECONFIG.into(),
        contents: kubeconfig::render_bootstrap(server, ca_pem, token)
            .as_bytes()
            .to_vec(),
        mode: 0o600,
        secret: true,
        purpose: "bootstrap kubeconfig (holds the token; never shown)",
        restarts_kubelet: true,
        is_unit: false,
    });
    let mut files: Vec<DesiredFile> = bootstrap.into_iter().collect();
    files.extend([
        DesiredFile {
            path: CLUSTER_CA.into(),
            contents: ca_pem.to_vec(),
            mode: 0o644,
            secret: false,
            purpose: "cluster CA, for kubelet's client-certificate authentication",
            restarts_kubelet: true,
            is_unit: false,
        },
        DesiredFile {
            path: KUBELET_CONFIG.into(),
            contents: kubelet_config.config_yaml.into_bytes(),
            mode: 0o644,
            secret: false,
            purpose: "KubeletConfiguration",
            restarts_kubelet: true,
            is_unit: false,
        },
    ]);
    // Before the unit that names its directory.
    files.extend(drop_in);
    files.push(DesiredFile {
        path: KUBELET_UNIT_PATH.into(),
        contents: kubelet_unit(settings, profile, node_ip).into_bytes(),
        mode: 0o644,
        secret: false,
        purpose: "kubelet's systemd unit",
        restarts_kubelet: true,
        is_unit: true,
    });
    files
}

/// kubelet's command line: the seed's flags that are flags in every version, what this
/// version needs for its runtime, then `extra_args`. Everything the version accepts in
/// KubeletConfiguration goes there instead ([`kubelet_config`]): no deprecated flag.
pub fn kubelet_argv(s: &KubeletSettings, p: &Profile, node_ip: &[std::net::IpAddr]) -> Vec<String> {
    let mut argv = vec![
        s.binary.display().to_string(),
        format!("--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}"),
        format!("--cert-dir={CERT_DIR}"),
        format!("--kubeconfig={KUBELET_KUBECONFIG}"),
        format!("--config={KUBELET_CONFIG}"),
    ];
    if p.config_dir {
        argv.push(format!("--config-dir={CONFIG_DIR}"));
    }
    if p.remote_runtime_flag {
        argv.push("--container-runtime=remote".into());
    }
    if let (Cri::Remote(ep), false) = (&p.cri, p.endpoint_in_config) {
        argv.push(format!("--container-runtime-endpoint={ep}"));
    }
    // dockershim's sandbox image; a CRI runtime has its own ([host] sandbox_image is
    // written into containerd's configuration).
    if let (Cri::Dockershim, Some(image)) = (&p.cri, &s.sandbox_image) {
        argv.push(format!("--pod-infra-container-image={image}"));
    }
    // The seed's; a flag in every version (not a KubeletConfiguration field).
    argv.push("--runtime-cgroups=/systemd/system.slice".into());
    // A flag in every version (no KubeletConfiguration field); extra_args may set its own.
    let own_node_ip = s
        .extra_args
        .iter()
        .any(|a| a == "--node-ip" || a.starts_with("--node-ip="));
    if let Some(name) = &s.node_name {
        argv.push(format!("--hostname-override={name}"));
    }
    if !node_ip.is_empty() && !own_node_ip {
        let ips: Vec<String> = node_ip.iter().map(|ip| ip.to_string()).collect();
        argv.push(format!("--node-ip={}", ips.join(",")));
    }
    if !s.node_labels.is_empty() {
        let labels: Vec<String> = s
            .node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        argv.push(format!("--node-labels={}", labels.join(",")));
    }
    if !s.register_with_taints.is_empty() && !p.taints_in_config {
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
pub fn kubelet_unit(s: &KubeletSettings, p: &Profile, node_ip: &[std::net::IpAddr]) -> String {
    let mut u = String::from(
        "# Written by kubejoin; changes are overwritten by the next `kubejoin run`.\n",
    );
    u.push_str("[Unit]\nDescription=Kubernetes Kubelet (configured by kubejoin)\n");
    u.push_str("Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/\n");
    u.push_str("Wants=network-online.target\n");
    match &p.runtime_unit {
        Some(rt) => {
            // kubelet needs its container runtime up first, and stops with it.
            let _ = writeln!(u, "After=network-online.target {rt}\nRequires={rt}");
        }
        None => u.push_str("After=network-online.target\n"),
    }
    u.push_str("\n[Service]\nExecStart=");
    let words: Vec<String> = kubelet_argv(s, p, node_ip)
        .iter()
        .map(|w| exec_word(w))
        .collect();
    u.push_str(&words.join(" \\\n    "));
    u.push_str("\nRestart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n");
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Runtime;
    use crate::kubelet::profile::{Node, profile};
    use crate::kubelet::version::Version;

    fn rendered(version: &str, runtime: Runtime, s: &KubeletSettings) -> (Vec<String>, String) {
        let node = Node {
            version: Version::parse(version).unwrap(),
            runtime,
            cgroup_v2: false,
        };
        let p = profile(s, &node).unwrap();
        let config = crate::kubelet::config::effective(s, &p, None, Default::default());
        (kubelet_argv(s, &p, &[]), config.render())
    }

    fn labelled() -> KubeletSettings {
        KubeletSettings {
            node_labels: vec![
                ("role".into(), "worker".into()),
                ("zone".into(), "a".into()),
            ],
            register_with_taints: vec!["dedicated=infra:NoSchedule".into(), "gpu:NoExecute".into()],
            extra_args: vec!["--v=2".into()],
            ..Default::default()
        }
    }

    #[test]
    fn the_sandbox_image_is_a_flag_for_dockershim_only() {
        let s = KubeletSettings {
            sandbox_image: Some("mirror.corp/pause:3.2".into()),
            ..Default::default()
        };
        let flag = "--pod-infra-container-image=mirror.corp/pause:3.2".to_string();
        let (docker, _) = rendered("v1.20.2", Runtime::Docker, &s);
        assert!(docker.contains(&flag), "{docker:?}");
        for (version, runtime) in [
            ("v1.20.2", Runtime::Containerd),
            ("v1.30.0", Runtime::Containerd),
            ("v1.36.2", Runtime::Containerd),
        ] {
            let (argv, _) = rendered(version, runtime, &s);
            assert!(
                !argv.iter().any(|a| a.starts_with("--pod-infra")),
                "{version}: {argv:?}"
            );
        }
        // cri-dockerd has its own: refused rather than ignored.
        let node = crate::kubelet::profile::Node {
            version: Version::parse("v1.30.0").unwrap(),
            runtime: Runtime::Docker,
            cgroup_v2: true,
        };
        let e = profile(&s, &node).unwrap_err();
        assert_eq!(e.key, "sandbox_image");
        assert!(
            e.fix
                .contains("--pod-infra-container-image=mirror.corp/pause:3.2"),
            "{}",
            e.fix
        );
    }

    #[test]
    fn kubelet_1_20_with_containerd_and_with_docker() {
        let (argv, config) = rendered("v1.20.2", Runtime::Containerd, &labelled());
        assert_eq!(
            argv,
            [
                "/usr/local/bin/kubelet",
                "--bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig",
                "--cert-dir=/var/lib/kubelet/",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--config=/var/lib/kubelet/config.yaml",
                "--container-runtime=remote",
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
                "--runtime-cgroups=/systemd/system.slice",
                "--node-labels=role=worker,zone=a",
                "--register-with-taints=dedicated=infra:NoSchedule,gpu:NoExecute",
                "--v=2",
            ]
        );
        assert!(!config.contains("containerRuntimeEndpoint"), "{config}");
        assert!(!config.contains("failCgroupV1"), "{config}");
        let (argv, _) = rendered("v1.20.2", Runtime::Docker, &KubeletSettings::default());
        assert!(
            !argv.iter().any(|a| a.starts_with("--container-runtime")),
            "dockershim, on its own socket: {argv:?}"
        );
    }

    #[test]
    fn kubelet_1_36_takes_its_settings_in_the_configuration() {
        let (argv, config) = rendered("v1.36.2", Runtime::Containerd, &labelled());
        assert_eq!(
            argv,
            [
                "/usr/local/bin/kubelet",
                "--bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig",
                "--cert-dir=/var/lib/kubelet/",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--config=/var/lib/kubelet/config.yaml",
                "--config-dir=/etc/kubernetes/kubelet.conf.d",
                "--runtime-cgroups=/systemd/system.slice",
                "--node-labels=role=worker,zone=a",
                "--v=2",
            ]
        );
        let v: serde_json::Value = serde_saphyr::from_str(&config).unwrap();
        assert_eq!(
            v["containerRuntimeEndpoint"],
            "unix:///run/containerd/containerd.sock"
        );
        assert_eq!(v["failCgroupV1"], false);
        assert_eq!(
            v["registerWithTaints"],
            serde_json::json!([
                {"effect": "NoSchedule", "key": "dedicated", "value": "infra"},
                {"effect": "NoExecute", "key": "gpu"}
            ])
        );
    }

    /// The kubelet flags of each version we cannot run here, from that version's kubelet
    /// reference (kubernetes.io/docs/reference/command-line-tools-reference/kubelet/ and
    /// the CHANGELOG): flags it does not know (fatal) and flags it marks deprecated
    /// ("should be set via the config file"), limited to those kubejoin could write.
    const REFERENCE: &[(&str, &[&str], &[&str])] = &[
        (
            "v1.20.2",
            &[],
            &[
                "--rotate-certificates",
                "--kubelet-cgroups",
                "--cgroup-driver",
            ],
        ),
        (
            "v1.24.17",
            &["--network-plugin", "--docker-endpoint"],
            FROM_1_23,
        ),
        ("v1.27.16", GONE_IN_1_27, FROM_1_27),
        ("v1.31.14", GONE_IN_1_27, FROM_1_31),
        ("v1.34.3", GONE_IN_1_27, FROM_1_31),
        ("v1.36.2", GONE_IN_1_27, FROM_1_31),
    ];
    const GONE_IN_1_27: &[&str] = &["--container-runtime", "--network-plugin"];
    const FROM_1_23: &[&str] = &[
        "--rotate-certificates",
        "--kubelet-cgroups",
        "--register-with-taints",
        "--cgroup-driver",
    ];
    const FROM_1_27: &[&str] = &[
        "--rotate-certificates",
        "--kubelet-cgroups",
        "--register-with-taints",
        "--container-runtime-endpoint",
    ];
    const FROM_1_31: &[&str] = &[
        "--rotate-certificates",
        "--kubelet-cgroups",
        "--register-with-taints",
        "--container-runtime-endpoint",
        "--fail-cgroupv1",
    ];

    #[test]
    fn no_unknown_or_deprecated_flag_in_any_version() {
        for (version, unknown, deprecated) in REFERENCE {
            for runtime in [Runtime::Containerd, Runtime::Docker] {
                let (argv, config) = rendered(version, runtime, &labelled());
                for a in &argv[1..] {
                    let name = a.split('=').next().unwrap();
                    assert!(
                        !unknown.contains(&name),
                        "{version} {runtime:?}: {name} is unknown to it"
                    );
                    assert!(
                        !deprecated.contains(&name),
                        "{version} {runtime:?}: {name} is deprecated there"
                    );
                }
                let v: serde_json::Value = serde_saphyr::from_str(&config).unwrap();
                let minor = Version::parse(version).unwrap().minor;
                assert_eq!(v["rotateCertificates"], true);
                assert_eq!(v["kubeletCgroups"], "/systemd/system.slice");
                assert_eq!(v.get("failCgroupV1").is_some(), minor >= 31, "{version}");
                assert_eq!(
                    v.get("containerRuntimeEndpoint").is_some(),
                    minor >= 27,
                    "{version}"
                );
                assert_eq!(
                    v.get("registerWithTaints").is_some(),
                    minor >= 23,
                    "{version}"
                );
                let endpoint = argv
                    .iter()
                    .find_map(|a| a.strip_prefix("--container-runtime-endpoint="))
                    .or(v["containerRuntimeEndpoint"].as_str());
                let want = match (runtime, minor) {
                    (Runtime::Docker, m) if m < 24 => None,
                    (Runtime::Docker, _) => Some("unix:///run/cri-dockerd.sock"),
                    _ => Some("unix:///run/containerd/containerd.sock"),
                };
                assert_eq!(endpoint, want, "{version} {runtime:?}");
            }
        }
    }

    #[test]
    fn unit_orders_after_the_runtime_and_restarts() {
        let s = KubeletSettings::default();
        let node = Node {
            version: Version::parse("v1.20.2").unwrap(),
            runtime: Runtime::Containerd,
            cgroup_v2: true,
        };
        let u = kubelet_unit(&s, &profile(&s, &node).unwrap(), &[]);
        assert!(
            u.contains(
                "After=network-online.target containerd.service\nRequires=containerd.service\n"
            ),
            "{u}"
        );
        assert!(u.contains("ExecStart=/usr/local/bin/kubelet \\\n    --bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig \\\n"), "{u}");
        assert!(u.contains("Restart=on-failure\nRestartSec=5\n"));
        assert!(u.ends_with("[Install]\nWantedBy=multi-user.target\n"));
        let none = KubeletSettings {
            runtime_unit: Some(None),
            ..Default::default()
        };
        let u = kubelet_unit(&none, &profile(&none, &node).unwrap(), &[]);
        assert!(!u.contains("Requires="), "{u}");
    }

    #[test]
    fn the_node_ip_is_a_flag_unless_extra_args_set_it() {
        let s = KubeletSettings::default();
        let node = Node {
            version: Version::parse("v1.36.2").unwrap(),
            runtime: Runtime::Containerd,
            cgroup_v2: true,
        };
        let p = profile(&s, &node).unwrap();
        let ips = ["10.0.2.15".parse().unwrap(), "fd00::15".parse().unwrap()];
        let argv = kubelet_argv(&s, &p, &ips);
        assert!(
            argv.contains(&"--node-ip=10.0.2.15,fd00::15".to_string()),
            "{argv:?}"
        );
        let own = KubeletSettings {
            extra_args: vec!["--node-ip=192.168.1.1".into()],
            ..Default::default()
        };
        let argv = kubelet_argv(&own, &p, &ips);
        assert_eq!(
            argv.iter().filter(|a| a.starts_with("--node-ip")).count(),
            1,
            "{argv:?}"
        );
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
        let mut s = KubeletSettings::default();
        s.config.insert(
            "clusterDNS".into(),
            crate::config::kubelet::UserField {
                value: serde_json::json!(["10.96.0.10"]),
                key: "kubelet.cluster_dns".into(),
                origin: crate::config::Origin::Flag("test"),
            },
        );
        let (_, c) = rendered("v1.20.2", Runtime::Containerd, &s);
        let v: serde_json::Value = serde_saphyr::from_str(&c).unwrap();
        assert_eq!(v["kind"], "KubeletConfiguration");
        assert_eq!(v["cgroupDriver"], "systemd");
        assert_eq!(v["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(v["authentication"]["x509"]["clientCAFile"], CLUSTER_CA);
        assert_eq!(v["authorization"]["mode"], "Webhook");
        assert_eq!(v["clusterDNS"][0], "10.96.0.10");
        assert_eq!(v["healthzBindAddress"], HEALTHZ_ADDRESS);
        assert_eq!(v["healthzPort"], HEALTHZ_PORT);
        assert_eq!(v["staticPodPath"], STATIC_POD_PATH);
    }
}
