//! What a run did: its report (stdout, `--output json`), the record of a finished join
//! (`/var/lib/kubejoin/state.json`, read by `kubejoin status`), and both as text.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::phase::PhaseTime;
use super::plan::Plan;
use crate::discovery::Discovered;
use crate::host;
use crate::kubelet::config::{Effective, Source};
use crate::preflight;
use crate::systemd::dbus::UnitStatus;

pub const STATE_FILE: &str = "/var/lib/kubejoin/state.json";

/// What a run did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `joined`, `unchanged`, `started` (a joined node's kubelet started with its own
    /// credentials), `reconciled` (a joined node's kubelet files changed with its
    /// configuration, kubelet restarted), `already-joined` or `dry-run`.
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
    /// kubelet's configuration, each field with where it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubelet_config: Option<Effective>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<UnitStatus>,
    /// What the node said when the join ended: the node is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeIn>,
    /// What became of the bootstrap credentials once the node was in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<super::credentials::Credentials>,
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
    /// Whether the Node was Ready then, and if not why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<crate::kubelet::node_status::Readiness>,
}

pub fn save_state(report: &Report, recorder: &mut crate::ledger::Recorder) -> anyhow::Result<()> {
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
    ) + &n
        .ready
        .as_ref()
        .map(|r| format!("ready:         {}\n", r.lines("               ")))
        .unwrap_or_default()
}

/// Where kubelet's configuration came from: one line, and with `--dry-run` (the plan)
/// each field that is not the cluster's or kubejoin's default, with its source.
fn render_config(out: &mut String, c: &Effective, dry_run: bool) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "kubelet conf:  {}",
        match &c.cluster {
            Some(cm) => format!("the cluster's {cm}, then this node's and yours"),
            None =>
                "kubejoin's defaults (the cluster's could not be read), then this node's and yours"
                    .into(),
        }
    );
    if !dry_run {
        return;
    }
    for f in &c.fields {
        if matches!(f.source, Source::Node { .. } | Source::User { .. }) {
            let _ = writeln!(
                out,
                "                 {}: {} ({})",
                f.name, f.value, f.source
            );
        }
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
            "preflight:     {} {}: {}",
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
            let action = f.action;
            let verb = if action == super::plan::FileAction::Unchanged {
                ""
            } else {
                verb
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
            let _ = writeln!(out, "systemd:       {verb}{a}");
        }
    }
    if let Some(c) = &r.kubelet_config {
        render_config(&mut out, c, dry_run);
    }
    if let Some(k) = &r.kubelet {
        let _ = writeln!(out, "kubelet:       {} ({})", k.active_state, k.sub_state);
    }
    if let Some(n) = &r.node {
        let _ = write!(out, "{}", render_node(n));
    }
    if let Some(c) = &r.credentials {
        let _ = writeln!(out, "credentials:   {}", c.describe());
    }
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {} ms", p.phase, p.ms))
        .collect();
    let _ = writeln!(out, "phases:        {}", phases.join(", "));
    out
}
