//! `kubejoin run`: discovery, then kubelet's files, then kubelet started over D-Bus, each
//! phase reported to stdout, the journal and systemd (`STATUS=`). Everything it changes
//! is planned first ([`plan`]); `--dry-run` prints the plan and changes nothing.

pub mod plan;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::config::{ConfigError, Origin, Settings};
use crate::discovery::{self, Discovered};
use crate::failure::Failure;
use crate::host;
use crate::kubeconfig;
use crate::kubelet::files::{self as unit, KUBELET_UNIT};
use crate::kubelet::{
    self, fatal,
    profile::{Cri, Profile},
    ready,
    version::Version,
};
use crate::preflight;
use crate::systemd::dbus::{Systemd, UnitStatus};
use crate::systemd::notify::Notifier;
use plan::{CurrentFile, DesiredFile, Facts, Plan, SystemdAction};

pub const STATE_FILE: &str = "/var/lib/kubejoin/state.json";

#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: &'static str,
    pub ms: u128,
}

/// What a run did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `joined`, `unchanged`, `already-joined` or `dry-run`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preflight: Vec<preflight::Check>,
    /// Host preparation: what changed (or would).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host: Vec<host::Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Discovered>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<UnitStatus>,
    /// What the node said when the join ended: the node is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeIn>,
    pub phases: Vec<PhaseTime>,
    /// Seconds since the epoch when the run finished.
    pub finished: u64,
}

/// The three things that make a node joined, each with the Unix time it was first seen.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NodeIn {
    pub name: String,
    /// kubelet's version, as `kubelet --version` printed it.
    pub kubelet_version: String,
    /// kubelet's health endpoint answered `ok`.
    pub healthz: u64,
    /// kubelet's client certificate, issued by the cluster CA.
    pub certificate: u64,
    pub certificate_path: String,
    pub certificate_not_after: String,
    /// The Node object, read with kubelet's own credentials.
    pub registered: u64,
}

struct Phases {
    notifier: Notifier,
    times: Vec<PhaseTime>,
    current: Option<(&'static str, Instant)>,
}

impl Phases {
    fn start(&mut self, phase: &'static str, status: &str) {
        self.end();
        crate::failpoint::hit(&format!("phase:{phase}"));
        tracing::info!(phase, "{status}");
        self.notifier.status(status);
        self.current = Some((phase, Instant::now()));
    }

    fn end(&mut self) {
        if let Some((phase, started)) = self.current.take() {
            let ms = started.elapsed().as_millis();
            tracing::info!(phase, elapsed_ms = ms as u64, "phase {phase} took {ms} ms");
            self.times.push(PhaseTime { phase, ms });
        }
    }
}

/// kubelet has a client certificate: TLS bootstrap is done.
fn tls_bootstrapped() -> bool {
    std::fs::read_to_string(unit::KUBELET_KUBECONFIG)
        .is_ok_and(|k| k.contains("client-certificate"))
}

fn read_current(path: &Path) -> anyhow::Result<Option<CurrentFile>> {
    match std::fs::read(path) {
        Ok(contents) => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            Ok(Some(CurrentFile { contents, mode }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// The files kubelet starts from, as they should be after discovery.
fn desired_files(settings: &Settings, found: &Discovered, profile: &Profile) -> Vec<DesiredFile> {
    let bootstrap =
        kubeconfig::render_bootstrap(&found.server, &found.ca_pem, &settings.cluster.token);
    vec![
        DesiredFile {
            path: unit::BOOTSTRAP_KUBECONFIG.into(),
            contents: bootstrap.as_bytes().to_vec(),
            mode: 0o600,
            secret: true,
            purpose: "bootstrap kubeconfig (holds the token; never shown)",
            restarts_kubelet: true,
            is_unit: false,
        },
        DesiredFile {
            path: unit::CLUSTER_CA.into(),
            contents: found.ca_pem.clone(),
            mode: 0o644,
            secret: false,
            purpose: "cluster CA, for kubelet's client-certificate authentication",
            restarts_kubelet: true,
            is_unit: false,
        },
        DesiredFile {
            path: unit::KUBELET_CONFIG.into(),
            contents: unit::kubelet_config(&settings.kubelet, profile).into_bytes(),
            mode: 0o644,
            secret: false,
            purpose: "KubeletConfiguration",
            restarts_kubelet: true,
            is_unit: false,
        },
        DesiredFile {
            path: unit::KUBELET_UNIT_PATH.into(),
            contents: unit::kubelet_unit(&settings.kubelet, profile).into_bytes(),
            mode: 0o644,
            secret: false,
            purpose: "kubelet's systemd unit",
            restarts_kubelet: true,
            is_unit: true,
        },
    ]
}

/// kubelet's version and what it needs on this node.
pub struct NodeKubelet {
    pub version: Result<Version, String>,
    pub profile: Option<Profile>,
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

/// Runs the preflight checks; errors stop a real run, a dry run only reports them.
fn preflight(
    settings: &Settings,
    node: &NodeKubelet,
    kubelet_active: bool,
    ignore: &[String],
    dry_run: bool,
) -> Result<Vec<preflight::Check>, Failure> {
    let facts = preflight::inspect(
        &settings.kubelet,
        &node.version,
        node.profile.as_ref(),
        settings.host.swap,
        settings.host.swap_zram,
        Ok(()),
        kubelet_active,
    );
    let checks = preflight::evaluate(&facts, &settings.kubelet, ignore);
    for c in checks.iter().filter(|c| !c.ok) {
        let fix = c.fix.as_deref().unwrap_or_default();
        match c.severity {
            preflight::Severity::Error => {
                tracing::error!(
                    phase = "preflight",
                    check = c.name,
                    "{}: {}; fix: {fix}",
                    c.name,
                    c.message
                )
            }
            preflight::Severity::Warning => {
                tracing::warn!(
                    phase = "preflight",
                    check = c.name,
                    "{}: {}; fix: {fix}",
                    c.name,
                    c.message
                )
            }
        }
    }
    match preflight::stop(&checks) {
        Some(failure) if !dry_run => Err(failure),
        _ => Ok(checks),
    }
}

/// How long a joined node's kubelet may take to become active at boot.
const KUBELET_SETTLE: Duration = Duration::from_secs(90);

/// At boot, kubelet.service may still be starting, or waiting to be restarted (its
/// runtime not up yet), when kubejoin starts: on a node that has joined (kubelet's client
/// certificate and kubejoin's record on disk), wait for it a while before deciding, so
/// that a reboot does not take the join path with a token the cluster may have deleted.
async fn kubelet_settled(systemd: &Systemd, status: UnitStatus) -> Result<UnitStatus, Failure> {
    let joined = tls_bootstrapped() && Path::new(STATE_FILE).exists();
    if !joined || status.active_state != "activating" {
        return Ok(status);
    }
    tracing::info!(
        phase = "preflight",
        "kubelet.service is {} {}: waiting up to {}s for it on this joined node",
        status.active_state,
        status.sub_state,
        KUBELET_SETTLE.as_secs()
    );
    let deadline = Instant::now() + KUBELET_SETTLE;
    let mut status = status;
    while status.active_state == "activating" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        status = systemd.status(KUBELET_UNIT).await?;
    }
    Ok(status)
}

/// Runs the join. The settings are loaded only when there is something to join: a
/// joined node is left alone even when its token has expired or been deleted since.
pub async fn run(
    load: impl FnOnce() -> Result<Settings, Failure>,
    ignore_preflight: &[String],
    dry_run: bool,
) -> Result<Report, Failure> {
    let mut phases = Phases {
        notifier: Notifier::from_env(),
        times: Vec::new(),
        current: None,
    };
    phases.start("preflight", "checking this host");
    let systemd = Systemd::connect().await?;
    let kubelet = kubelet_settled(&systemd, systemd.status(KUBELET_UNIT).await?).await?;

    if tls_bootstrapped() && kubelet.is_active() && !dry_run && !Path::new(STATE_FILE).exists() {
        return finish_interrupted(load()?, &systemd, phases, kubelet).await;
    }
    if tls_bootstrapped() && kubelet.is_active() {
        phases.end();
        let report = Report {
            outcome: "already-joined",
            preflight: Vec::new(),
            host: Vec::new(),
            discovery: None,
            plan: None,
            kubelet: Some(kubelet),
            node: None,
            phases: phases.times,
            finished: now(),
        };
        if !dry_run {
            phases
                .notifier
                .ready("already joined: kubelet.service is active with its client certificate");
        }
        return Ok(report);
    }
    let mut settings = load()?;
    resolve_runtime(&mut settings, &systemd).await?;
    let settings = &settings;
    let node = node_kubelet(settings)?;
    let checks = preflight(
        settings,
        &node,
        kubelet.is_active(),
        ignore_preflight,
        dry_run,
    )?;
    let (Ok(version), Some(profile)) = (&node.version, &node.profile) else {
        return Err(Failure::NeedsPerson {
            message: format!(
                "kubelet's version is needed to write its configuration: {}",
                node.version
                    .as_ref()
                    .err()
                    .map(String::as_str)
                    .unwrap_or("unknown")
            ),
            fix: format!(
                "install kubelet at {} (or set [kubelet] binary) so that `kubelet --version` works",
                settings.kubelet.binary.display()
            ),
        });
    };

    runtime_left_alone_agrees(settings, profile)?;

    phases.start(
        "host",
        "preparing this host: swap, kernel prerequisites, container runtime",
    );
    let host_facts = host::inspect(&settings.host, &systemd).await?;
    let host_changes =
        host::plan(&settings.host, &host_facts).map_err(|e| Failure::NeedsPerson {
            fix: e.fix(),
            message: e.to_string(),
        })?;
    let mut recorder = if dry_run {
        None
    } else {
        Some(crate::ledger::Recorder::open(Path::new(
            crate::ledger::LEDGER,
        ))?)
    };
    if let Some(recorder) = recorder.as_mut() {
        host::apply(&host_changes, &systemd, recorder).await?;
    }

    let servers: Vec<String> = settings
        .cluster
        .servers
        .iter()
        .map(|s| s.to_string())
        .collect();
    phases.start(
        "discovery",
        &format!("discovering the cluster at {}", servers.join(", ")),
    );
    let found = discovery::discover(&settings.cluster).await?;

    let api = apiserver_version(&found).await;
    if let Some((api, why)) = api.and_then(|a| kubelet::version::skew(version, &a).map(|w| (a, w)))
    {
        let ignored = ignore_preflight
            .iter()
            .any(|i| i.eq_ignore_ascii_case("all") || i.eq_ignore_ascii_case("KubeletVersionSkew"));
        tracing::warn!(phase = "discovery", check = "KubeletVersionSkew", "{why}");
        if !ignored && !dry_run {
            return Err(Failure::NeedsPerson {
                message: why,
                fix: format!(
                    "install a kubelet no newer than the API server {api} and at most three minor \
                     versions older (or skip this check with --ignore-preflight-errors=KubeletVersionSkew)"
                ),
            });
        }
    }

    phases.start("plan", "planning kubelet's files and unit");
    let desired = desired_files(settings, &found, profile);
    let facts = Facts {
        missing_dirs: [unit::STATIC_POD_PATH]
            .iter()
            .map(std::path::PathBuf::from)
            .filter(|d| !d.is_dir())
            .collect(),
        files: desired
            .iter()
            .map(|d| read_current(&d.path))
            .collect::<anyhow::Result<_>>()?,
        kubelet_enabled: systemd.is_enabled(KUBELET_UNIT).await?,
        kubelet_active: kubelet.is_active(),
    };
    let plan = plan::plan(&desired, &facts, KUBELET_UNIT);
    if dry_run {
        phases.end();
        return Ok(Report {
            outcome: "dry-run",
            preflight: checks,
            host: host_changes,
            discovery: Some(found),
            plan: Some(plan),
            kubelet: Some(kubelet),
            node: None,
            phases: phases.times,
            finished: now(),
        });
    }

    phases.start(
        "files",
        "writing kubelet's bootstrap kubeconfig and configuration",
    );
    let recorder = recorder
        .as_mut()
        .expect("a run that is not a dry run records its changes");
    for dir in &plan.dirs {
        recorder.make_dir(dir)?;
        tracing::info!(phase = "files", path = %dir.display(), "created directory {}", dir.display());
    }
    for (want, change) in desired.iter().zip(&plan.files) {
        if change.action != plan::FileAction::Unchanged {
            recorder.write(
                &want.path,
                &want.contents,
                want.mode,
                crate::ledger::Wrote::Whole,
                None,
            )?;
            tracing::info!(phase = "files", path = %want.path.display(), action = ?change.action, "wrote {} ({:?}, mode {})", want.path.display(), change.action, change.mode);
        }
    }

    phases.start("kubelet", "starting kubelet.service");
    let waits = &settings.kubelet_waits;
    let mut status = kubelet;
    for action in &plan.systemd {
        tracing::info!(phase = "kubelet", call = ?action, "systemd: {action:?}");
        match action {
            SystemdAction::Reload { .. } => {
                systemd.reload().await?;
                crate::failpoint::hit("kubelet:reloaded");
            }
            SystemdAction::Enable { unit } => {
                recorder.enabled(unit)?;
                systemd.enable(unit).await?;
                crate::failpoint::hit("kubelet:enabled");
            }
            SystemdAction::Start { unit } | SystemdAction::Restart { unit, .. } => {
                let restart = matches!(action, SystemdAction::Restart { .. });
                status = match systemd.start(unit, restart, waits.start_timeout).await {
                    Ok(s) => s,
                    Err(crate::systemd::dbus::SystemdError::NotActive { status, .. }) => {
                        return Err(kubelet_exited(&status, status.invocation_id.as_deref()).await);
                    }
                    Err(e) => return Err(e.into()),
                };
            }
        }
    }
    let node_in = wait_until_in(
        &systemd,
        &mut phases,
        status.clone(),
        &found.ca_pem,
        version,
        Instant::now() + waits.join_timeout,
    )
    .await?;
    phases.end();
    let outcome = if plan.is_empty() && host_changes.is_empty() {
        "unchanged"
    } else {
        "joined"
    };
    let report = Report {
        outcome,
        preflight: checks,
        host: host_changes,
        discovery: Some(found),
        plan: Some(plan),
        kubelet: Some(systemd.status(KUBELET_UNIT).await?),
        node: Some(node_in),
        phases: phases.times.clone(),
        finished: now(),
    };
    finish(report, recorder, phases)
}

/// A run that started kubelet and was stopped (killed, rebooted) before it saw the node in
/// left kubelet active with its certificate but no report: this run does the rest, the
/// wait until the node is in, with the cluster CA and kubelet already on disk.
async fn finish_interrupted(
    settings: Settings,
    systemd: &Systemd,
    mut phases: Phases,
    kubelet: UnitStatus,
) -> Result<Report, Failure> {
    tracing::info!(
        phase = "preflight",
        "kubelet.service is active with its client certificate but the run that started it \
         ended before the node was in: waiting for the node"
    );
    let version =
        kubelet::version::detect(&settings.kubelet.binary).map_err(|e| Failure::NeedsPerson {
            message: format!("kubelet's version: {e}"),
            fix: format!(
                "install kubelet at {} (or set [kubelet] binary)",
                settings.kubelet.binary.display()
            ),
        })?;
    let ca = std::fs::read(unit::CLUSTER_CA)
        .with_context(|| format!("failed to read the cluster CA {}", unit::CLUSTER_CA))?;
    let mut recorder = crate::ledger::Recorder::open(Path::new(crate::ledger::LEDGER))?;
    let node_in = wait_until_in(
        systemd,
        &mut phases,
        kubelet,
        &ca,
        &version,
        Instant::now() + settings.kubelet_waits.join_timeout,
    )
    .await?;
    phases.end();
    let report = Report {
        outcome: "joined",
        preflight: Vec::new(),
        host: Vec::new(),
        discovery: None,
        plan: None,
        kubelet: Some(systemd.status(KUBELET_UNIT).await?),
        node: Some(node_in),
        phases: phases.times.clone(),
        finished: now(),
    };
    finish(report, &mut recorder, phases)
}

/// Records a join's report, says so and tells systemd the service is ready.
fn finish(
    report: Report,
    recorder: &mut crate::ledger::Recorder,
    phases: Phases,
) -> Result<Report, Failure> {
    save_state(&report, recorder)?;
    let ready = format!(
        "{}: node {} is registered and kubelet.service is active{}",
        report.outcome,
        report.node.as_ref().map(|n| n.name.as_str()).unwrap_or("?"),
        report
            .discovery
            .as_ref()
            .map(|d| format!(", API server {}", d.server))
            .unwrap_or_default()
    );
    tracing::info!(phase = "done", "{ready}");
    let (cpu_ms, peak_rss_kb) = own_cost();
    tracing::info!(
        phase = "done",
        cpu_ms,
        peak_rss_kb,
        "kubejoin's own cost: {cpu_ms} ms CPU, {peak_rss_kb} KB peak RSS"
    );
    phases.notifier.ready(&ready);
    Ok(report)
}

/// This process's CPU time (ms, from /proc/self/schedstat) and peak RSS (KB, VmHWM):
/// kubejoin's own share of a join, without the programs it runs.
fn own_cost() -> (u64, u64) {
    let cpu_ns = std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    (cpu_ns / 1_000_000, hwm)
}

/// The API server's version (`GET /version`, readable anonymously), over TLS that trusts
/// only the cluster CA; `None` when it does not say.
async fn apiserver_version(found: &Discovered) -> Option<Version> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let ca: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&found.ca_pem)
        .filter_map(|c| c.ok().map(|c| c.to_vec()))
        .collect();
    let client = crate::discovery::http::pinned_client(&ca).ok()?;
    let url = format!("{}/version", found.server.to_string().trim_end_matches('/'));
    let r = crate::discovery::http::get(&client, &url, Duration::from_secs(5))
        .await
        .ok()
        .filter(|r| r.status == 200)?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    let version = Version::parse(v["gitVersion"].as_str()?);
    tracing::info!(phase = "discovery", apiserver_version = ?version.as_ref().map(|v| v.to_string()), "the API server's version");
    version
}

/// How often the join looks at kubelet while it waits.
const POLL: Duration = Duration::from_millis(250);

/// Waits until the node is in (kubelet healthy, its client certificate issued by the
/// cluster CA, its Node readable with it), each step its own phase. kubelet exiting or
/// restarting meanwhile fails the join at once, quoting kubelet's fatal line.
async fn wait_until_in(
    systemd: &Systemd,
    phases: &mut Phases,
    started: UnitStatus,
    ca_pem: &[u8],
    version: &Version,
    deadline: Instant,
) -> Result<NodeIn, Failure> {
    phases.start("healthz", "waiting for kubelet's health endpoint");
    let local = ready::healthz_client();
    let (mut healthz, mut certificate) = (None, None);
    let mut last = String::new();
    loop {
        let st = systemd.status(KUBELET_UNIT).await?;
        if !st.is_active() || st.n_restarts != started.n_restarts {
            return Err(kubelet_exited(&st, started.invocation_id.as_deref()).await);
        }
        if healthz.is_none() && ready::healthz(&local).await {
            healthz = Some(now());
            tracing::info!(phase = "healthz", "kubelet's health endpoint answers ok");
            phases.start(
                "tls-bootstrap",
                "waiting for kubelet's client certificate (TLS bootstrap)",
            );
        }
        if healthz.is_some() && certificate.is_none() {
            match ready::client_certificate(ca_pem) {
                Ok(Some(cert)) => {
                    tracing::info!(phase = "tls-bootstrap", path = %cert.path, node = %cert.node_name,
                        "kubelet has its client certificate for system:node:{} (valid until {})",
                        cert.node_name, cert.not_after);
                    phases.start(
                        "node",
                        &format!("waiting for the Node {} to be registered", cert.node_name),
                    );
                    let reader =
                        ready::NodeReader::new(&cert, ca_pem).map_err(|e| Failure::Transient {
                            message: format!("cannot use kubelet's client certificate: {e}"),
                            fix: format!("check {}", cert.path),
                        })?;
                    certificate = Some((now(), cert, reader));
                }
                Ok(None) => {
                    last = format!("{} has no client certificate yet", unit::KUBELET_KUBECONFIG)
                }
                Err(e) => last = e,
            }
        }
        if let Some((cert_at, cert, reader)) = &certificate {
            match reader.read().await {
                ready::NodeAnswer::Registered => {
                    tracing::info!(phase = "node", node = %cert.node_name, "the Node {} is registered", cert.node_name);
                    return Ok(NodeIn {
                        name: cert.node_name.clone(),
                        kubelet_version: version.to_string(),
                        healthz: healthz.unwrap_or_default(),
                        certificate: *cert_at,
                        certificate_path: cert.path.clone(),
                        certificate_not_after: cert.not_after.clone(),
                        registered: now(),
                    });
                }
                ready::NodeAnswer::NotYet(detail) => last = detail,
            }
        }
        if Instant::now() >= deadline {
            let stage = match (&healthz, &certificate) {
                (None, _) => "kubelet's health endpoint never answered ok",
                (Some(_), None) => "kubelet did not finish its TLS bootstrap",
                (Some(_), Some(_)) => "kubelet's Node was not registered",
            };
            return Err(Failure::Transient {
                message: format!(
                    "the node did not join within the join timeout: {stage}{}",
                    if last.is_empty() { String::new() } else { format!(" (last: {last})") }
                ),
                fix: "see `journalctl -u kubelet`; on the control plane, check that CSRs from \
                      system:bootstrappers are approved and issued (the seed's ClusterRoleBindings for \
                      node-bootstrapper and nodeclient auto-approval, and the controller-manager's signer); \
                      [kubelet] join_timeout sets the wait"
                    .into(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The failure for a kubelet that exited: its fatal line from its journal, and the fix.
async fn kubelet_exited(st: &UnitStatus, invocation: Option<&str>) -> Failure {
    // journald may store kubelet's last lines a moment after systemd sees it exit.
    let mut line = None;
    for _ in 0..8 {
        line = fatal::fatal_line(&kubelet::journal(KUBELET_UNIT, invocation));
        if line
            .as_deref()
            .is_some_and(|l| !l.starts_with("kubelet.service:"))
        {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let fatal = line.unwrap_or_else(|| "(kubelet wrote nothing to its journal)".into());
    Failure::Transient {
        message: format!("kubelet exited ({}): {fatal}", st.describe()),
        fix: format!(
            "{}; the whole log: `journalctl -u {KUBELET_UNIT} -b`",
            fatal::fix_for(&fatal).unwrap_or_else(|| "see why in kubelet's log".into())
        ),
    }
}

fn now() -> u64 {
    crate::clock::unix_now().max(0) as u64
}

fn save_state(report: &Report, recorder: &mut crate::ledger::Recorder) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    recorder.write(
        Path::new(STATE_FILE),
        text.as_bytes(),
        0o644,
        crate::ledger::Wrote::Whole,
        None,
    )?;
    Ok(())
}

/// The last run's report, for `kubejoin status`.
pub fn load_state() -> anyhow::Result<Option<serde_json::Value>> {
    match std::fs::read(STATE_FILE) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("{STATE_FILE} is not JSON"))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {STATE_FILE}")),
    }
}

/// The node's three signs of a join, with readable times.
pub fn render_node(n: &NodeIn) -> String {
    let t = |s: u64| crate::clock::format_utc(s as i64);
    format!(
        "node:          {} (kubelet {})\nhealthz:       ok at {}\ncertificate:   {} at {} (valid until {})\nregistered:    at {}\n",
        n.name,
        n.kubelet_version,
        t(n.healthz),
        n.certificate_path,
        t(n.certificate),
        n.certificate_not_after,
        t(n.registered)
    )
}

/// The report as text.
pub fn render_text(r: &Report, dry_run: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "outcome:       {}", r.outcome);
    for c in r.preflight.iter().filter(|c| !c.ok) {
        let _ = writeln!(
            out,
            "preflight:     {:?} {}: {}",
            c.severity, c.name, c.message
        );
    }
    if let Some(d) = &r.discovery {
        let _ = writeln!(out, "server:        {}", d.server);
        if let Some(pin) = &d.matched_pin {
            let _ = writeln!(out, "CA pin:        {pin}");
        }
    }
    let verb = if dry_run { "would " } else { "" };
    for change in &r.host {
        let _ = writeln!(out, "host:          {verb}{}", change.describe());
        if let (true, host::Change::Edit { diff, .. } | host::Change::Write { diff, .. }) =
            (dry_run, change)
        {
            for line in diff.lines() {
                let _ = writeln!(out, "                 {line}");
            }
        }
    }
    if let Some(plan) = &r.plan {
        for d in &plan.dirs {
            let _ = writeln!(out, "dir:           {verb}create {} (0755)", d.display());
        }
        for f in &plan.files {
            let action = match f.action {
                plan::FileAction::Create => "create",
                plan::FileAction::Update => "update",
                plan::FileAction::Chmod => "chmod",
                plan::FileAction::Unchanged => "unchanged",
            };
            let _ = writeln!(
                out,
                "file:          {verb}{action} {} ({}, {})",
                f.path.display(),
                f.mode,
                f.purpose
            );
            if let (true, Some(diff)) = (dry_run, &f.diff) {
                for line in diff.lines() {
                    let _ = writeln!(out, "                 {line}");
                }
            }
        }
        if plan.systemd.is_empty() {
            let _ = writeln!(out, "systemd:       nothing to do");
        }
        for a in &plan.systemd {
            let text = match a {
                SystemdAction::Reload { why } => format!("Reload ({why})"),
                SystemdAction::Enable { unit } => format!("EnableUnitFiles {unit}"),
                SystemdAction::Start { unit } => format!("StartUnit {unit} replace"),
                SystemdAction::Restart { unit, why } => {
                    format!("RestartUnit {unit} replace ({why})")
                }
            };
            let _ = writeln!(out, "systemd:       {verb}{text}");
        }
    }
    if let Some(k) = &r.kubelet {
        let _ = writeln!(out, "kubelet:       {} ({})", k.active_state, k.sub_state);
    }
    if let Some(n) = &r.node {
        let _ = write!(out, "{}", render_node(n));
    }
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {} ms", p.phase, p.ms))
        .collect();
    let _ = writeln!(out, "phases:        {}", phases.join(", "));
    out
}
