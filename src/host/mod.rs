//! Host preparation, the first phase of `kubejoin run`: what the seed does by hand to a
//! worker, done persistently and planned first. [`inspect`] reads the host into
//! [`Facts`], [`plan`] (pure) says what must change and why, [`apply`] does it.
//!
//! Steps: swap, kernel prerequisites, and docker as the seed runs it (its three
//! settings, its nat leftovers, docker0). (containerd's configuration is still to come.)

pub mod containerd;
pub mod docker;
pub mod images;
pub mod kernel;
pub mod link;
pub mod logind;
pub mod netfilter;
pub mod proxy;
pub mod registry;
pub mod swap;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::fsutil;
use crate::ledger::backup_path_of;
use crate::systemd::dbus::{Systemd, SystemdError};

pub const FSTAB: &str = "/etc/fstab";

/// The `[host]` settings: which steps run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    pub swap: bool,
    pub kernel: bool,
    pub runtime: Runtime,
    /// kubelet's cgroup driver is systemd's (containerd's runc must match it).
    pub systemd_cgroup: bool,
    /// Turn zram swap off too (it belongs to its generator: left alone by default).
    pub swap_zram: bool,
    /// With docker: remove its nat leftovers.
    pub netfilter: bool,
    /// With docker: delete docker0.
    pub docker0: bool,
    /// An IPv6 node (its address, or one of its two, is IPv6): with `kernel`, IPv6
    /// forwarding, router advertisements still accepted. Decided by the join from the
    /// node's address, not a key of its own.
    pub ipv6: bool,
    /// kubelet's `shutdownGracePeriod`, when this node sets one: logind must let kubelet
    /// delay a shutdown that long ([`logind`]).
    pub inhibit_delay: Option<std::time::Duration>,
    /// `[proxy]`, completed: given to the runtime and kubelet as systemd drop-ins
    /// ([`proxy`]).
    pub proxy: Option<proxy::ProxyEnv>,
    /// `[host] sandbox_image`: the runtime's pod sandbox ("pause") image.
    pub sandbox_image: Option<String>,
    /// `[registries]`: mirrors and CAs, as containerd's hosts.toml ([`registry`]).
    pub registries: Vec<registry::Registry>,
    /// `[host] image_archives`: a directory of image archives imported before kubelet
    /// starts ([`images`]).
    pub image_archives: Option<PathBuf>,
}

/// `[host] container_runtime`: which runtime kubejoin prepares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The seed's: docker with `--bridge=none --iptables=false --ip-masq=false`, its nat
    /// leftovers removed and docker0 deleted.
    Docker,
    /// containerd with its CRI plugin on and runc's cgroup driver matching kubelet's.
    Containerd,
    /// Leave the runtime alone (`container_runtime = "none"`).
    None,
    /// No `[host] container_runtime`: the runtime this node has, decided by
    /// [`detect_runtime`] before anything reads it (unresolved, it is left alone).
    Detect,
}

/// The runtime kubejoin prepares when `[host] container_runtime` is not set: containerd
/// when containerd.service is installed (docker's packages install it too, and kubelet
/// talks CRI to it), unless `[kubelet] container_runtime_endpoint` names another runtime;
/// otherwise none. So a worker configured with only its cluster keys, as `kubejoin token
/// create` prints them, still gets one cgroup driver everywhere.
pub fn detected_runtime(containerd_installed: bool, kubelet_endpoint: Option<&str>) -> Runtime {
    let other_endpoint = kubelet_endpoint
        .is_some_and(|e| e.trim_start_matches("unix://") != containerd::socket_path());
    if containerd_installed && !other_endpoint {
        Runtime::Containerd
    } else {
        Runtime::None
    }
}

/// Resolves [`Runtime::Detect`] from the units this node has (over D-Bus).
pub async fn detect_runtime(
    runtime: Runtime,
    kubelet_endpoint: Option<&str>,
    systemd: &Systemd,
) -> Result<Runtime, SystemdError> {
    if runtime != Runtime::Detect {
        return Ok(runtime);
    }
    let installed = systemd.exec_start(containerd::UNIT).await?.is_some();
    let found = detected_runtime(installed, kubelet_endpoint);
    tracing::info!(
        phase = "preflight",
        "container runtime: {} ({}; set [host] container_runtime to choose)",
        match found {
            Runtime::Containerd => "containerd",
            _ => "left alone",
        },
        if installed {
            "containerd.service is installed"
        } else {
            "containerd.service is not installed"
        }
    );
    Ok(found)
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            swap: true,
            kernel: true,
            runtime: Runtime::None,
            systemd_cgroup: true,
            swap_zram: false,
            netfilter: true,
            docker0: true,
            ipv6: false,
            inhibit_delay: None,
            proxy: None,
            sandbox_image: None,
            registries: Vec::new(),
            image_archives: None,
        }
    }
}

/// zram swap is set up by its generator (zram-generator, zram-tools): reported, not
/// fought, unless `[host] swap_zram = true`.
pub fn is_zram(path: &Path) -> bool {
    path.starts_with("/dev")
        && path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("zram"))
}

/// What the host looks like.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub swaps: Vec<PathBuf>,
    /// `/etc/fstab`'s text and mode, if it exists.
    pub fstab: Option<(String, u32)>,
    pub fstab_backup_exists: bool,
    /// Units whose unit file is masked already.
    pub masked: BTreeSet<String>,
    /// kubejoin's modules-load.d and sysctl.d files, as they are.
    pub modules_file: Option<String>,
    pub sysctl_file: Option<String>,
    /// Modules whose function is missing from the kernel.
    pub missing_modules: Vec<&'static str>,
    /// Sysctls and their current values (`None`: the key does not exist yet).
    pub sysctls: Vec<(String, Option<String>)>,
    /// An IPv6 node's links that accept router advertisements now ([`kernel::ra_links`]).
    pub ra_links: Vec<String>,
    /// kubejoin's logind drop-in, as it is.
    pub logind_drop_in: Option<String>,
    /// kubejoin's proxy drop-in of each unit that gets one, as it is.
    pub proxy_drop_ins: Vec<(String, Option<String>)>,
    pub docker: Option<DockerFacts>,
    pub containerd: Option<ContainerdFacts>,
    /// Files kubejoin created on earlier runs (from its ledger): those of its kinds it no
    /// longer wants (a proxy drop-in, a registry's hosts.toml) are removed.
    pub created: Vec<PathBuf>,
    /// `[host] image_archives`: each archive and the images it names (or why they
    /// cannot be read), or why the directory cannot be read; and the images the runtime
    /// has.
    pub archives: Vec<(PathBuf, Result<Vec<String>, String>)>,
    pub archives_unreadable: Option<String>,
    pub images_present: Vec<String>,
    /// kubelet's config.json (registry credentials), as it is, when `[registries]` give
    /// credentials; and each such registry's credentials (or why they cannot be used).
    pub kubelet_auth: Option<(registry::Secret, u32)>,
    pub credentials: Vec<(String, Result<registry::Secret, String>)>,
}

/// A container runtime's unit as it runs now, against its configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// `ActiveState` and `SubState`, e.g. `active running`, `failed failed`.
    pub state: String,
    /// When it last became active, microseconds since the epoch (0: never).
    pub since_us: u64,
    /// When its configuration file last changed, microseconds since the epoch.
    pub config_changed_us: Option<u64>,
}

impl Running {
    /// Why the runtime must be (re)started although its configuration is already right:
    /// it is not running (a restart that failed, a run killed before it), or it runs
    /// with an older file (started before the file last changed).
    fn needs_restart(&self, config: &str) -> Option<String> {
        if !self.state.starts_with("active ") {
            return Some(format!(
                "it is {}, and kubelet needs it running",
                self.state
            ));
        }
        match self.config_changed_us {
            Some(changed) if changed > self.since_us => Some(format!(
                "it runs with an older {config}: it started before the file last changed"
            )),
            _ => None,
        }
    }
}

/// containerd, as it is.
#[derive(Debug, Clone, Default)]
pub struct ContainerdFacts {
    pub installed: bool,
    /// `/etc/containerd/config.toml`'s text and mode, if it exists.
    pub config: Option<(String, u32)>,
    pub config_backup_exists: bool,
    pub running: Running,
    /// Each `[registries]` hosts.toml kubejoin wants, in the certs directory the edited
    /// config names.
    pub hosts_files: Vec<HostsFile>,
    /// The `[registries]` CA files that do not exist.
    pub missing_cas: Vec<PathBuf>,
}

/// A registry's hosts.toml, as it is.
#[derive(Debug, Clone, Default)]
pub struct HostsFile {
    pub registry: String,
    pub path: PathBuf,
    /// Its text and mode, if it exists.
    pub current: Option<(String, u32)>,
    pub backup_exists: bool,
}

/// docker, as it is.
#[derive(Debug, Clone, Default)]
pub struct DockerFacts {
    /// docker.service has a unit file.
    pub installed: bool,
    /// Its `ExecStart=` words, `$VARS` expanded from its `EnvironmentFile=`s.
    pub args: Vec<String>,
    /// `/etc/docker/daemon.json`'s text and mode, if it exists.
    pub daemon_json: Option<(String, u32)>,
    pub daemon_json_backup_exists: bool,
    /// `iptables -t nat -S`.
    pub nat_rules: String,
    pub docker0: bool,
    pub running: Running,
}

/// Why host preparation cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("[host] container_runtime = \"docker\", but docker.service is not installed")]
    DockerMissing,
    #[error("{0}")]
    DockerConflict(#[from] docker::Conflict),
    #[error("/etc/docker/daemon.json is not a JSON object: {0}")]
    DaemonJson(String),
    #[error("[host] container_runtime = \"containerd\", but containerd.service is not installed")]
    ContainerdMissing,
    #[error("/etc/containerd/config.toml cannot be edited: {0}")]
    ContainerdConfig(String),
    /// `[registries]`, `sandbox_image` or `image_archives` with a runtime kubejoin does not
    /// configure for them.
    #[error("{what} is set, but {runtime}")]
    RuntimeSettings { what: String, runtime: String },
    #[error("[registries.\"{registry}\"] ca = {path:?} does not exist")]
    RegistryCa { registry: String, path: PathBuf },
    #[error("{path} is not an image archive kubejoin can import: {why}")]
    ImageArchive { path: PathBuf, why: String },
    #[error("[host] image_archives = {0:?} cannot be read: {1}")]
    ImageArchives(PathBuf, String),
    #[error("[registries.\"{registry}\"] credentials_file = {path:?} cannot be used: {why}")]
    RegistryCredentials {
        registry: String,
        path: PathBuf,
        why: String,
    },
    #[error("{0}")]
    KubeletAuth(String),
}

impl PlanError {
    pub fn fix(&self) -> String {
        match self {
            PlanError::DockerMissing => {
                "install docker (Debian: apt-get install docker.io), or set [host] container_runtime".into()
            }
            PlanError::DockerConflict(c) => format!(
                "remove the {} flag from docker's command line (DOCKER_OPTS in /etc/default/docker, or a \
                 docker.service drop-in); kubejoin sets it in {}",
                c.key,
                docker::DAEMON_JSON
            ),
            PlanError::DaemonJson(_) => format!("fix {} or move it aside", docker::DAEMON_JSON),
            PlanError::ContainerdMissing => {
                "install containerd (Debian: apt-get install containerd), or set [host] container_runtime".into()
            }
            PlanError::ContainerdConfig(_) => format!(
                "fix {} (or regenerate it with `containerd config default`)",
                containerd::CONFIG
            ),
            PlanError::RuntimeSettings { .. } => {
                "set [host] container_runtime = \"containerd\" (kubejoin writes these into \
                 containerd's configuration), or remove them and configure the runtime yourself"
                    .into()
            }
            PlanError::RegistryCa { .. } => {
                "put the registry's CA certificate (PEM) there, or correct the path".into()
            }
            PlanError::ImageArchive { .. } => {
                "replace it with the output of `docker save`, `ctr images export` or \
                 `skopeo copy ... oci-archive:` (uncompressed, with the images' names), or \
                 move it out of the directory"
                    .into()
            }
            PlanError::ImageArchives(..) => {
                "create the directory (root may read it), or remove [host] image_archives".into()
            }
            PlanError::RegistryCredentials { path, .. } => format!(
                "write username:password on one line into {} and run: chmod 600 {}",
                path.display(),
                path.display()
            ),
            PlanError::KubeletAuth(_) => format!(
                "fix {} (a docker config.json: {{\"auths\": {{...}}}}) or move it aside",
                registry::KUBELET_AUTH
            ),
        }
    }
}

/// One change to the host, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Change {
    /// `swapoff(2)`.
    Swapoff { path: PathBuf, why: &'static str },
    /// A file edited in place; the original kept once as `<path>.kubejoin-orig`.
    Edit {
        path: PathBuf,
        why: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        backup: Option<PathBuf>,
        diff: String,
        #[serde(skip)]
        contents: String,
        #[serde(skip)]
        mode: u32,
    },
    /// `Manager.MaskUnitFiles`.
    Mask { unit: String, why: &'static str },
    /// A file kubejoin owns, written whole.
    Write {
        path: PathBuf,
        why: &'static str,
        diff: String,
        #[serde(skip)]
        contents: String,
    },
    /// `Manager.RestartUnit(replace)`, waiting for its result.
    Restart { unit: String, why: String },
    /// A write to `/proc/sys`.
    Sysctl {
        key: String,
        from: Option<String>,
        to: String,
    },
    /// The host's `iptables` with these arguments.
    Iptables {
        args: Vec<String>,
        why: &'static str,
    },
    /// `RTM_DELLINK`.
    DeleteLink { name: String, why: &'static str },
    /// `Manager.Reload`: systemd reads unit files (a drop-in) again.
    Reload { why: &'static str },
    /// A file kubejoin wrote on an earlier run and no longer wants.
    Remove { path: PathBuf, why: &'static str },
    /// A file that holds secrets, written whole with mode 0600: its contents are never
    /// shown (no diff, no `Debug`, not serialized).
    WriteSecret {
        path: PathBuf,
        why: &'static str,
        #[serde(skip)]
        contents: registry::Secret,
    },
    /// An image archive imported into the runtime (`ctr images import`, `docker load`).
    Import {
        archive: PathBuf,
        runtime: &'static str,
        images: Vec<String>,
    },
    /// `Manager.KillUnit(main)` with a signal, for a daemon to read its configuration again.
    Signal {
        unit: &'static str,
        signal: i32,
        why: &'static str,
    },
}

impl Change {
    pub fn describe(&self) -> String {
        match self {
            Change::Swapoff { path, why } => format!("swapoff {} ({why})", path.display()),
            Change::Edit {
                path, why, backup, ..
            } => format!(
                "edit {} ({why}){}",
                path.display(),
                backup
                    .as_ref()
                    .map(|b| format!(", original kept as {}", b.display()))
                    .unwrap_or_default()
            ),
            Change::Mask { unit, why } => format!("MaskUnitFiles {unit} ({why})"),
            Change::Write { path, why, .. } => format!("write {} ({why})", path.display()),
            Change::Restart { unit, why } => format!("RestartUnit {unit} replace ({why})"),
            Change::Sysctl { key, from, to } => format!(
                "sysctl {key} = {to} (now {})",
                from.as_deref().unwrap_or("unset")
            ),
            Change::Iptables { args, why } => format!("iptables {} ({why})", args.join(" ")),
            Change::DeleteLink { name, why } => format!("delete link {name} ({why})"),
            Change::Signal { unit, signal, why } => {
                format!("KillUnit {unit} main signal {signal} ({why})")
            }
            Change::Reload { why } => format!("Reload ({why})"),
            Change::Remove { path, why } => format!("remove {} ({why})", path.display()),
            Change::WriteSecret { path, why, .. } => {
                format!(
                    "write {} ({why}; mode 0600, contents not shown)",
                    path.display()
                )
            }
            Change::Import {
                archive,
                runtime,
                images,
            } => format!(
                "import {} into {runtime} ({})",
                archive.display(),
                images.join(", ")
            ),
        }
    }
}

const SWAP_WHY: &str = "kubelet does not run with swap on";

/// The IPv6 sysctls this host wants ([`kernel::ipv6_sysctls`]): none but on an IPv6 node.
fn ipv6_sysctls(settings: &HostSettings, ra_links: &[String]) -> Vec<(String, String)> {
    if settings.ipv6 {
        kernel::ipv6_sysctls(ra_links)
    } else {
        Vec::new()
    }
}

/// The changes that bring the host from `facts` to what kubelet needs.
pub fn plan(settings: &HostSettings, facts: &Facts) -> Result<Vec<Change>, PlanError> {
    let mut changes = Vec::new();
    if settings.swap {
        let ours: Vec<&PathBuf> = facts
            .swaps
            .iter()
            .filter(|p| settings.swap_zram || !is_zram(p))
            .collect();
        for path in &ours {
            changes.push(Change::Swapoff {
                path: (*path).clone(),
                why: SWAP_WHY,
            });
        }
        let mut units: BTreeSet<String> = ours.iter().map(|p| swap::swap_unit(p)).collect();
        if let Some((text, mode)) = &facts.fstab {
            units.extend(swap::fstab_units(text));
            if let Some(new) = swap::comment_out_swaps(text) {
                changes.push(edit_or_write(
                    FSTAB,
                    "so that swap stays off after a reboot",
                    Some(&(text.clone(), *mode)),
                    facts.fstab_backup_exists,
                    new,
                ));
            }
        }
        for unit in units.difference(&facts.masked) {
            changes.push(Change::Mask {
                unit: unit.clone(),
                why: "so that systemd does not turn the swap on again",
            });
        }
    }
    if settings.kernel {
        let ipv6 = ipv6_sysctls(settings, &facts.ra_links);
        for (path, want, have, why) in [
            (
                kernel::MODULES_FILE,
                kernel::modules_file(),
                &facts.modules_file,
                "load overlay and br_netfilter at every boot",
            ),
            (
                kernel::SYSCTL_FILE,
                kernel::sysctl_file(&ipv6),
                &facts.sysctl_file,
                "forwarding and bridge netfilter at every boot",
            ),
        ] {
            if have.as_deref() != Some(want.as_str()) {
                changes.push(Change::Write {
                    path: path.into(),
                    why,
                    diff: crate::diff::lines(have.as_deref().unwrap_or_default(), &want),
                    contents: want,
                });
            }
        }
        if !facts.missing_modules.is_empty() {
            changes.push(Change::Restart {
                unit: kernel::MODULES_LOAD_UNIT.into(),
                why: format!("load {} now", facts.missing_modules.join(" and ")),
            });
        }
        let loading_bridge = facts.missing_modules.contains(&"br_netfilter");
        let every_node = kernel::SYSCTLS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        for (key, want) in every_node.chain(ipv6) {
            let have = facts
                .sysctls
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.clone());
            // The bridge keys appear with br_netfilter: set them after it loads.
            if have.as_deref() != Some(want.as_str()) && (have.is_some() || loading_bridge) {
                changes.push(Change::Sysctl {
                    key,
                    from: have,
                    to: want,
                });
            }
        }
    }
    if let Some(delay) = settings.inhibit_delay {
        let want = logind::drop_in(delay);
        if facts.logind_drop_in.as_deref() != Some(want.as_str()) {
            changes.push(Change::Write {
                path: logind::DROP_IN.into(),
                why: "logind lets kubelet delay a shutdown by its shutdownGracePeriod",
                diff: crate::diff::lines(
                    facts.logind_drop_in.as_deref().unwrap_or_default(),
                    &want,
                ),
                contents: want,
            });
            changes.push(Change::Signal {
                unit: logind::UNIT,
                signal: logind::RELOAD_SIGNAL,
                why: "logind reads its configuration again",
            });
        }
    }
    let proxied_runtime = plan_proxy(settings, facts, &mut changes);
    match settings.runtime {
        Runtime::Docker => plan_docker(
            facts.docker.clone().unwrap_or_default(),
            settings,
            &mut changes,
        )?,
        Runtime::Containerd => plan_containerd(
            facts.containerd.clone().unwrap_or_default(),
            settings,
            &mut changes,
        )?,
        Runtime::None | Runtime::Detect => {}
    }
    check_runtime_settings(settings)?;
    if remove_unwanted(settings, facts, &mut changes) && proxied_runtime.is_none() {
        // A runtime whose proxy drop-in went away restarts without it.
        if let Some(unit) = proxied_units(settings.runtime)
            .into_iter()
            .find(|u| *u != proxy::KUBELET_UNIT)
            && facts
                .created
                .iter()
                .any(|p| *p == Path::new(&proxy::drop_in_path(unit)))
            && settings.proxy.is_none()
            && !changes
                .iter()
                .any(|c| matches!(c, Change::Restart { unit: u, .. } if u == unit))
        {
            changes.push(Change::Restart {
                unit: unit.into(),
                why: "to run without the proxy".into(),
            });
        }
    }
    // A runtime whose proxy changed takes it when it restarts (once).
    if let Some(unit) = proxied_runtime
        && !changes
            .iter()
            .any(|c| matches!(c, Change::Restart { unit: u, .. } if u == unit))
    {
        changes.push(Change::Restart {
            unit: unit.into(),
            why: "to take its proxy".into(),
        });
    }
    plan_credentials(settings, facts, &mut changes)?;
    plan_imports(settings, facts, &mut changes)?;
    Ok(changes)
}

/// `[registries]` credentials: kubelet's config.json, which kubelet reads at each pull
/// (nothing restarts).
fn plan_credentials(
    settings: &HostSettings,
    facts: &Facts,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    let mut entries = Vec::new();
    for r in &settings.registries {
        let Some(path) = &r.credentials else {
            continue;
        };
        match facts.credentials.iter().find(|(name, _)| *name == r.name) {
            Some((_, Ok(secret))) => entries.push((r.name.as_str(), secret)),
            Some((_, Err(why))) => {
                return Err(PlanError::RegistryCredentials {
                    registry: r.name.clone(),
                    path: path.clone(),
                    why: why.clone(),
                });
            }
            None => {}
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    // A file kubejoin created holds exactly what the settings give (a registry taken
    // out loses its entry); one that was there before keeps its other entries.
    let current = facts.kubelet_auth.as_ref();
    let ours = facts
        .created
        .iter()
        .any(|p| p == Path::new(registry::KUBELET_AUTH));
    let base = current.filter(|_| !ours).map(|(t, _)| t.as_str());
    let want = registry::kubelet_auth(base, &entries).map_err(PlanError::KubeletAuth)?;
    if current.is_none_or(|(t, mode)| *t != want || mode & 0o077 != 0) {
        changes.push(Change::WriteSecret {
            path: registry::KUBELET_AUTH.into(),
            why: "registry credentials, for kubelet's image pulls",
            contents: want,
        });
    }
    Ok(())
}

/// `[registries]`, `sandbox_image` and `image_archives` need a runtime kubejoin
/// configures: containerd for all three, docker for the archives (and for the sandbox
/// image, which kubelet's dockershim takes as a flag).
fn check_runtime_settings(settings: &HostSettings) -> Result<(), PlanError> {
    let runtime = match settings.runtime {
        Runtime::Containerd => return Ok(()),
        Runtime::Docker => "the container runtime is docker",
        Runtime::None | Runtime::Detect => {
            "kubejoin leaves the container runtime alone (no [host] container_runtime, and \
             containerd.service is not installed; or container_runtime = \"none\")"
        }
    };
    let docker = settings.runtime == Runtime::Docker;
    let what = if !settings.registries.is_empty() {
        "[registries]"
    } else if settings.image_archives.is_some() && !docker {
        "[host] image_archives"
    } else if settings.sandbox_image.is_some() && !docker {
        "[host] sandbox_image"
    } else {
        return Ok(());
    };
    Err(PlanError::RuntimeSettings {
        what: what.into(),
        runtime: runtime.into(),
    })
}

/// Files kubejoin created on an earlier run, of the kinds it owns, that the settings no
/// longer want: a unit's proxy drop-in, a registry's hosts.toml. `true` when a drop-in
/// goes (systemd must read the units again).
fn remove_unwanted(settings: &HostSettings, facts: &Facts, changes: &mut Vec<Change>) -> bool {
    let wanted_drop_ins: Vec<String> = match settings.proxy {
        Some(_) => proxied_units(settings.runtime)
            .into_iter()
            .map(proxy::drop_in_path)
            .collect(),
        None => Vec::new(),
    };
    let wanted_hosts: Vec<&PathBuf> = facts
        .containerd
        .iter()
        .flat_map(|c| c.hosts_files.iter().map(|h| &h.path))
        .collect();
    let mut drop_in_gone = false;
    for path in &facts.created {
        let drop_in = path.file_name().is_some_and(|n| n == proxy::DROP_IN_NAME);
        if drop_in && !wanted_drop_ins.iter().any(|w| path == Path::new(w)) {
            changes.push(Change::Remove {
                path: path.clone(),
                why: "[proxy] no longer gives this unit a proxy",
            });
            drop_in_gone = true;
        } else if path == Path::new(registry::KUBELET_AUTH)
            && !settings.registries.iter().any(|r| r.credentials.is_some())
        {
            changes.push(Change::Remove {
                path: path.clone(),
                why: "no registry in [registries] has credentials any more",
            });
        } else if registry::is_hosts_toml(path)
            && settings.runtime == Runtime::Containerd
            && !wanted_hosts.contains(&path)
        {
            changes.push(Change::Remove {
                path: path.clone(),
                why: "its registry is no longer in [registries]",
            });
        }
    }
    if drop_in_gone {
        changes.push(Change::Reload {
            why: "systemd reads the units without the proxy drop-in",
        });
    }
    drop_in_gone
}

/// The runtime an archive is imported into, by name ([`images::import`]).
fn importer(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Docker => "docker",
        _ => "containerd",
    }
}

/// `[host] image_archives`: the archives with an image the runtime lacks, imported after
/// the runtime's (re)start, the sandbox image's first.
fn plan_imports(
    settings: &HostSettings,
    facts: &Facts,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    let Some(dir) = &settings.image_archives else {
        return Ok(());
    };
    let runtime = importer(settings.runtime);
    if let Some(why) = &facts.archives_unreadable {
        return Err(PlanError::ImageArchives(dir.clone(), why.clone()));
    }
    let mut archives = Vec::new();
    for (path, names) in &facts.archives {
        match names {
            Ok(names) if !names.is_empty() => archives.push(images::Archive {
                path: path.clone(),
                names: names.clone(),
            }),
            Ok(_) => {
                return Err(PlanError::ImageArchive {
                    path: path.clone(),
                    why: "it names no image (no io.containerd.image.name annotation or whole \
                          org.opencontainers.image.ref.name in index.json, no RepoTags in \
                          manifest.json)"
                        .into(),
                });
            }
            Err(why) => {
                return Err(PlanError::ImageArchive {
                    path: path.clone(),
                    why: why.clone(),
                });
            }
        }
    }
    for a in images::to_import(
        &archives,
        &facts.images_present,
        settings.sandbox_image.as_deref(),
    ) {
        changes.push(Change::Import {
            archive: a.path.clone(),
            runtime,
            images: a.names.clone(),
        });
    }
    Ok(())
}

/// The units that get the proxy: the runtime kubejoin prepares, and kubelet.
pub fn proxied_units(runtime: Runtime) -> Vec<&'static str> {
    let runtime = match runtime {
        Runtime::Docker => Some(docker::UNIT),
        Runtime::Containerd => Some(containerd::UNIT),
        Runtime::None | Runtime::Detect => None,
    };
    runtime.into_iter().chain([proxy::KUBELET_UNIT]).collect()
}

/// `[proxy]`: each unit's drop-in, and systemd told to read them; the runtime's unit when
/// its drop-in changed (it must restart to take it).
fn plan_proxy(
    settings: &HostSettings,
    facts: &Facts,
    changes: &mut Vec<Change>,
) -> Option<&'static str> {
    let env = settings.proxy.as_ref()?;
    let want = proxy::drop_in(env);
    let mut wrote = Vec::new();
    for unit in proxied_units(settings.runtime) {
        let have = facts
            .proxy_drop_ins
            .iter()
            .find(|(u, _)| u == unit)
            .and_then(|(_, t)| t.as_deref());
        if have != Some(want.as_str()) {
            changes.push(Change::Write {
                path: proxy::drop_in_path(unit).into(),
                why: "the proxy for the internet, and what never goes through it",
                diff: crate::diff::lines(have.unwrap_or_default(), &want),
                contents: want.clone(),
            });
            wrote.push(unit);
        }
    }
    if wrote.is_empty() {
        return None;
    }
    changes.push(Change::Reload {
        why: "systemd reads the proxy drop-ins",
    });
    wrote.into_iter().find(|u| *u != proxy::KUBELET_UNIT)
}

/// The change that gives a configuration file new text: edited in place with a one-time
/// backup when it exists, written when it does not.
fn edit_or_write(
    path: &str,
    why: &'static str,
    current: Option<&(String, u32)>,
    backup_exists: bool,
    new: String,
) -> Change {
    match current {
        Some((old, mode)) => Change::Edit {
            path: path.into(),
            why,
            backup: (!backup_exists).then(|| backup_path(path)),
            diff: crate::diff::lines(old, &new),
            contents: new,
            mode: *mode,
        },
        None => Change::Write {
            path: path.into(),
            why,
            diff: crate::diff::lines("", &new),
            contents: new,
        },
    }
}

fn backup_path(path: &str) -> PathBuf {
    backup_path_of(Path::new(path))
}

/// A file's text and permission bits, or `None` when it does not exist.
fn read_with_mode(path: &str) -> anyhow::Result<Option<(String, u32)>> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some((
            text,
            std::fs::metadata(path)?.permissions().mode() & 0o7777,
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {path}")),
    }
}

fn plan_containerd(
    c: ContainerdFacts,
    settings: &HostSettings,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    if !c.installed {
        return Err(PlanError::ContainerdMissing);
    }
    if let Some(path) = c.missing_cas.first() {
        let registry = settings
            .registries
            .iter()
            .find(|r| r.ca.as_ref() == Some(path))
            .map(|r| r.name.clone())
            .unwrap_or_default();
        return Err(PlanError::RegistryCa {
            registry,
            path: path.clone(),
        });
    }
    // Read by containerd at each pull: no restart for these.
    for h in &c.hosts_files {
        let Some(r) = settings.registries.iter().find(|r| r.name == h.registry) else {
            continue;
        };
        let want = registry::hosts_toml(r);
        if h.current.as_ref().map(|(t, _)| t.as_str()) != Some(want.as_str()) {
            changes.push(edit_or_write(
                &h.path.display().to_string(),
                "the registry's mirrors and CA, for containerd",
                h.current.as_ref(),
                h.backup_exists,
                want,
            ));
        }
    }
    let current = c.config.as_ref().map(|(t, _)| t.as_str());
    let Some(new) = containerd::plan_config(current, &containerd_wants(settings))
        .map_err(PlanError::ContainerdConfig)?
    else {
        if let Some(why) = c.running.needs_restart(containerd::CONFIG) {
            changes.push(Change::Restart {
                unit: containerd::UNIT.into(),
                why,
            });
        }
        return Ok(());
    };
    changes.push(edit_or_write(
        containerd::CONFIG,
        match (
            settings.sandbox_image.is_some(),
            settings.registries.is_empty(),
        ) {
            (false, true) => "the CRI plugin on and runc's cgroup driver matching kubelet's",
            (true, true) => {
                "the CRI plugin on, runc's cgroup driver matching kubelet's, and the sandbox image"
            }
            (false, false) => {
                "the CRI plugin on, runc's cgroup driver matching kubelet's, and registries \
                 read from hosts.toml"
            }
            (true, false) => {
                "the CRI plugin on, runc's cgroup driver matching kubelet's, the sandbox image, \
                 and registries read from hosts.toml"
            }
        },
        c.config.as_ref(),
        c.config_backup_exists,
        new,
    ));
    changes.push(Change::Restart {
        unit: containerd::UNIT.into(),
        why: "to take its new configuration".into(),
    });
    Ok(())
}

fn containerd_wants(settings: &HostSettings) -> containerd::Wants<'_> {
    containerd::Wants {
        systemd_cgroup: settings.systemd_cgroup,
        sandbox_image: settings.sandbox_image.as_deref(),
        registries: !settings.registries.is_empty(),
    }
}

fn plan_docker(
    d: DockerFacts,
    settings: &HostSettings,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    if !d.installed {
        return Err(PlanError::DockerMissing);
    }
    let current = match &d.daemon_json {
        Some((text, _)) if !text.trim().is_empty() => Some(
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .map_err(|e| PlanError::DaemonJson(e.to_string()))?,
        ),
        _ => None,
    };
    let flags = docker::flag_settings(&d.args);
    let driver = if settings.systemd_cgroup {
        "systemd"
    } else {
        "cgroupfs"
    };
    if let Some(json) = docker::plan_daemon_json(&flags, current.as_ref(), driver)? {
        let text = format!(
            "{}\n",
            serde_json::to_string_pretty(&json).expect("a JSON map serializes")
        );
        changes.push(edit_or_write(
            docker::DAEMON_JSON,
            "docker without its bridge, iptables rules or masquerading (kubelet's \
             network plugin owns them), with kubelet's cgroup driver",
            d.daemon_json.as_ref(),
            d.daemon_json_backup_exists,
            text,
        ));
        changes.push(Change::Restart {
            unit: docker::UNIT.into(),
            why: "to take the settings in daemon.json".into(),
        });
    } else if let Some(why) = d.running.needs_restart(docker::DAEMON_JSON) {
        changes.push(Change::Restart {
            unit: docker::UNIT.into(),
            why,
        });
    }
    let nat = if settings.netfilter {
        netfilter::docker_nat_cleanup(&d.nat_rules)
    } else {
        Vec::new()
    };
    for args in nat {
        changes.push(Change::Iptables {
            args,
            why: "docker's nat leftovers (what `iptables -t nat -F` would flush)",
        });
    }
    if settings.docker0 && d.docker0 {
        changes.push(Change::DeleteLink {
            name: "docker0".into(),
            why: "docker runs with --bridge=none now",
        });
    }
    Ok(())
}

/// Reads the host.
pub async fn inspect(settings: &HostSettings, systemd: &Systemd) -> anyhow::Result<Facts> {
    let mut facts = Facts::default();
    if settings.kernel {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        facts.modules_file = read(kernel::MODULES_FILE);
        facts.sysctl_file = read(kernel::SYSCTL_FILE);
        facts.missing_modules = kernel::MODULES
            .iter()
            .filter(|(_, present)| !Path::new(present).exists())
            .map(|(m, _)| *m)
            .collect();
        if settings.ipv6 {
            facts.ra_links = kernel::ra_links();
        }
        let ipv6 = ipv6_sysctls(settings, &facts.ra_links);
        let keys = kernel::SYSCTLS
            .iter()
            .map(|(k, _)| k.to_string())
            .chain(ipv6.into_iter().map(|(k, _)| k));
        facts.sysctls = keys
            .map(|k| {
                let now = read(&kernel::proc_path(&k)).map(|v| v.trim().to_string());
                (k, now)
            })
            .collect();
    }
    if settings.inhibit_delay.is_some() {
        facts.logind_drop_in = std::fs::read_to_string(logind::DROP_IN).ok();
    }
    if settings.proxy.is_some() {
        facts.proxy_drop_ins = proxied_units(settings.runtime)
            .into_iter()
            .map(|u| {
                (
                    u.to_string(),
                    std::fs::read_to_string(proxy::drop_in_path(u)).ok(),
                )
            })
            .collect();
    }
    match settings.runtime {
        Runtime::Docker => facts.docker = Some(inspect_docker(systemd).await?),
        Runtime::Containerd => {
            let installed = systemd.exec_start(containerd::UNIT).await?.is_some();
            let config = read_with_mode(containerd::CONFIG)?;
            let mut c = ContainerdFacts {
                installed,
                config_backup_exists: backup_path(containerd::CONFIG).exists(),
                running: running(systemd, containerd::UNIT, containerd::CONFIG).await?,
                ..ContainerdFacts::default()
            };
            if !settings.registries.is_empty() {
                // The directory the configuration names once edited.
                let now = config.as_ref().map(|(t, _)| t.as_str());
                let edited = containerd::plan_config(now, &containerd_wants(settings))
                    .ok()
                    .flatten();
                let dir = edited
                    .as_deref()
                    .or(now)
                    .and_then(containerd::certs_dir)
                    .unwrap_or_else(|| registry::CERTS_DIR.into());
                for r in &settings.registries {
                    let path = registry::hosts_path(&dir, &r.name);
                    c.hosts_files.push(HostsFile {
                        registry: r.name.clone(),
                        current: read_with_mode(&path.display().to_string())?,
                        backup_exists: backup_path_of(&path).exists(),
                        path,
                    });
                    if let Some(ca) = &r.ca
                        && !ca.exists()
                        && !c.missing_cas.contains(ca)
                    {
                        c.missing_cas.push(ca.clone());
                    }
                }
            }
            c.config = config;
            facts.containerd = Some(c);
        }
        Runtime::None | Runtime::Detect => {}
    }
    for r in &settings.registries {
        if let Some(path) = &r.credentials {
            facts
                .credentials
                .push((r.name.clone(), read_credentials(path)));
        }
    }
    if !facts.credentials.is_empty() {
        facts.kubelet_auth = read_with_mode(registry::KUBELET_AUTH)?
            .map(|(text, mode)| (registry::Secret::new(text), mode));
    }
    if let Ok(Some(ledger)) = crate::ledger::load(Path::new(crate::ledger::LEDGER)) {
        facts.created = ledger.created.into_keys().collect();
    }
    if let Some(dir) = &settings.image_archives {
        match images::list(dir) {
            Ok((tars, other)) => {
                facts.archives = tars
                    .into_iter()
                    .map(|p| {
                        let names = images::read_names(&p);
                        (p, names)
                    })
                    .collect();
                for path in other {
                    tracing::info!(
                        phase = "host",
                        "{} is not an image archive (*.tar): left alone",
                        path.display()
                    );
                }
            }
            Err(e) => facts.archives_unreadable = Some(e.to_string()),
        }
        facts.images_present = images::present(importer(settings.runtime));
    }
    if !settings.swap {
        return Ok(facts);
    }
    facts.swaps = swap::parse_proc_swaps(
        &std::fs::read_to_string("/proc/swaps").context("failed to read /proc/swaps")?,
    );
    facts.fstab = read_with_mode(FSTAB)?;
    facts.fstab_backup_exists = backup_path(FSTAB).exists();
    let mut units: Vec<String> = facts.swaps.iter().map(|p| swap::swap_unit(p)).collect();
    if let Some((text, _)) = &facts.fstab {
        units.extend(swap::fstab_units(text));
    }
    for unit in units {
        if systemd.unit_file_state(&unit).await?.as_deref() == Some("masked") {
            facts.masked.insert(unit);
        }
    }
    Ok(facts)
}

/// A registry's credentials file: private to root, one line of `username:password`.
fn read_credentials(path: &Path) -> Result<registry::Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "it holds a password but is readable by group or others (mode {mode:04o})"
        ));
    }
    let text = registry::Secret::new(std::fs::read_to_string(path).map_err(|e| e.to_string())?);
    registry::parse_credentials(text.as_str())?;
    Ok(text)
}

async fn inspect_docker(systemd: &Systemd) -> anyhow::Result<DockerFacts> {
    let mut d = DockerFacts::default();
    let Some((argv, env_files)) = systemd.exec_start(docker::UNIT).await? else {
        return Ok(d);
    };
    d.installed = true;
    let mut env = std::collections::BTreeMap::new();
    for path in env_files {
        if let Ok(text) = std::fs::read_to_string(&path) {
            env.extend(docker::parse_env_file(&text));
        }
    }
    d.args = docker::expand(&argv, &env);
    d.daemon_json = read_with_mode(docker::DAEMON_JSON)?;
    d.daemon_json_backup_exists = backup_path(docker::DAEMON_JSON).exists();
    let out = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .context("failed to run iptables -t nat -S")?;
    if !out.status.success() {
        anyhow::bail!(
            "iptables -t nat -S failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    d.nat_rules = String::from_utf8_lossy(&out.stdout).into_owned();
    d.docker0 = link::exists("docker0");
    d.running = running(systemd, docker::UNIT, docker::DAEMON_JSON).await?;
    Ok(d)
}

async fn running(systemd: &Systemd, unit: &str, config: &str) -> anyhow::Result<Running> {
    let status = systemd.status(unit).await?;
    let config_changed_us = std::fs::metadata(config)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_micros() as u64);
    Ok(Running {
        state: format!("{} {}", status.active_state, status.sub_state),
        since_us: status.active_enter_timestamp,
        config_changed_us,
    })
}

/// Makes the changes, in order, each recorded for `kubejoin reset` before it is made.
pub async fn apply(
    changes: &[Change],
    systemd: &Systemd,
    recorder: &mut crate::ledger::Recorder,
) -> anyhow::Result<()> {
    use crate::ledger::Wrote;
    for (i, change) in changes.iter().enumerate() {
        tracing::info!(phase = "host", "{}", change.describe());
        crate::failpoint::hit(&format!("host:before:{i}"));
        match change {
            Change::Swapoff { path, .. } => {
                crate::sys::swapoff(path)
                    .with_context(|| format!("swapoff {} failed", path.display()))?;
            }
            Change::Edit {
                path,
                backup,
                contents,
                mode,
                ..
            } => {
                if let Some(backup) = backup {
                    let original = std::fs::read(path)
                        .with_context(|| format!("failed to read {}", path.display()))?;
                    fsutil::write_atomic(backup, &original, *mode)?;
                }
                recorder.write(
                    path,
                    contents.as_bytes(),
                    *mode,
                    Wrote::Edit,
                    Some(backup_path_of(path)),
                )?;
            }
            Change::Mask { unit, .. } => {
                recorder.masked(unit)?;
                systemd.mask(unit).await?;
            }
            Change::Write { path, contents, .. } => {
                recorder.write(path, contents.as_bytes(), 0o644, Wrote::Whole, None)?;
            }
            Change::Restart { unit, .. } => {
                systemd.start(unit, true, Duration::from_secs(60)).await?;
            }
            Change::Sysctl { key, to, .. } => {
                let path = kernel::proc_path(key);
                std::fs::write(&path, to)
                    .with_context(|| format!("failed to set {key} ({path})"))?;
            }
            Change::Iptables { args, .. } => {
                let out = std::process::Command::new("iptables")
                    .args(args)
                    .output()
                    .context("failed to run iptables")?;
                if !out.status.success() {
                    anyhow::bail!(
                        "iptables {} failed: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
            Change::Signal { unit, signal, .. } => {
                // Not running: it reads its configuration when it starts.
                if systemd.status(unit).await?.is_active() {
                    systemd.signal(unit, *signal).await?;
                } else {
                    tracing::info!(
                        phase = "host",
                        "{unit} is not running: it reads its configuration when it starts"
                    );
                }
            }
            Change::Reload { .. } => systemd.reload().await?,
            Change::Remove { path, .. } => recorder.remove(path)?,
            Change::WriteSecret { path, contents, .. } => {
                recorder.write(
                    path,
                    contents.as_str().as_bytes(),
                    0o600,
                    Wrote::Whole,
                    None,
                )?;
            }
            Change::Import {
                archive, runtime, ..
            } => images::import(runtime, archive)?,
            Change::DeleteLink { name, .. } => {
                // Planned before docker restarted; it may have gone with the restart.
                if link::exists(name) {
                    link::delete(name).with_context(|| format!("failed to delete link {name}"))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_detected_when_none_is_configured() {
        assert_eq!(detected_runtime(true, None), Runtime::Containerd);
        assert_eq!(
            detected_runtime(true, Some("unix:///run/containerd/containerd.sock")),
            Runtime::Containerd
        );
        assert_eq!(
            detected_runtime(true, Some("/run/containerd/containerd.sock")),
            Runtime::Containerd
        );
        assert_eq!(
            detected_runtime(true, Some("unix:///run/crio/crio.sock")),
            Runtime::None
        );
        assert_eq!(detected_runtime(false, None), Runtime::None);
    }

    fn facts() -> Facts {
        Facts {
            swaps: vec!["/dev/loop3".into()],
            fstab: Some(("/dev/loop3 none swap sw 0 0\n".into(), 0o644)),
            ..Default::default()
        }
    }

    /// The plan's changes, as the report shows them.
    fn described(settings: &HostSettings, f: &Facts) -> Vec<String> {
        plan(settings, f)
            .unwrap()
            .iter()
            .map(Change::describe)
            .collect()
    }

    const SWAP_ONLY: HostSettings = HostSettings {
        swap: true,
        kernel: false,
        runtime: Runtime::None,
        systemd_cgroup: true,
        swap_zram: false,
        netfilter: true,
        docker0: true,
        ipv6: false,
        inhibit_delay: None,
        proxy: None,
        sandbox_image: None,
        registries: Vec::new(),
        image_archives: None,
    };

    #[test]
    fn swap_on_everywhere() {
        let changes = plan(&SWAP_ONLY, &facts()).unwrap();
        let described: Vec<String> = changes.iter().map(Change::describe).collect();
        assert_eq!(
            described,
            [
                "swapoff /dev/loop3 (kubelet does not run with swap on)",
                "edit /etc/fstab (so that swap stays off after a reboot), original kept as /etc/fstab.kubejoin-orig",
                "MaskUnitFiles dev-loop3.swap (so that systemd does not turn the swap on again)",
            ]
        );
    }

    #[test]
    fn a_prepared_host_plans_nothing() {
        let f = Facts {
            fstab: Some((
                format!("{}/dev/loop3 none swap sw 0 0\n", swap::FSTAB_MARKER),
                0o644,
            )),
            fstab_backup_exists: true,
            masked: ["dev-loop3.swap".to_string()].into(),
            modules_file: Some(kernel::modules_file()),
            sysctl_file: Some(kernel::sysctl_file(&[])),
            sysctls: kernel::SYSCTLS
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            ..Default::default()
        };
        assert!(plan(&HostSettings::default(), &f).unwrap().is_empty());
    }

    #[test]
    fn a_run_stopped_between_the_fstab_edit_and_the_mask_masks_when_run_again() {
        let f = Facts {
            fstab: Some((
                format!("{}/dev/loop3 none swap sw 0 0\n", swap::FSTAB_MARKER),
                0o644,
            )),
            fstab_backup_exists: true,
            ..Default::default()
        };
        let changes = plan(&SWAP_ONLY, &f).unwrap();
        let described: Vec<String> = changes.iter().map(Change::describe).collect();
        assert_eq!(
            described,
            ["MaskUnitFiles dev-loop3.swap (so that systemd does not turn the swap on again)"]
        );
    }

    #[test]
    fn zram_is_left_to_its_generator_unless_configured() {
        let f = Facts {
            swaps: vec!["/dev/zram0".into()],
            ..Default::default()
        };
        assert!(plan(&SWAP_ONLY, &f).unwrap().is_empty());
        let all = HostSettings {
            swap_zram: true,
            ..SWAP_ONLY
        };
        let described = described(&all, &f);
        assert_eq!(
            described[0],
            "swapoff /dev/zram0 (kubelet does not run with swap on)"
        );
        assert!(is_zram(Path::new("/dev/zram12")));
        assert!(!is_zram(Path::new("/srv/zram.img")));
    }

    #[test]
    fn the_backup_is_made_once() {
        let mut f = facts();
        f.fstab_backup_exists = true;
        let changes = plan(&SWAP_ONLY, &f).unwrap();
        assert!(matches!(&changes[1], Change::Edit { backup: None, .. }));
    }

    #[test]
    fn turned_off_in_the_config() {
        assert!(
            plan(
                &HostSettings {
                    swap: false,
                    kernel: false,
                    runtime: Runtime::None,
                    systemd_cgroup: true,
                    swap_zram: false,
                    netfilter: true,
                    docker0: true,
                    ipv6: false,
                    inhibit_delay: None,
                    proxy: None,
                    sandbox_image: None,
                    registries: Vec::new(),
                    image_archives: None,
                },
                &facts()
            )
            .unwrap()
            .is_empty()
        );
    }

    fn docker_facts() -> DockerFacts {
        DockerFacts {
            installed: true,
            args: vec!["/usr/sbin/dockerd".into(), "-H".into(), "fd://".into()],
            daemon_json: None,
            daemon_json_backup_exists: false,
            nat_rules: "-P POSTROUTING ACCEPT\n-N DOCKER\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n".into(),
            docker0: true,
            running: up(),
        }
    }

    /// Running since after its configuration last changed.
    fn up() -> Running {
        Running {
            state: "active running".into(),
            since_us: 2_000,
            config_changed_us: Some(1_000),
        }
    }

    const DOCKER: HostSettings = HostSettings {
        swap: false,
        kernel: false,
        runtime: Runtime::Docker,
        systemd_cgroup: true,
        swap_zram: false,
        netfilter: true,
        docker0: true,
        ipv6: false,
        inhibit_delay: None,
        proxy: None,
        sandbox_image: None,
        registries: Vec::new(),
        image_archives: None,
    };

    #[test]
    fn docker_without_its_bridge_iptables_or_masquerading() {
        let f = Facts {
            docker: Some(docker_facts()),
            ..Default::default()
        };
        let described = described(&DOCKER, &f);
        assert_eq!(
            described,
            [
                "write /etc/docker/daemon.json (docker without its bridge, iptables rules or masquerading (kubelet's network plugin owns them), with kubelet's cgroup driver)",
                "RestartUnit docker.service replace (to take the settings in daemon.json)",
                "iptables -t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE (docker's nat leftovers (what `iptables -t nat -F` would flush))",
                "iptables -t nat -F DOCKER (docker's nat leftovers (what `iptables -t nat -F` would flush))",
                "iptables -t nat -X DOCKER (docker's nat leftovers (what `iptables -t nat -F` would flush))",
                "delete link docker0 (docker runs with --bridge=none now)",
            ]
        );
        // An existing daemon.json is edited with a backup, its other settings kept.
        let mut d = docker_facts();
        d.daemon_json = Some(("{\"log-driver\": \"journald\"}\n".into(), 0o600));
        let changes = plan(
            &DOCKER,
            &Facts {
                docker: Some(d),
                ..Default::default()
            },
        )
        .unwrap();
        let Change::Edit {
            contents,
            backup,
            mode,
            ..
        } = &changes[0]
        else {
            panic!("{changes:?}")
        };
        assert!(
            contents.starts_with(
                "{\n  \"log-driver\": \"journald\",\n  \"exec-opts\": [\n    \"native.cgroupdriver=systemd\"\n  ],\n  \"bridge\": \"none\""
            ),
            "{contents}"
        );
        assert_eq!(
            backup.as_deref(),
            Some(Path::new("/etc/docker/daemon.json.kubejoin-orig"))
        );
        assert_eq!(*mode, 0o600);
    }

    #[test]
    fn netfilter_and_docker0_can_be_left_alone() {
        let settings = HostSettings {
            netfilter: false,
            docker0: false,
            ..DOCKER
        };
        let f = Facts {
            docker: Some(docker_facts()),
            ..Default::default()
        };
        let changes = plan(&settings, &f).unwrap();
        assert_eq!(
            changes.len(),
            2,
            "daemon.json and the restart only: {changes:?}"
        );
    }

    /// docker as kubejoin leaves it, running as `running` says.
    fn prepared_docker(running: Running) -> Facts {
        Facts {
            docker: Some(DockerFacts {
                installed: true,
                args: vec!["/usr/sbin/dockerd".into()],
                daemon_json: Some((
                    "{\n  \"exec-opts\": [\"native.cgroupdriver=systemd\"],\n  \"bridge\": \"none\",\n  \"iptables\": false,\n  \"ip-masq\": false\n}\n"
                        .into(),
                    0o644,
                )),
                daemon_json_backup_exists: false,
                nat_rules: "-P POSTROUTING ACCEPT\n".into(),
                docker0: false,
                running,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn docker_prepared_plans_nothing() {
        assert!(plan(&DOCKER, &prepared_docker(up())).unwrap().is_empty());
    }

    #[test]
    fn a_prepared_runtime_that_is_down_or_runs_an_older_config_is_restarted() {
        let restart = |running: Running| {
            let changes = plan(&DOCKER, &prepared_docker(running)).unwrap();
            match changes.as_slice() {
                [] => None,
                [Change::Restart { unit, why }] if unit == "docker.service" => Some(why.clone()),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(restart(up()), None);
        // A restart that failed (a bad drop-in), or a run killed before its restart.
        let failed = Running {
            state: "failed failed".into(),
            ..up()
        };
        assert_eq!(
            restart(failed).as_deref(),
            Some("it is failed failed, and kubelet needs it running")
        );
        let stale = Running {
            config_changed_us: Some(3_000),
            ..up()
        };
        assert_eq!(
            restart(stale).as_deref(),
            Some(
                "it runs with an older /etc/docker/daemon.json: it started before the file last changed"
            )
        );

        let mut config = String::new();
        let containerd = |running: Running, config: &str| Facts {
            containerd: Some(ContainerdFacts {
                installed: true,
                config: Some((config.into(), 0o644)),
                config_backup_exists: true,
                running,
                ..Default::default()
            }),
            ..Default::default()
        };
        let settings = HostSettings {
            runtime: Runtime::Containerd,
            netfilter: false,
            docker0: false,
            ..DOCKER
        };
        // The configuration kubejoin writes, then that configuration, running.
        for change in plan(&settings, &containerd(up(), "version = 2\n")).unwrap() {
            if let Change::Edit { contents, .. } = change {
                config = contents;
            }
        }
        assert!(
            plan(&settings, &containerd(up(), &config))
                .unwrap()
                .is_empty()
        );
        let down = Running {
            state: "inactive dead".into(),
            ..up()
        };
        assert!(matches!(
            plan(&settings, &containerd(down, &config)).unwrap().as_slice(),
            [Change::Restart { unit, .. }] if unit == "containerd.service"
        ));
    }

    #[test]
    fn docker_problems_are_errors_with_a_fix() {
        let missing = Facts {
            docker: Some(DockerFacts::default()),
            ..Default::default()
        };
        assert_eq!(
            plan(&DOCKER, &missing).unwrap_err(),
            PlanError::DockerMissing
        );
        let mut d = docker_facts();
        d.args.push("--iptables=true".into());
        let e = plan(
            &DOCKER,
            &Facts {
                docker: Some(d),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.fix().contains("DOCKER_OPTS"), "{}", e.fix());
        let mut d = docker_facts();
        d.daemon_json = Some(("[1]".into(), 0o644));
        assert!(matches!(
            plan(
                &DOCKER,
                &Facts {
                    docker: Some(d),
                    ..Default::default()
                }
            ),
            Err(PlanError::DaemonJson(_))
        ));
    }

    #[test]
    fn containerd_gets_cri_and_the_systemd_cgroup_driver() {
        let settings = HostSettings {
            swap: false,
            kernel: false,
            runtime: Runtime::Containerd,
            systemd_cgroup: true,
            swap_zram: false,
            netfilter: true,
            docker0: true,
            ipv6: false,
            inhibit_delay: None,
            proxy: None,
            sandbox_image: None,
            registries: Vec::new(),
            image_archives: None,
        };
        let f = Facts {
            containerd: Some(ContainerdFacts {
                installed: true,
                config: Some(("version = 2\ndisabled_plugins = [\"cri\"]\n".into(), 0o644)),
                config_backup_exists: false,
                running: up(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let described = described(&settings, &f);
        assert_eq!(
            described,
            [
                "edit /etc/containerd/config.toml (the CRI plugin on and runc's cgroup driver matching kubelet's), original kept as /etc/containerd/config.toml.kubejoin-orig",
                "RestartUnit containerd.service replace (to take its new configuration)",
            ]
        );
        let missing = Facts {
            containerd: Some(ContainerdFacts::default()),
            ..Default::default()
        };
        assert_eq!(
            plan(&settings, &missing).unwrap_err(),
            PlanError::ContainerdMissing
        );
    }

    #[test]
    fn a_proxy_goes_to_the_runtime_and_kubelet_and_the_runtime_restarts_once() {
        let env = proxy::complete(
            &proxy::Proxy {
                http: None,
                https: Some("http://proxy:3128".into()),
                no_proxy: Vec::new(),
            },
            &[],
            &[],
        );
        let settings = HostSettings {
            swap: false,
            kernel: false,
            runtime: Runtime::Containerd,
            proxy: Some(env.clone()),
            ..Default::default()
        };
        let configured = || ContainerdFacts {
            installed: true,
            config: Some((
                containerd::plan_config(Some("version = 2\n"), &containerd::Wants::cgroup(true))
                    .unwrap()
                    .unwrap(),
                0o644,
            )),
            config_backup_exists: false,
            running: up(),
            ..Default::default()
        };
        let f = Facts {
            containerd: Some(configured()),
            ..Default::default()
        };
        assert_eq!(
            described(&settings, &f),
            [
                "write /etc/systemd/system/containerd.service.d/90-kubejoin-proxy.conf (the proxy for the internet, and what never goes through it)",
                "write /etc/systemd/system/kubelet.service.d/90-kubejoin-proxy.conf (the proxy for the internet, and what never goes through it)",
                "Reload (systemd reads the proxy drop-ins)",
                "RestartUnit containerd.service replace (to take its proxy)",
            ]
        );
        // In place: nothing.
        let done = Facts {
            containerd: Some(configured()),
            proxy_drop_ins: ["containerd.service", "kubelet.service"]
                .iter()
                .map(|u| (u.to_string(), Some(proxy::drop_in(&env))))
                .collect(),
            ..Default::default()
        };
        assert!(described(&settings, &done).is_empty());
        // The runtime's configuration changes too: one restart.
        let mut edited = configured();
        edited.config = Some(("version = 2\n".into(), 0o644));
        let both = described(
            &settings,
            &Facts {
                containerd: Some(edited),
                ..Default::default()
            },
        );
        assert_eq!(
            both.iter().filter(|c| c.starts_with("RestartUnit")).count(),
            1,
            "{both:?}"
        );
    }

    #[test]
    fn a_proxy_drop_in_and_a_registry_no_longer_configured_are_removed() {
        let settings = HostSettings {
            swap: false,
            kernel: false,
            runtime: Runtime::Containerd,
            ..Default::default()
        };
        let aligned = || ContainerdFacts {
            installed: true,
            config: Some((
                containerd::plan_config(Some("version = 2\n"), &containerd::Wants::cgroup(true))
                    .unwrap()
                    .unwrap(),
                0o644,
            )),
            running: up(),
            ..Default::default()
        };
        let f = Facts {
            containerd: Some(aligned()),
            created: vec![
                "/etc/systemd/system/containerd.service.d/90-kubejoin-proxy.conf".into(),
                "/etc/systemd/system/kubelet.service.d/90-kubejoin-proxy.conf".into(),
                "/etc/containerd/certs.d/docker.io/hosts.toml".into(),
                "/var/lib/kubelet/config.yaml".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            described(&settings, &f),
            [
                "remove /etc/systemd/system/containerd.service.d/90-kubejoin-proxy.conf ([proxy] no longer gives this unit a proxy)",
                "remove /etc/systemd/system/kubelet.service.d/90-kubejoin-proxy.conf ([proxy] no longer gives this unit a proxy)",
                "remove /etc/containerd/certs.d/docker.io/hosts.toml (its registry is no longer in [registries])",
                "Reload (systemd reads the units without the proxy drop-in)",
                "RestartUnit containerd.service replace (to run without the proxy)",
            ]
        );
    }

    fn corp_registry() -> registry::Registry {
        registry::Registry {
            name: "registry.k8s.io".into(),
            mirrors: vec!["https://mirror.corp:5000".into()],
            ca: Some("/etc/kubejoin/corp-ca.pem".into()),
            credentials: None,
        }
    }

    #[test]
    fn registries_and_the_sandbox_image_go_to_containerd() {
        let settings = HostSettings {
            swap: false,
            kernel: false,
            runtime: Runtime::Containerd,
            sandbox_image: Some("registry.k8s.io/pause:3.10".into()),
            registries: vec![corp_registry()],
            ..Default::default()
        };
        let hosts = PathBuf::from("/etc/containerd/certs.d/registry.k8s.io/hosts.toml");
        let facts = |hosts_text: Option<String>, config: String| Facts {
            containerd: Some(ContainerdFacts {
                installed: true,
                config: Some((config, 0o644)),
                running: up(),
                hosts_files: vec![HostsFile {
                    registry: "registry.k8s.io".into(),
                    path: hosts.clone(),
                    current: hosts_text.map(|t| (t, 0o644)),
                    backup_exists: false,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let changes = plan(&settings, &facts(None, "version = 2\n".into())).unwrap();
        let said: Vec<String> = changes.iter().map(Change::describe).collect();
        assert_eq!(
            said,
            [
                "write /etc/containerd/certs.d/registry.k8s.io/hosts.toml (the registry's mirrors and CA, for containerd)",
                "edit /etc/containerd/config.toml (the CRI plugin on, runc's cgroup driver matching kubelet's, the sandbox image, and registries read from hosts.toml), original kept as /etc/containerd/config.toml.kubejoin-orig",
                "RestartUnit containerd.service replace (to take its new configuration)",
            ]
        );
        let Change::Edit { contents, .. } = &changes[1] else {
            panic!()
        };
        // Once in place: nothing; the hosts.toml alone changed: no restart.
        let done = facts(
            Some(registry::hosts_toml(&corp_registry())),
            contents.clone(),
        );
        assert!(described(&settings, &done).is_empty());
        let stale = facts(Some("server = \"x\"\n".into()), contents.clone());
        let said = described(&settings, &stale);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("edit /etc/containerd/certs.d/registry.k8s.io/hosts.toml"));
        // A CA that is not there stops the plan.
        let mut missing = facts(None, contents.clone());
        missing.containerd.as_mut().unwrap().missing_cas = vec!["/etc/kubejoin/corp-ca.pem".into()];
        let e = plan(&settings, &missing).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[registries.\"registry.k8s.io\"] ca = \"/etc/kubejoin/corp-ca.pem\" does not exist"
        );
    }

    #[test]
    fn registry_credentials_go_to_kubelet_and_are_never_shown() {
        let mut corp = corp_registry();
        corp.credentials = Some("/etc/kubejoin/corp.credentials".into());
        let settings = HostSettings {
            swap: false,
            kernel: false,
            runtime: Runtime::Containerd,
            registries: vec![corp],
            ..Default::default()
        };
        let aligned = containerd::plan_config(
            Some("version = 2\n"),
            &containerd::Wants {
                systemd_cgroup: true,
                sandbox_image: None,
                registries: true,
            },
        )
        .unwrap()
        .unwrap();
        let mut f = Facts {
            containerd: Some(ContainerdFacts {
                installed: true,
                config: Some((aligned, 0o644)),
                running: up(),
                hosts_files: vec![HostsFile {
                    registry: "registry.k8s.io".into(),
                    path: "/etc/containerd/certs.d/registry.k8s.io/hosts.toml".into(),
                    current: Some((registry::hosts_toml(&corp_registry()), 0o644)),
                    backup_exists: false,
                }],
                ..Default::default()
            }),
            credentials: vec![(
                "registry.k8s.io".into(),
                Ok(registry::Secret::new("robot:s3cret\n".into())),
            )],
            ..Default::default()
        };
        let changes = plan(&settings, &f).unwrap();
        assert_eq!(
            changes.iter().map(Change::describe).collect::<Vec<_>>(),
            [
                "write /var/lib/kubelet/config.json (registry credentials, for kubelet's image pulls; mode 0600, contents not shown)"
            ]
        );
        let shown = format!("{changes:?}{}", serde_json::to_string(&changes).unwrap());
        assert!(
            !shown.contains("s3cret") && !shown.contains("cm9ib3Q6czNjcmV0"),
            "{shown}"
        );
        // In place: nothing; readable by others: written again (0600).
        let Change::WriteSecret { contents, .. } = &changes[0] else {
            panic!()
        };
        f.kubelet_auth = Some((contents.clone(), 0o600));
        assert!(plan(&settings, &f).unwrap().is_empty());
        f.kubelet_auth = Some((contents.clone(), 0o644));
        assert_eq!(plan(&settings, &f).unwrap().len(), 1);
        // Someone else's entries stay in a file that was there before kubejoin; in the
        // file kubejoin created, only the registries of the settings are left.
        let theirs = "{\"auths\":{\"quay.io\":{\"auth\":\"eDp5\"}}}\n";
        f.kubelet_auth = Some((registry::Secret::new(theirs.into()), 0o600));
        let [Change::WriteSecret { contents, .. }] = &plan(&settings, &f).unwrap()[..] else {
            panic!()
        };
        assert!(
            contents.as_str().contains("quay.io") && contents.as_str().contains("registry.k8s.io")
        );
        f.created = vec![registry::KUBELET_AUTH.into()];
        let [Change::WriteSecret { contents, .. }] = &plan(&settings, &f).unwrap()[..] else {
            panic!()
        };
        assert!(!contents.as_str().contains("quay.io"));
        f.created.clear();
        // A file readable by others stops the plan, without its contents.
        f.credentials[0].1 =
            Err("it holds a password but is readable by group or others (mode 0644)".into());
        let e = plan(&settings, &f).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[registries.\"registry.k8s.io\"] credentials_file = \"/etc/kubejoin/corp.credentials\" cannot be used: it holds a password but is readable by group or others (mode 0644)"
        );
        assert!(
            e.fix()
                .ends_with("chmod 600 /etc/kubejoin/corp.credentials")
        );
        // No credentials any more: kubejoin's file goes.
        let none = HostSettings {
            registries: vec![corp_registry()],
            ..settings.clone()
        };
        f.credentials.clear();
        f.kubelet_auth = None;
        f.created = vec![registry::KUBELET_AUTH.into()];
        assert_eq!(
            plan(&none, &f)
                .unwrap()
                .iter()
                .map(Change::describe)
                .collect::<Vec<_>>(),
            [
                "remove /var/lib/kubelet/config.json (no registry in [registries] has credentials any more)"
            ]
        );
    }

    #[test]
    fn registries_and_images_need_a_runtime_kubejoin_configures() {
        for (runtime, what) in [
            (Runtime::None, "[registries]"),
            (Runtime::Detect, "[registries]"),
            (Runtime::Docker, "[registries]"),
        ] {
            let settings = HostSettings {
                swap: false,
                kernel: false,
                runtime,
                registries: vec![corp_registry()],
                ..Default::default()
            };
            let f = Facts {
                docker: Some(DockerFacts {
                    installed: true,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let e = plan(&settings, &f).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{what} is set, but")),
                "{e}"
            );
            assert!(e.fix().contains("container_runtime = \"containerd\""));
        }
        let settings = HostSettings {
            swap: false,
            kernel: false,
            runtime: Runtime::None,
            image_archives: Some("/var/lib/kubejoin/images".into()),
            ..Default::default()
        };
        let e = plan(&settings, &Facts::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("[host] image_archives is set, but kubejoin leaves"),
            "{e}"
        );
    }

    #[test]
    fn archives_are_imported_after_the_runtime_restarts_sandbox_first() {
        let settings = HostSettings {
            swap: false,
            kernel: false,
            runtime: Runtime::Containerd,
            sandbox_image: Some("kubejoin.test/pause:1".into()),
            image_archives: Some("/images".into()),
            ..Default::default()
        };
        let mut f = Facts {
            containerd: Some(ContainerdFacts {
                installed: true,
                config: Some(("version = 2\n".into(), 0o644)),
                running: up(),
                ..Default::default()
            }),
            archives: vec![
                (
                    "/images/app.tar".into(),
                    Ok(vec!["kubejoin.test/app:1".into()]),
                ),
                (
                    "/images/pause.tar".into(),
                    Ok(vec!["kubejoin.test/pause:1".into()]),
                ),
            ],
            ..Default::default()
        };
        let said = described(&settings, &f);
        assert_eq!(
            &said[1..],
            [
                "RestartUnit containerd.service replace (to take its new configuration)",
                "import /images/pause.tar into containerd (kubejoin.test/pause:1)",
                "import /images/app.tar into containerd (kubejoin.test/app:1)",
            ]
        );
        f.images_present = vec!["kubejoin.test/app:1".into(), "kubejoin.test/pause:1".into()];
        assert_eq!(described(&settings, &f).len(), 2, "nothing to import");
        f.archives
            .push(("/images/bad.tar".into(), Err("it has no index.json".into())));
        let e = plan(&settings, &f).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/images/bad.tar is not an image archive kubejoin can import: it has no index.json"
        );
        f.archives.pop();
        f.archives_unreadable = Some("No such file or directory (os error 2)".into());
        assert!(
            plan(&settings, &f)
                .unwrap_err()
                .fix()
                .starts_with("create the directory")
        );
    }

    #[test]
    fn kernel_prerequisites() {
        let settings = HostSettings {
            swap: false,
            kernel: true,
            runtime: Runtime::None,
            systemd_cgroup: true,
            swap_zram: false,
            netfilter: true,
            docker0: true,
            ipv6: false,
            inhibit_delay: None,
            proxy: None,
            sandbox_image: None,
            registries: Vec::new(),
            image_archives: None,
        };
        // A fresh host: no files, br_netfilter missing (its sysctls with it), no forwarding.
        let f = Facts {
            missing_modules: vec!["br_netfilter"],
            sysctls: vec![
                ("net.ipv4.ip_forward".into(), Some("0".into())),
                ("net.bridge.bridge-nf-call-iptables".into(), None),
                ("net.bridge.bridge-nf-call-ip6tables".into(), None),
            ],
            ..Default::default()
        };
        let described = described(&settings, &f);
        assert_eq!(
            described,
            [
                "write /etc/modules-load.d/kubejoin.conf (load overlay and br_netfilter at every boot)",
                "write /etc/sysctl.d/90-kubejoin.conf (forwarding and bridge netfilter at every boot)",
                "RestartUnit systemd-modules-load.service replace (load br_netfilter now)",
                "sysctl net.ipv4.ip_forward = 1 (now 0)",
                "sysctl net.bridge.bridge-nf-call-iptables = 1 (now unset)",
                "sysctl net.bridge.bridge-nf-call-ip6tables = 1 (now unset)",
            ]
        );
        // Everything loaded and set but a sysctl key that does not exist: left alone.
        let f = Facts {
            modules_file: Some(kernel::modules_file()),
            sysctl_file: Some(kernel::sysctl_file(&[])),
            sysctls: vec![
                ("net.ipv4.ip_forward".into(), Some("1".into())),
                (
                    "net.bridge.bridge-nf-call-iptables".into(),
                    Some("1".into()),
                ),
                ("net.bridge.bridge-nf-call-ip6tables".into(), None),
            ],
            ..Default::default()
        };
        assert!(plan(&settings, &f).unwrap().is_empty());
    }

    #[test]
    fn an_ipv6_node_keeps_router_advertisements_before_it_forwards() {
        let settings = HostSettings {
            swap: false,
            ipv6: true,
            ..Default::default()
        };
        let every_node = kernel::SYSCTLS
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())));
        let f = Facts {
            modules_file: Some(kernel::modules_file()),
            sysctl_file: Some(kernel::sysctl_file(&[])),
            ra_links: vec!["ens3".into()],
            sysctls: every_node
                .chain([
                    ("net.ipv6.conf.ens3.accept_ra".into(), Some("1".into())),
                    ("net.ipv6.conf.all.forwarding".into(), Some("0".into())),
                ])
                .collect(),
            ..Default::default()
        };
        let described = described(&settings, &f);
        assert_eq!(
            described,
            [
                "write /etc/sysctl.d/90-kubejoin.conf (forwarding and bridge netfilter at every boot)",
                "sysctl net.ipv6.conf.ens3.accept_ra = 2 (now 1)",
                "sysctl net.ipv6.conf.all.forwarding = 1 (now 0)",
            ]
        );
    }

    #[test]
    fn logind_lets_kubelet_delay_a_shutdown_by_its_grace_period() {
        let settings = HostSettings {
            swap: false,
            kernel: false,
            inhibit_delay: Some(std::time::Duration::from_secs(45)),
            proxy: None,
            ..Default::default()
        };
        assert_eq!(
            described(&settings, &Facts::default()),
            [
                "write /etc/systemd/logind.conf.d/90-kubejoin.conf (logind lets kubelet delay a shutdown by its shutdownGracePeriod)",
                "KillUnit systemd-logind.service main signal 1 (logind reads its configuration again)",
            ]
        );
        let written = Facts {
            logind_drop_in: Some(logind::drop_in(std::time::Duration::from_secs(45))),
            ..Default::default()
        };
        assert!(plan(&settings, &written).unwrap().is_empty());
    }
}
