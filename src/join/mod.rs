//! `kubejoin run`: a join as a sequence of [`Phase`]s — preflight, host, discovery, plan,
//! files, kubelet, then the wait until the node is in — each reported to stdout, the
//! journal and systemd (`STATUS=`). Where a run starts ([`start`]) is decided from what is
//! on the node. Everything it changes is planned first ([`plan`]); `--dry-run` prints the
//! plan and changes nothing.

pub mod burn;
pub mod cluster_config;
pub mod credentials;
mod identity;
mod node;
mod phase;
pub mod plan;
mod report;
mod start;
mod wait;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster::Api;
use crate::config::Settings;
use crate::discovery;
use crate::failure::Failure;
use crate::host;
use crate::kubelet::files::{self, CLUSTER_CA, KUBELET_UNIT, STATIC_POD_PATH};
use crate::kubelet::{self, version::Version};
use crate::ledger::{self, Recorder};
use crate::preflight;
use crate::systemd::dbus::{Systemd, UnitStatus};
use crate::systemd::notify::Notifier;
pub use node::{NodeKubelet, node_kubelet, resolve_runtime, runtime_left_alone_agrees};
use phase::Phases;
pub use phase::{Phase, PhaseTime};
use plan::{CurrentFile, Facts, Plan, SystemdAction};
pub use report::{NodeIn, Report, STATE_FILE, load_state, render_node, render_text};
use start::Start;

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

/// Runs the preflight checks; errors stop a real run, a dry run only reports them.
fn preflight(
    settings: &Settings,
    node: &NodeKubelet,
    kubelet_active: bool,
    ignore: &[String],
    dry_run: bool,
) -> Result<Vec<preflight::Check>, Failure> {
    let facts = node.preflight_facts(settings, Ok(()), kubelet_active);
    let checks = preflight::evaluate(&facts, &settings.kubelet, ignore);
    for c in checks.iter().filter(|c| !c.ok) {
        let fix = c.fix.as_deref().unwrap_or_default();
        match c.severity {
            preflight::Severity::Error => {
                tracing::error!(
                    phase = Phase::Preflight.name(),
                    check = c.name,
                    "{}: {}; fix: {fix}",
                    c.name,
                    c.message
                )
            }
            preflight::Severity::Warning => {
                tracing::warn!(
                    phase = Phase::Preflight.name(),
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

/// Runs the join. The settings are loaded only when there is something to join: a
/// joined node is left alone even when its token has expired or been deleted since.
pub async fn run(
    load: impl FnOnce() -> Result<Settings, Failure>,
    ignore_preflight: &[String],
    dry_run: bool,
) -> Result<Report, Failure> {
    let result = run_from_its_start(load, ignore_preflight, dry_run).await;
    if let Err(f) = &result
        && !dry_run
        && f.exit_code() != crate::failure::exit::TRANSIENT
    {
        credentials::remove_after_failure();
    }
    result
}

async fn run_from_its_start(
    load: impl FnOnce() -> Result<Settings, Failure>,
    ignore_preflight: &[String],
    dry_run: bool,
) -> Result<Report, Failure> {
    let mut phases = Phases::new(Notifier::from_env());
    phases.start(Phase::Preflight, "checking this host");
    let systemd = Systemd::connect().await?;
    let mut settings = load()?;
    let certificate = start::certificate(&node_name(&settings));
    let usable = matches!(certificate, Ok(Some(_)));
    let kubelet = kubelet_settled(&systemd, systemd.status(KUBELET_UNIT).await?, usable).await?;
    match start::decide(seen(&kubelet, usable), dry_run) {
        Start::Interrupted => finish_interrupted(settings, &systemd, phases, kubelet).await,
        Start::AlreadyJoined => {
            resolve_runtime(&mut settings, &systemd).await?;
            reconcile(&settings, &systemd, phases, kubelet, Vec::new(), dry_run).await
        }
        Start::Fresh => {
            if settings.cluster.token().is_err() {
                match certificate {
                    Ok(Some(_)) if !dry_run => {
                        return start_joined(settings, &systemd, phases, kubelet).await;
                    }
                    Err(unusable) => return Err(no_token_to_join_again(&unusable)),
                    _ => {}
                }
            }
            resolve_runtime(&mut settings, &systemd).await?;
            fresh(
                &settings,
                &systemd,
                phases,
                kubelet,
                ignore_preflight,
                dry_run,
            )
            .await
        }
    }
}

/// The name kubelet registers this node under.
fn node_name(settings: &Settings) -> String {
    settings.kubelet.node_name(&start::hostname())
}

/// kubelet's client certificate cannot be used and there is no token to bootstrap anew.
fn no_token_to_join_again(unusable: &start::Unusable) -> Failure {
    let keep = unusable
        .other_node
        .as_ref()
        .map(|n| {
            format!(
                "; or, if this host was renamed and should stay Node {n}, set [kubelet] node_name = \"{n}\""
            )
        })
        .unwrap_or_default();
    Failure::NeedsPerson {
        message: format!(
            "kubelet's client certificate cannot be used ({unusable}), and this node has no \
             bootstrap token to join again"
        ),
        fix: format!(
            "give this node a new bootstrap token (`kubejoin token create` on the control plane; \
             token_file, token or token_command in /etc/kubejoin/config.toml, or a systemd \
             credential named \"token\"), then run kubejoin again: it bootstraps kubelet anew{keep}"
        ),
    }
}

/// kubelet has a client certificate it can use ([`start::certificate`]): its TLS
/// bootstrap is done.
pub fn has_client_certificate(settings: &Settings) -> bool {
    matches!(start::certificate(&node_name(settings)), Ok(Some(_)))
}

/// The Node's readiness now, read with kubelet's own credentials (for `status` and
/// `doctor`); why not, when it cannot be read.
pub async fn readiness_now() -> Result<kubelet::node_status::Readiness, String> {
    let ca = std::fs::read(CLUSTER_CA).map_err(|e| format!("{CLUSTER_CA}: {e}"))?;
    let cert = kubelet::ready::client_certificate(&ca)?
        .ok_or_else(|| "kubelet has no client certificate".to_string())?;
    let reader = kubelet::ready::NodeReader::new(&cert, &ca)?;
    match reader.read().await {
        kubelet::ready::NodeAnswer::Registered(node) => {
            let r = kubelet::node_status::explain(&node);
            Ok(match kubelet::serving::read() {
                Some((why, fix)) => r.and(&why, &fix),
                None => r,
            })
        }
        kubelet::ready::NodeAnswer::NotYet(why) => Err(why),
    }
}

/// What the start is decided from: kubelet's unit as it is now, whether its client
/// certificate is usable, and kubejoin's record.
fn seen(kubelet: &UnitStatus, client_certificate: bool) -> start::Seen {
    start::Seen {
        client_certificate,
        record: start::recorded(),
        kubelet: if kubelet.is_active() {
            start::Kubelet::Active
        } else if kubelet.active_state == "activating" {
            start::Kubelet::Activating
        } else {
            start::Kubelet::Inactive
        },
    }
}

/// How long a joined node's kubelet may take to become active at boot.
const KUBELET_SETTLE: Duration = Duration::from_secs(90);

/// At boot, kubelet.service may still be starting, or waiting to be restarted (its
/// runtime not up yet), when kubejoin starts: on a node that has joined, wait for it a
/// while before deciding ([`start::wait_for_kubelet`]).
async fn kubelet_settled(
    systemd: &Systemd,
    status: UnitStatus,
    client_certificate: bool,
) -> Result<UnitStatus, Failure> {
    if !start::wait_for_kubelet(seen(&status, client_certificate)) {
        return Ok(status);
    }
    tracing::info!(
        phase = Phase::Preflight.name(),
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

/// kubelet runs with its client certificate: nothing to do.
fn already_joined(mut phases: Phases, kubelet: UnitStatus, dry_run: bool) -> Report {
    phases.end();
    if !dry_run {
        phases
            .notifier
            .ready("already joined: kubelet.service is active with its client certificate");
    }
    Report {
        outcome: "already-joined",
        kubelet: Some(kubelet),
        ..report(phases.times)
    }
}

/// A join from the start: every phase in order; a dry run stops after the plan.
async fn fresh(
    settings: &Settings,
    systemd: &Systemd,
    mut phases: Phases,
    kubelet: UnitStatus,
    ignore_preflight: &[String],
    dry_run: bool,
) -> Result<Report, Failure> {
    let node = node_kubelet(settings)?;
    let checks = preflight(
        settings,
        &node,
        kubelet.is_active(),
        ignore_preflight,
        dry_run,
    )?;
    let (version, profile) = versioned(settings, &node)?;
    runtime_left_alone_agrees(settings, profile)?;

    phases.start(
        Phase::Host,
        "preparing this host: swap, kernel prerequisites, container runtime",
    );
    let mut recorder = (!dry_run)
        .then(|| Recorder::open(Path::new(ledger::LEDGER)))
        .transpose()?;
    let host_changes = prepare_host(settings, systemd, recorder.as_mut()).await?;

    let servers: Vec<String> = settings
        .cluster
        .servers
        .iter()
        .map(|s| s.to_string())
        .collect();
    phases.start(
        Phase::Discovery,
        &format!("discovering the cluster at {}", servers.join(", ")),
    );
    let token = settings.cluster.token()?;
    let found = discovery::discover(&settings.cluster, token).await?;
    let as_token = cluster_config::as_token(&found.server.to_string(), &found.ca_pem, token)?;
    let api_version = apiserver_version(&as_token).await;
    check_skew(version, api_version.as_ref(), ignore_preflight, dry_run)?;
    let cluster = clusters_kubelet_config(&as_token, api_version.as_ref()).await?;
    // The certificate again, as it is before planning (the start's look was before host
    // preparation): whose it is for the name check, and whether to bootstrap again.
    let me = node_name(settings);
    let certificate = start::certificate(&me);
    if !start::names_this_node(&certificate) {
        let ignored = is_ignored(ignore_preflight, identity::CHECK);
        identity::check(&as_token, &me, ignored, dry_run).await?;
    }

    phases.start(Phase::Plan, "planning kubelet's files and unit");
    let config = kubelet_config(settings, profile, cluster.as_ref(), systemd).await?;
    let node_ip = node_ip(settings, &found.server)?;
    let desired = files::desired(
        &settings.kubelet,
        profile,
        Some((&found.server, token)),
        &found.ca_pem,
        files::ConfigFiles {
            config_yaml: config.render(),
            drop_in: config.render_drop_in(),
        },
        &node_ip,
    );
    let bootstrap_again = certificate.err().map(|u| u.why);
    if let Some(why) = &bootstrap_again {
        tracing::warn!(
            phase = Phase::Plan.name(),
            "kubelet's client certificate cannot be used ({why}): kubelet bootstraps again with the token"
        );
    }
    let plan = plan_files(&desired, systemd, &kubelet, bootstrap_again.clone()).await?;
    let Some(recorder) = recorder.as_mut() else {
        phases.end();
        return Ok(Report {
            outcome: "dry-run",
            preflight: checks,
            host: host_changes,
            discovery: Some(found),
            plan: Some(plan),
            kubelet_config: Some(config),
            kubelet: Some(kubelet),
            ..report(phases.times)
        });
    };

    phases.start(
        Phase::Files,
        "writing kubelet's bootstrap kubeconfig and configuration",
    );
    if bootstrap_again.is_some() {
        // kubelet uses --kubeconfig, or else its current certificate, while the certificate
        // looks valid to it (another node's does): without both, kubelet bootstraps with
        // the bootstrap kubeconfig. The certificate first: a run killed in between leaves
        // a kubeconfig naming no certificate, which is no join either.
        for path in [files::CLIENT_CURRENT, files::KUBELET_KUBECONFIG] {
            if crate::fsutil::remove_durably(Path::new(path))? {
                tracing::info!(
                    phase = Phase::Files.name(),
                    "removed {path}: kubelet bootstraps again"
                );
            }
        }
    }
    write_files(&desired, &plan, recorder)?;

    phases.start(Phase::Kubelet, "starting kubelet.service");
    let waits = &settings.kubelet_waits;
    let status = start_kubelet(&plan, systemd, recorder, kubelet, waits.start_timeout).await?;
    let ca = found.ca_pem.clone();
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
        kubelet_config: Some(config),
        ..report(Vec::new())
    };
    in_and_recorded(
        settings, systemd, phases, status, &ca, version, recorder, report,
    )
    .await
}

/// kubelet's version and what it takes: needed to write its files.
fn versioned<'a>(
    settings: &Settings,
    node: &'a NodeKubelet,
) -> Result<(&'a Version, &'a kubelet::profile::Profile), Failure> {
    match (&node.version, &node.profile) {
        (Ok(version), Some(profile)) => Ok((version, profile)),
        _ => Err(Failure::NeedsPerson {
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
        }),
    }
}

/// The host phase: inspect, plan, and (unless a dry run) apply, recording each change.
async fn prepare_host(
    settings: &Settings,
    systemd: &Systemd,
    recorder: Option<&mut Recorder>,
) -> Result<Vec<host::Change>, Failure> {
    let host_settings = host::HostSettings {
        ipv6: ipv6_node(settings),
        proxy: settings.proxy.as_ref().map(|p| proxy_env(settings, p)),
        ..settings.host.clone()
    };
    let facts = host::inspect(&host_settings, systemd).await?;
    let changes = host::plan(&host_settings, &facts).map_err(|e| Failure::NeedsPerson {
        fix: e.fix(),
        message: e.to_string(),
    })?;
    if let Some(recorder) = recorder {
        host::apply(&changes, systemd, recorder).await?;
    }
    Ok(changes)
}

/// `[proxy]` for the units, its `NO_PROXY` completed with the API servers' hosts and this
/// node's addresses (those that could be its node IP: not loopback, link-local or a
/// container network's).
fn proxy_env(settings: &Settings, p: &host::proxy::Proxy) -> host::proxy::ProxyEnv {
    let servers: Vec<String> = settings
        .cluster
        .servers
        .iter()
        .map(|s| s.host_name())
        .collect();
    let addresses: Vec<std::net::IpAddr> = kubelet::node_ip::host_addresses()
        .into_iter()
        .filter(kubelet::node_ip::candidate)
        .map(|a| a.ip)
        .collect();
    host::proxy::complete(p, &servers, &addresses)
}

/// The cluster's kubelet configuration, if it publishes one this token may read; said
/// either way.
async fn clusters_kubelet_config(
    as_token: &Api,
    api_version: Option<&Version>,
) -> Result<Option<kubelet::config::ClusterConfig>, Failure> {
    let read = cluster_config::read(as_token, api_version, cluster_config::Reader::Token).await?;
    Ok(match read {
        cluster_config::Read::Found(c) => {
            tracing::info!(
                phase = Phase::Discovery.name(),
                configmap = %c.configmap,
                "kubelet's configuration starts from the cluster's {} ({} fields)",
                c.configmap,
                c.fields.len()
            );
            Some(c)
        }
        cluster_config::Read::NotRead { why, fix, .. } => {
            tracing::warn!(
                phase = Phase::Discovery.name(),
                "kubelet's configuration starts from kubejoin's defaults: {why}; fix: {fix}"
            );
            None
        }
    })
}

/// The cluster's kubelet configuration on a node that has joined, read as the node (its
/// own certificate; kubeadm's Role lets nodes read it): `Some(None)` the cluster has none,
/// `None` not known (not readable now, and no run recorded it).
async fn clusters_kubelet_config_as_node(
    cert: &kubelet::ready::ClientCertificate,
    ca_pem: &[u8],
) -> Option<Option<kubelet::config::ClusterConfig>> {
    let read = match Api::as_node(cert, ca_pem) {
        Ok(api) => {
            let version = cluster_config::api_version(&api).await;
            cluster_config::read(&api, version.as_ref(), cluster_config::Reader::Node)
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    let why = match read {
        Ok(cluster_config::Read::Found(c)) => {
            tracing::info!(
                phase = Phase::Plan.name(),
                configmap = %c.configmap,
                "kubelet's configuration starts from the cluster's {} ({} fields), read as node {}",
                c.configmap,
                c.fields.len(),
                cert.node_name
            );
            return Some(Some(c));
        }
        Ok(cluster_config::Read::NotRead {
            why, absent: true, ..
        }) => {
            tracing::warn!(
                phase = Phase::Plan.name(),
                "kubelet's configuration starts from kubejoin's defaults: {why}"
            );
            return Some(None);
        }
        Ok(cluster_config::Read::NotRead { why, .. }) => why,
        Err(why) => why,
    };
    let recorded = load_state()
        .ok()
        .flatten()
        .and_then(|state| cluster_config::recorded(&state));
    match &recorded {
        Some(Some(c)) => tracing::warn!(
            phase = Phase::Plan.name(),
            "the cluster's kubelet configuration cannot be read now ({why}): kubelet's configuration \
             starts from the cluster's {} as recorded at the join",
            c.configmap
        ),
        Some(None) => tracing::warn!(
            phase = Phase::Plan.name(),
            "the cluster's kubelet configuration cannot be read now ({why}); it had none at the join"
        ),
        None => tracing::warn!(
            phase = Phase::Plan.name(),
            "the cluster's kubelet configuration cannot be read now ({why}), and no run recorded \
             it: kubelet's files are left as they are"
        ),
    }
    recorded
}

/// kubelet's configuration for this node: the cluster's, this node's needs, the user's.
async fn kubelet_config(
    settings: &Settings,
    profile: &kubelet::profile::Profile,
    cluster: Option<&kubelet::config::ClusterConfig>,
    systemd: &Systemd,
) -> Result<kubelet::config::Effective, Failure> {
    let cluster_resolv = cluster
        .and_then(|c| c.fields.get("resolvConf"))
        .and_then(|v| v.as_str());
    let (cpus, memory_bytes) = kubelet::reserve::host_size();
    let host = kubelet::config::Host {
        systemd_resolved: systemd.status(RESOLVED_UNIT).await?.is_active(),
        cluster_file_exists: cluster_resolv.is_some_and(|p| Path::new(p).exists()),
        cpus,
        memory_bytes,
    };
    Ok(kubelet::config::effective(
        &settings.kubelet,
        profile,
        cluster,
        host,
    ))
}

const RESOLVED_UNIT: &str = "systemd-resolved.service";

/// kubelet's `--node-ip`: chosen where this host has several addresses (none: kubelet's
/// own choice).
fn node_ip(
    settings: &Settings,
    server: &crate::endpoint::Endpoint,
) -> Result<Vec<std::net::IpAddr>, Failure> {
    use kubelet::node_ip;
    let addresses = node_ip::host_addresses();
    let source = node_ip::route_source(&server.host_name(), server.port());
    match node_ip::choose(&addresses, source, &settings.kubelet.node_ip_cidrs) {
        Ok(Some((ips, why))) => {
            let shown: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
            tracing::info!(
                phase = Phase::Plan.name(),
                "kubelet's node IP: {} ({why})",
                shown.join(", ")
            );
            Ok(ips)
        }
        Ok(None) => Ok(Vec::new()),
        Err(message) => Err(Failure::NeedsPerson {
            message,
            fix: "set [kubelet] node_ip_cidrs to networks this host has an address in (`ip -brief address` lists them), or remove it".into(),
        }),
    }
}

/// Whether this is an IPv6 (or dual-stack) node, from the configured API server (cluster-info
/// may name another, but host preparation comes before discovery).
/// Asked only when the kernel step runs, the route only when no CIDR decides.
fn ipv6_node(settings: &Settings) -> bool {
    use kubelet::node_ip;
    let cidrs = &settings.kubelet.node_ip_cidrs;
    if !settings.host.kernel {
        return false;
    }
    let source = cidrs
        .is_empty()
        .then(|| settings.cluster.servers.first())
        .flatten()
        .and_then(|s| node_ip::route_source(&s.host_name(), s.port()));
    node_ip::ipv6_node(cidrs, source)
}

/// The version skew policy, once the API server's version is known: a kubelet the
/// cluster will never accept stops the join before anything of kubelet's is written.
fn check_skew(
    version: &Version,
    api: Option<&Version>,
    ignore_preflight: &[String],
    dry_run: bool,
) -> Result<(), Failure> {
    let Some((api, why)) = api.and_then(|a| kubelet::version::skew(version, a).map(|w| (a, w)))
    else {
        return Ok(());
    };
    let ignored = is_ignored(ignore_preflight, "KubeletVersionSkew");
    tracing::warn!(
        phase = Phase::Discovery.name(),
        check = "KubeletVersionSkew",
        "{why}"
    );
    if ignored || dry_run {
        return Ok(());
    }
    Err(Failure::NeedsPerson {
        message: why,
        fix: format!(
            "install a kubelet no newer than the API server {api} and at most three minor \
             versions older (or skip this check with --ignore-preflight-errors=KubeletVersionSkew)"
        ),
    })
}

/// Whether `--ignore-preflight-errors` names the check (or `all`).
fn is_ignored(ignore_preflight: &[String], check: &str) -> bool {
    ignore_preflight
        .iter()
        .any(|i| i.eq_ignore_ascii_case("all") || i.eq_ignore_ascii_case(check))
}

/// The plan phase: kubelet's files and unit against what is on disk.
async fn plan_files(
    desired: &[files::DesiredFile],
    systemd: &Systemd,
    kubelet: &UnitStatus,
    bootstrap_again: Option<String>,
) -> Result<Plan, Failure> {
    let facts = Facts {
        missing_dirs: [STATIC_POD_PATH]
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
        bootstrap_again,
    };
    Ok(plan::plan(desired, &facts, KUBELET_UNIT))
}

/// The files phase: the planned directories and files, each recorded before it is written.
fn write_files(
    desired: &[files::DesiredFile],
    plan: &Plan,
    recorder: &mut Recorder,
) -> Result<(), Failure> {
    for dir in &plan.dirs {
        recorder.make_dir(dir)?;
        tracing::info!(phase = Phase::Files.name(), path = %dir.display(), "created directory {}", dir.display());
    }
    for (want, change) in desired.iter().zip(&plan.files) {
        if change.action != plan::FileAction::Unchanged {
            recorder.write(
                &want.path,
                &want.contents,
                want.mode,
                ledger::Wrote::Whole,
                None,
            )?;
            tracing::info!(phase = Phase::Files.name(), path = %want.path.display(), action = %change.action, "wrote {} ({}, mode {})", want.path.display(), change.action, change.mode);
        }
    }
    Ok(())
}

/// The kubelet phase: the planned systemd calls, in order; kubelet's status after them.
async fn start_kubelet(
    plan: &Plan,
    systemd: &Systemd,
    recorder: &mut Recorder,
    kubelet: UnitStatus,
    start_timeout: Duration,
) -> Result<UnitStatus, Failure> {
    let mut status = kubelet;
    for action in &plan.systemd {
        tracing::info!(phase = Phase::Kubelet.name(), call = %action, "systemd: {action}");
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
                status = match systemd.start(unit, restart, start_timeout).await {
                    Ok(s) => s,
                    Err(crate::systemd::dbus::SystemdError::NotActive { status, .. }) => {
                        return Err(
                            wait::kubelet_exited(&status, status.invocation_id.as_deref()).await,
                        );
                    }
                    Err(e) => return Err(e.into()),
                };
            }
        }
    }
    Ok(status)
}

/// A run that started kubelet and was stopped (killed, rebooted) before it saw the node in
/// left kubelet active with its certificate but no report: this run does the rest, the
/// wait until the node is in, with the cluster CA and kubelet already on disk.
async fn finish_interrupted(
    settings: Settings,
    systemd: &Systemd,
    phases: Phases,
    kubelet: UnitStatus,
) -> Result<Report, Failure> {
    tracing::info!(
        phase = Phase::Preflight.name(),
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
    let ca = std::fs::read(CLUSTER_CA)
        .with_context(|| format!("failed to read the cluster CA {CLUSTER_CA}"))?;
    let mut recorder = Recorder::open(Path::new(ledger::LEDGER))?;
    let report = Report {
        outcome: "joined",
        ..report(Vec::new())
    };
    in_and_recorded(
        &settings,
        systemd,
        phases,
        kubelet,
        &ca,
        &version,
        &mut recorder,
        report,
    )
    .await
}

/// A node that has joined and has no token any more (kubejoin removed it after the
/// join), whose kubelet is not running: kubelet has its own credentials, so the host is
/// prepared and kubelet started ([`reconcile`]), without discovery or a token.
async fn start_joined(
    mut settings: Settings,
    systemd: &Systemd,
    mut phases: Phases,
    kubelet: UnitStatus,
) -> Result<Report, Failure> {
    tracing::info!(
        phase = Phase::Preflight.name(),
        "this node has joined (kubelet has its client certificate) and has no bootstrap token: \
         preparing the host and starting kubelet.service with its own credentials"
    );
    resolve_runtime(&mut settings, systemd).await?;
    phases.start(
        Phase::Host,
        "preparing this host: swap, kernel prerequisites, container runtime",
    );
    let mut recorder = Recorder::open(Path::new(ledger::LEDGER))?;
    let host = prepare_host(&settings, systemd, Some(&mut recorder)).await?;
    drop(recorder);
    reconcile(&settings, systemd, phases, kubelet, host, false).await
}

/// A node that has joined: kubelet's files rendered from the configuration as it is now,
/// the cluster's kubelet configuration read as the node, no token needed. A difference is
/// planned, written and kubelet restarted; a stopped kubelet is started; otherwise
/// nothing changes. A dry run shows the plan.
async fn reconcile(
    settings: &Settings,
    systemd: &Systemd,
    mut phases: Phases,
    kubelet: UnitStatus,
    host: Vec<host::Change>,
    dry_run: bool,
) -> Result<Report, Failure> {
    let node = node_kubelet(settings)?;
    let (version, profile) = versioned(settings, &node)?;
    runtime_left_alone_agrees(settings, profile)?;
    phases.start(
        Phase::Plan,
        "comparing kubelet's files with this node's configuration",
    );
    let ca = std::fs::read(CLUSTER_CA)
        .with_context(|| format!("failed to read the cluster CA {CLUSTER_CA}"))?;
    let cert = match kubelet::ready::client_certificate(&ca) {
        Ok(Some(cert)) => cert,
        Ok(None) => return Err(anyhow::anyhow!("kubelet's client certificate is gone").into()),
        Err(why) => return Err(anyhow::anyhow!("kubelet's client certificate: {why}").into()),
    };
    let server: crate::endpoint::Endpoint = cert
        .server
        .parse()
        .map_err(|e| anyhow::anyhow!("kubelet's kubeconfig names server {:?}: {e}", cert.server))?;
    let Some(cluster) = clusters_kubelet_config_as_node(&cert, &ca).await else {
        // kubelet's files stay as they are; a stopped kubelet is started all the same.
        if kubelet.is_active() || dry_run {
            return Ok(already_joined(phases, kubelet, dry_run));
        }
        phases.start(Phase::Kubelet, "starting kubelet.service");
        let status = systemd
            .start(KUBELET_UNIT, false, settings.kubelet_waits.start_timeout)
            .await?;
        let mut recorder = Recorder::open(Path::new(ledger::LEDGER))?;
        let report = Report {
            outcome: "started",
            host,
            ..report(Vec::new())
        };
        return in_and_recorded(
            settings,
            systemd,
            phases,
            status,
            &ca,
            version,
            &mut recorder,
            report,
        )
        .await;
    };
    let config = kubelet_config(settings, profile, cluster.as_ref(), systemd).await?;
    let node_ip = node_ip(settings, &server)?;
    let desired = files::desired(
        &settings.kubelet,
        profile,
        None,
        &ca,
        files::ConfigFiles {
            config_yaml: config.render(),
            drop_in: config.render_drop_in(),
        },
        &node_ip,
    );
    let plan = plan_files(&desired, systemd, &kubelet, None).await?;
    if plan.is_empty() && host.is_empty() {
        return Ok(already_joined(phases, kubelet, dry_run));
    }
    let files_changed = plan
        .files
        .iter()
        .any(|f| f.action != plan::FileAction::Unchanged);
    if dry_run {
        phases.end();
        return Ok(Report {
            outcome: "dry-run",
            plan: Some(plan),
            kubelet_config: Some(config),
            kubelet: Some(kubelet),
            ..report(phases.times)
        });
    }
    let mut recorder = Recorder::open(Path::new(ledger::LEDGER))?;
    if files_changed {
        phases.start(
            Phase::Files,
            "writing kubelet's files changed by this node's configuration",
        );
        write_files(&desired, &plan, &mut recorder)?;
    }
    phases.start(
        Phase::Kubelet,
        if kubelet.is_active() {
            "restarting kubelet.service"
        } else {
            "starting kubelet.service"
        },
    );
    let start_timeout = settings.kubelet_waits.start_timeout;
    let status = start_kubelet(&plan, systemd, &mut recorder, kubelet, start_timeout).await?;
    let report = Report {
        outcome: if files_changed {
            "reconciled"
        } else {
            "started"
        },
        host,
        plan: Some(plan),
        kubelet_config: Some(config),
        ..report(Vec::new())
    };
    in_and_recorded(
        settings,
        systemd,
        phases,
        status,
        &ca,
        version,
        &mut recorder,
        report,
    )
    .await
}

/// A report with nothing in it but its phases.
fn report(phases: Vec<PhaseTime>) -> Report {
    Report {
        outcome: "",
        preflight: Vec::new(),
        host: Vec::new(),
        discovery: None,
        plan: None,
        kubelet_config: None,
        kubelet: None,
        node: None,
        credentials: None,
        phases,
        finished: now(),
    }
}

/// The end of every run that started kubelet: waits until the node is in, removes the
/// bootstrap credentials, and records `report` with kubelet's state, the node and the
/// phases' times.
#[allow(clippy::too_many_arguments)]
async fn in_and_recorded(
    settings: &Settings,
    systemd: &Systemd,
    mut phases: Phases,
    started: UnitStatus,
    ca: &[u8],
    version: &Version,
    recorder: &mut Recorder,
    report: Report,
) -> Result<Report, Failure> {
    let node_in = wait::wait_until_in(
        systemd,
        &mut phases,
        started,
        ca,
        version,
        Instant::now() + settings.kubelet_waits.join_timeout,
    )
    .await?;
    let on_cluster = burn_token(settings, ca).await;
    let credentials = credentials::remove(&settings.cluster, on_cluster)?;
    phases.end();
    let report = Report {
        kubelet: Some(systemd.status(KUBELET_UNIT).await?),
        node: Some(node_in),
        credentials: Some(credentials),
        phases: phases.times.clone(),
        finished: now(),
        ..report
    };
    finish(report, recorder, phases)
}

/// Once the node is in: the token burned if it is single-use ([`burn`]), unless
/// `keep_token` keeps it; what became of it, said once. `None`: no token configured.
async fn burn_token(settings: &Settings, ca: &[u8]) -> Option<String> {
    let token = settings.cluster.token().ok()?;
    let fate = if settings.cluster.keep_token {
        burn::Fate::Kept
    } else {
        match kubelet::ready::client_certificate(ca) {
            Ok(Some(cert)) => burn::burn(&cert.server, ca, token).await,
            Ok(None) => burn::Fate::Failed {
                why: "kubelet's kubeconfig names no server".into(),
            },
            Err(why) => burn::Fate::Failed { why },
        }
    };
    let said = fate.describe(token.id());
    match fate {
        burn::Fate::Failed { .. } => tracing::warn!(phase = "done", "{said}"),
        _ => tracing::info!(phase = "done", "{said}"),
    }
    Some(said)
}

/// Records a join's report, says so and tells systemd the service is ready.
fn finish(report: Report, recorder: &mut Recorder, phases: Phases) -> Result<Report, Failure> {
    report::save_state(&report, recorder)?;
    let readiness = report
        .node
        .as_ref()
        .and_then(|n| n.ready.as_ref())
        .map(|r| format!(" ({})", r.clause()))
        .unwrap_or_default();
    let ready = format!(
        "{}: node {} is registered{readiness} and kubelet.service is active{}",
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

/// The API server's version, said in the log.
async fn apiserver_version(api: &Api) -> Option<Version> {
    let version = cluster_config::api_version(api).await;
    match &version {
        Some(v) => tracing::info!(
            phase = Phase::Discovery.name(),
            apiserver_version = %v,
            "the API server's version: {v}"
        ),
        None => tracing::info!(
            phase = Phase::Discovery.name(),
            "the API server's /version names no version kubejoin can read"
        ),
    }
    version
}

fn now() -> u64 {
    crate::clock::unix_now().max(0) as u64
}
