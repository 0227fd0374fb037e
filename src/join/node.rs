//! This node's kubelet and container runtime as a join, `kubejoin preflight` and
//! `kubejoin doctor` all see them: kubelet's version and the settings it needs here, the
//! runtime left to detection, a runtime left alone that disagrees with kubelet.

use std::path::Path;

use crate::config::{ConfigError, Origin, Settings};
use crate::failure::Failure;
use crate::host;
use crate::kubelet::{
    self,
    profile::{Cri, Profile},
    version::Version,
};
use crate::systemd::dbus::Systemd;

/// kubelet's version and what it needs on this node.
pub struct NodeKubelet {
    pub version: Result<Version, String>,
    pub profile: Option<Profile>,
}

impl NodeKubelet {
    /// What preflight looks at on this node, with this kubelet (`bus`: whether systemd
    /// answered over D-Bus).
    pub fn preflight_facts(
        &self,
        settings: &Settings,
        bus: Result<(), String>,
        kubelet_active: bool,
    ) -> crate::preflight::Facts {
        crate::preflight::inspect(
            &settings.kubelet,
            &self.version,
            self.profile.as_ref(),
            &settings.host,
            bus,
            kubelet_active,
        )
    }
}

/// Reads kubelet's version and the host's cgroups, and chooses kubelet's settings for
/// them. A `[kubelet]` key that cannot work with them is a configuration error.
pub fn node_kubelet(settings: &Settings) -> Result<NodeKubelet, Failure> {
    let version = kubelet::version::detect(&settings.kubelet.binary).map_err(|e| e.to_string());
    let profile =
        match &version {
            Ok(v) => {
                let node = kubelet::profile::Node {
                    version: v.clone(),
                    runtime: settings.host.runtime,
                    cgroup_v2: kubelet::cgroup_v2(),
                };
                Some(
                    kubelet::profile::profile(&settings.kubelet, &node).map_err(|c| {
                        Failure::Config(ConfigError {
                            origin: settings.kubelet_origins.get(c.key).cloned().unwrap_or_else(
                                || Origin::File(crate::config::DEFAULT_PATH.into()),
                            ),
                            key: Some(format!("kubelet.{}", c.key)),
                            message: format!("{}; fix: {}", c.message, c.fix),
                            transient: false,
                        })
                    })?,
                )
            }
            Err(_) => None,
        };
    Ok(NodeKubelet { version, profile })
}

/// Resolves a runtime left to detection (no `[host] container_runtime`) from this node's
/// units, as `run`, `preflight` and `doctor` all see it.
pub async fn resolve_runtime(
    settings: &mut Settings,
    systemd: &Systemd,
) -> Result<(), crate::systemd::dbus::SystemdError> {
    settings.host.runtime = host::detect_runtime(
        settings.host.runtime,
        settings.kubelet.container_runtime_endpoint.as_deref(),
        systemd,
    )
    .await?;
    Ok(())
}

/// With `[host] container_runtime = "none"` (or no runtime kubejoin knows), containerd is
/// left as it is: a join stops before kubelet starts when the containerd that runs here
/// (its socket is there) would have runc use another cgroup driver than kubelet (a node
/// that registers but cannot keep a pod).
pub fn runtime_left_alone_agrees(settings: &Settings, profile: &Profile) -> Result<(), Failure> {
    let containerd_cri = profile.cri == Cri::Remote(host::containerd::SOCKET.into());
    if settings.host.runtime != host::Runtime::None
        || !containerd_cri
        || !Path::new(host::containerd::socket_path()).exists()
    {
        return Ok(());
    }
    let config = std::fs::read_to_string(host::containerd::CONFIG).ok();
    host::containerd::drivers_agree(config.as_deref(), settings.host.systemd_cgroup).map_err(
        |message| Failure::NeedsPerson {
            message,
            fix: format!(
                "remove [host] container_runtime = \"none\" (or set it to \"containerd\"): kubejoin then sets \
                 runc's SystemdCgroup to match; or set [kubelet] cgroup_driver = \"{}\"",
                if settings.host.systemd_cgroup { "cgroupfs" } else { "systemd" }
            ),
        },
    )
}
