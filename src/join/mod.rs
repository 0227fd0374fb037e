//! `kubejoin run`: discovery, then kubelet's files, then kubelet started over D-Bus, each
//! phase reported to stdout, the journal and systemd (`STATUS=`). Everything it changes
//! is planned first ([`plan`]); `--dry-run` prints the plan and changes nothing.

pub mod plan;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;

use crate::Failure;
use crate::config::Settings;
use crate::discovery::{self, Discovered};
use crate::fsutil;
use crate::host;
use crate::kubeconfig;
use crate::preflight;
use crate::systemd::dbus::{Systemd, UnitStatus};
use crate::systemd::notify::Notifier;
use crate::systemd::unit::{self, KUBELET_UNIT};
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
    pub phases: Vec<PhaseTime>,
    /// Seconds since the epoch when the run finished.
    pub finished: u64,
}

struct Phases {
    notifier: Notifier,
    times: Vec<PhaseTime>,
    current: Option<(&'static str, Instant)>,
}

impl Phases {
    fn start(&mut self, phase: &'static str, status: &str) {
        self.end();
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
fn desired_files(settings: &Settings, found: &Discovered) -> Vec<DesiredFile> {
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
            contents: unit::kubelet_config(&settings.kubelet).into_bytes(),
            mode: 0o644,
            secret: false,
            purpose: "KubeletConfiguration",
            restarts_kubelet: true,
            is_unit: false,
        },
        DesiredFile {
            path: unit::KUBELET_UNIT_PATH.into(),
            contents: unit::kubelet_unit(&settings.kubelet).into_bytes(),
            mode: 0o644,
            secret: false,
            purpose: "kubelet's systemd unit",
            restarts_kubelet: true,
            is_unit: true,
        },
    ]
}

/// Runs the preflight checks; errors stop a real run, a dry run only reports them.
fn preflight(
    settings: &Settings,
    kubelet_active: bool,
    ignore: &[String],
    dry_run: bool,
) -> Result<Vec<preflight::Check>, Failure> {
    let facts = preflight::inspect(
        &settings.kubelet,
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
    let errors = preflight::errors(&checks);
    if !errors.is_empty() && !dry_run {
        return Err(Failure::Fixable {
            message: format!(
                "preflight failed: {}",
                errors
                    .iter()
                    .map(|c| format!("{}: {}", c.name, c.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            fix: format!(
                "{} (or skip a check with --ignore-preflight-errors={})",
                errors
                    .iter()
                    .filter_map(|c| c.fix.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
                errors.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
            ),
        });
    }
    Ok(checks)
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
    let kubelet = systemd.status(KUBELET_UNIT).await?;

    if tls_bootstrapped() && kubelet.is_active() {
        phases.end();
        let report = Report {
            outcome: "already-joined",
            preflight: Vec::new(),
            host: Vec::new(),
            discovery: None,
            plan: None,
            kubelet: Some(kubelet),
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
    let settings = &load()?;
    let checks = preflight(settings, kubelet.is_active(), ignore_preflight, dry_run)?;

    phases.start(
        "host",
        "preparing this host: swap, kernel prerequisites, container runtime",
    );
    let host_facts = host::inspect(&settings.host, &systemd).await?;
    let host_changes = host::plan(&settings.host, &host_facts).map_err(|e| Failure::Fixable {
        fix: e.fix(),
        message: e.to_string(),
    })?;
    if !dry_run {
        host::apply(&host_changes, &systemd).await?;
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

    phases.start("plan", "planning kubelet's files and unit");
    let desired = desired_files(settings, &found);
    let facts = Facts {
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
            phases: phases.times,
            finished: now(),
        });
    }

    phases.start(
        "files",
        "writing kubelet's bootstrap kubeconfig and configuration",
    );
    for (want, change) in desired.iter().zip(&plan.files) {
        if change.action != plan::FileAction::Unchanged {
            fsutil::write_atomic(&want.path, &want.contents, want.mode)?;
            tracing::info!(phase = "files", path = %want.path.display(), action = ?change.action, "wrote {} ({:?}, mode {})", want.path.display(), change.action, change.mode);
        }
    }

    phases.start("kubelet", "starting kubelet.service");
    let waits = &settings.kubelet_waits;
    let mut status = kubelet;
    for action in &plan.systemd {
        tracing::info!(phase = "kubelet", call = ?action, "systemd: {action:?}");
        match action {
            SystemdAction::Reload { .. } => systemd.reload().await?,
            SystemdAction::Enable { unit } => {
                systemd.enable(unit).await?;
            }
            SystemdAction::Start { unit } | SystemdAction::Restart { unit, .. } => {
                let restart = matches!(action, SystemdAction::Restart { .. });
                status = systemd
                    .start(unit, restart, waits.settle, waits.start_timeout)
                    .await?;
            }
        }
    }

    if let Some(limit) = waits.tls_bootstrap {
        phases.start(
            "tls-bootstrap",
            "waiting for kubelet's TLS bootstrap (its client certificate)",
        );
        let deadline = Instant::now() + limit;
        while !tls_bootstrapped() {
            if Instant::now() >= deadline {
                return Err(Failure::Fixable {
                    message: format!(
                        "kubelet did not finish TLS bootstrapping within {}s ({} has no client certificate)",
                        limit.as_secs(),
                        unit::KUBELET_KUBECONFIG
                    ),
                    fix: "check `journalctl -u kubelet` and, on the control plane, that CSRs from \
                          system:bootstrappers are approved (the seed's auto-approve ClusterRoleBindings)"
                        .into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
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
        kubelet: Some(status),
        phases: phases.times.clone(),
        finished: now(),
    };
    save_state(&report)?;
    let ready = format!(
        "{outcome}: kubelet.service is active, API server {}",
        report
            .discovery
            .as_ref()
            .map(|d| d.server.to_string())
            .unwrap_or_default()
    );
    tracing::info!(phase = "done", "{ready}");
    phases.notifier.ready(&ready);
    Ok(report)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn save_state(report: &Report) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    fsutil::write_atomic(Path::new(STATE_FILE), text.as_bytes(), 0o644)?;
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
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {} ms", p.phase, p.ms))
        .collect();
    let _ = writeln!(out, "phases:        {}", phases.join(", "));
    out
}
