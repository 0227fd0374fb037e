//! What this kubelet needs on this node: its container runtime's endpoint and the flags
//! and KubeletConfiguration fields its version takes for it. Pure: the unit and the
//! configuration are rendered from a [`Profile`] (`kubelet/files.rs`), and the tests
//! check every version without a kubelet.
//!
//! The facts, from each version's kubelet reference and changelog:
//! - dockershim (kubelet's built-in docker support, its own socket) until 1.23; removed
//!   in 1.24, when docker needs cri-dockerd;
//! - `--container-runtime=remote` selects a CRI runtime until 1.26; the flag is gone
//!   (fatal) from 1.27;
//! - `containerRuntimeEndpoint` is a KubeletConfiguration field from 1.27 (the flag is
//!   deprecated there);
//! - `registerWithTaints` is a KubeletConfiguration field from 1.23 (kubernetes#105437;
//!   the flag is deprecated since);
//! - `failCgroupV1` exists from 1.31 and defaults to true from 1.35: such a kubelet
//!   refuses a cgroup v1 host unless it is false;
//! - `--config-dir` (a directory of KubeletConfiguration drop-ins, merged over
//!   `--config` as JSON merge patches) is a flag of its own from 1.30 (KEP-3983; 1.28
//!   and 1.29 also wanted an environment variable);
//! - graceful node shutdown (`shutdownGracePeriod`) is alpha behind a feature gate in 1.20,
//!   beta and on by default from 1.21;
//! - `rotateCertificates` and `kubeletCgroups` are KubeletConfiguration fields in every
//!   supported version (their flags are deprecated).

use super::version::Version;
use crate::config::KubeletSettings;
use crate::host::Runtime;

/// The oldest kubelet kubejoin renders for.
pub const OLDEST_MINOR: u32 = 20;
pub const CONTAINERD_SOCKET: &str = crate::host::containerd::SOCKET;
pub const CRI_DOCKERD_SOCKET: &str = "unix:///run/cri-dockerd.sock";
pub const CRI_DOCKERD_UNIT: &str = "cri-docker.service";

/// What kubejoin knows of the node when it renders kubelet's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub version: Version,
    pub runtime: Runtime,
    /// The host's cgroups are the unified hierarchy (v2).
    pub cgroup_v2: bool,
}

/// How kubelet reaches its container runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cri {
    /// kubelet < 1.24 with docker: its built-in dockershim, on kubelet's own socket.
    Dockershim,
    /// A CRI endpoint (`unix:///...`).
    Remote(String),
}

/// The version- and runtime-specific part of kubelet's unit and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub version: Version,
    pub cri: Cri,
    /// The endpoint is cri-dockerd's (docker with kubelet >= 1.24).
    pub cri_dockerd: bool,
    /// `--container-runtime=remote` (1.20-1.26 with a CRI endpoint).
    pub remote_runtime_flag: bool,
    /// The endpoint goes into KubeletConfiguration (>= 1.27), else a flag.
    pub endpoint_in_config: bool,
    /// `registerWithTaints` in KubeletConfiguration (>= 1.23), else a flag.
    pub taints_in_config: bool,
    /// `failCgroupV1: false` is written (cgroup v1 host, kubelet >= 1.31).
    pub allow_cgroup_v1: bool,
    /// The per-node fields go into a drop-in in `--config-dir` (>= 1.30), else into
    /// config.yaml.
    pub config_dir: bool,
    /// `After=` and `Requires=` of kubelet.service.
    pub runtime_unit: Option<String>,
}

/// A `[kubelet]` setting that cannot work with this kubelet or runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Conflict {
    /// The configuration key at fault.
    pub key: &'static str,
    pub message: String,
    pub fix: String,
}

/// The profile for this node, with the explicit `[kubelet]` keys winning.
pub fn profile(s: &KubeletSettings, node: &Node) -> Result<Profile, Conflict> {
    let v = &node.version;
    if !v.at_least(OLDEST_MINOR) {
        return Err(Conflict {
            key: "binary",
            message: format!(
                "kubelet {v} at {} is older than the oldest kubelet kubejoin supports (v1.{OLDEST_MINOR})",
                s.binary.display()
            ),
            fix: format!("install kubelet v1.{OLDEST_MINOR} or newer"),
        });
    }
    if !v.at_least(21)
        && let Some((name, f)) = s.config.iter().find(|(name, _)| {
            crate::config::kubelet_fields::field(name).is_some_and(|(_, in_1_20)| !in_1_20)
        })
    {
        return Err(Conflict {
            key: "config",
            message: format!(
                "{} (in {}) is not a field of kubelet {v}'s configuration: it came in a later version",
                f.key, f.origin
            ),
            fix: format!("remove {name} from [kubelet.config], or install a newer kubelet"),
        });
    }
    let gate_on = s
        .config
        .get("featureGates")
        .is_some_and(|g| g.value["GracefulNodeShutdown"] == true);
    if !v.at_least(21)
        && !gate_on
        && let Some(f) = s.config.get("shutdownGracePeriod")
    {
        return Err(Conflict {
            key: "shutdown_grace_period",
            message: format!(
                "{} (in {}) would be ignored: graceful node shutdown is an alpha feature of kubelet {v}, off by default",
                f.key, f.origin
            ),
            fix: "install kubelet 1.21 or newer (where it is on by default), or set [kubelet.config] featureGates = \
                  { GracefulNodeShutdown = true }"
                .into(),
        });
    }
    let dockershim = node.runtime == Runtime::Docker && !v.at_least(24);
    let cri = match (&s.container_runtime_endpoint, node.runtime) {
        (Some(ep), _) if dockershim => {
            return Err(Conflict {
                key: "container_runtime_endpoint",
                message: format!(
                    "container_runtime = \"docker\" with kubelet {v} uses kubelet's built-in dockershim, \
                     not the CRI endpoint {ep}"
                ),
                fix: "remove [kubelet] container_runtime_endpoint, or set [host] container_runtime = \"containerd\" \
                      to use containerd's CRI"
                    .into(),
            });
        }
        (Some(ep), _) => Cri::Remote(ep.clone()),
        (None, Runtime::Docker) if dockershim => Cri::Dockershim,
        (None, Runtime::Docker) => Cri::Remote(CRI_DOCKERD_SOCKET.into()),
        (None, Runtime::Containerd | Runtime::None | Runtime::Detect) => {
            Cri::Remote(CONTAINERD_SOCKET.into())
        }
    };
    if let Some(flag) = s.extra_args.iter().find(|a| {
        v.at_least(27)
            && (a.as_str() == "--container-runtime" || a.starts_with("--container-runtime="))
    }) {
        return Err(Conflict {
            key: "extra_args",
            message: format!(
                "{flag} was removed in kubelet 1.27; kubelet {v} refuses to start with it"
            ),
            fix: "remove it from [kubelet] extra_args (kubelet >= 1.27 always uses a CRI endpoint)"
                .into(),
        });
    }
    let cri_dockerd = cri == Cri::Remote(CRI_DOCKERD_SOCKET.into());
    if cri_dockerd && let Some(image) = &s.sandbox_image {
        return Err(Conflict {
            key: "sandbox_image",
            message: format!(
                "[host] sandbox_image = {image:?} cannot be given to docker through kubelet {v}: \
                 its sandbox image is cri-dockerd's"
            ),
            fix: format!(
                "remove [host] sandbox_image and start cri-dockerd with --pod-infra-container-image={image}, \
                 or use containerd"
            ),
        });
    }
    let runtime_unit = match &s.runtime_unit {
        Some(explicit) => explicit.clone(),
        None => match node.runtime {
            Runtime::Docker if cri_dockerd => Some(CRI_DOCKERD_UNIT.into()),
            Runtime::Docker => Some(crate::host::docker::UNIT.into()),
            Runtime::Containerd | Runtime::None | Runtime::Detect => {
                Some(crate::host::containerd::UNIT.into())
            }
        },
    };
    Ok(Profile {
        version: v.clone(),
        remote_runtime_flag: matches!(cri, Cri::Remote(_)) && !v.at_least(27),
        endpoint_in_config: v.at_least(27),
        taints_in_config: v.at_least(23),
        allow_cgroup_v1: !node.cgroup_v2 && v.at_least(31) && !s.fail_cgroup_v1,
        config_dir: v.at_least(30),
        cri_dockerd,
        cri,
        runtime_unit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(version: &str, runtime: Runtime) -> Node {
        Node {
            version: Version::parse(version).unwrap(),
            runtime,
            cgroup_v2: false,
        }
    }

    #[test]
    fn runtimes_by_version() {
        let s = KubeletSettings::default();
        let p = profile(&s, &node("v1.20.2", Runtime::Docker)).unwrap();
        assert_eq!(p.cri, Cri::Dockershim);
        assert!(!p.remote_runtime_flag);
        assert_eq!(p.runtime_unit.as_deref(), Some("docker.service"));
        let p = profile(&s, &node("v1.20.2", Runtime::Containerd)).unwrap();
        assert_eq!(p.cri, Cri::Remote(CONTAINERD_SOCKET.into()));
        assert!(p.remote_runtime_flag && !p.endpoint_in_config && !p.taints_in_config);
        let p = profile(&s, &node("v1.24.17", Runtime::Docker)).unwrap();
        assert_eq!(p.cri, Cri::Remote(CRI_DOCKERD_SOCKET.into()));
        assert!(p.cri_dockerd && p.remote_runtime_flag);
        assert_eq!(p.runtime_unit.as_deref(), Some("cri-docker.service"));
        let p = profile(&s, &node("v1.27.0", Runtime::Containerd)).unwrap();
        assert!(!p.remote_runtime_flag && p.endpoint_in_config && p.taints_in_config);
        assert!(!p.allow_cgroup_v1 && !p.config_dir);
        let p = profile(&s, &node("v1.36.2", Runtime::Containerd)).unwrap();
        assert!(p.allow_cgroup_v1 && p.config_dir);
    }

    #[test]
    fn explicit_keys_win_and_conflicts_are_named() {
        let s = KubeletSettings {
            container_runtime_endpoint: Some("unix:///run/crio/crio.sock".into()),
            runtime_unit: Some(Some("crio.service".into())),
            ..Default::default()
        };
        let p = profile(&s, &node("v1.31.0", Runtime::None)).unwrap();
        assert_eq!(p.cri, Cri::Remote("unix:///run/crio/crio.sock".into()));
        assert_eq!(p.runtime_unit.as_deref(), Some("crio.service"));
        let e = profile(&s, &node("v1.22.0", Runtime::Docker)).unwrap_err();
        assert_eq!(e.key, "container_runtime_endpoint");
        let s = KubeletSettings {
            extra_args: vec!["--container-runtime=remote".into()],
            ..Default::default()
        };
        assert!(profile(&s, &node("v1.26.0", Runtime::Containerd)).is_ok());
        assert_eq!(
            profile(&s, &node("v1.27.0", Runtime::Containerd))
                .unwrap_err()
                .key,
            "extra_args"
        );
        assert_eq!(
            profile(
                &KubeletSettings::default(),
                &node("v1.19.16", Runtime::Containerd)
            )
            .unwrap_err()
            .key,
            "binary"
        );
        let strict = KubeletSettings {
            fail_cgroup_v1: true,
            ..Default::default()
        };
        assert!(
            !profile(&strict, &node("v1.36.2", Runtime::Containerd))
                .unwrap()
                .allow_cgroup_v1
        );
    }

    #[test]
    fn kubelet_1_20_refuses_a_field_it_does_not_have() {
        let mut s = KubeletSettings::default();
        s.config.insert(
            "seccompDefault".into(),
            crate::config::kubelet::UserField {
                value: serde_json::json!(true),
                key: "kubelet.config.seccompDefault".into(),
                origin: crate::config::Origin::File("/etc/kubejoin/config.toml".into()),
            },
        );
        let node = |v: &str| Node {
            version: Version::parse(v).unwrap(),
            runtime: Runtime::Containerd,
            cgroup_v2: true,
        };
        let c = profile(&s, &node("v1.20.2")).unwrap_err();
        assert!(c.message.contains("kubelet.config.seccompDefault (in /etc/kubejoin/config.toml) is not a field of kubelet v1.20.2"), "{c}");
        assert!(profile(&s, &node("v1.36.2")).is_ok());
    }
}
