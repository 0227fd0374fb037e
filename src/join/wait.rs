//! The wait until the node is in: kubelet healthy, its client certificate issued by the
//! cluster CA, its Node readable with it; and why, when kubelet exits instead.

use std::time::{Duration, Instant};

use super::phase::{Phase, Phases};
use super::report::NodeIn;
use crate::failure::Failure;
use crate::kubelet::files::{KUBELET_KUBECONFIG, KUBELET_UNIT};
use crate::kubelet::{self, fatal, ready, version::Version};
use crate::systemd::dbus::{Systemd, UnitStatus};

/// How often the join looks at kubelet while it waits.
const POLL: Duration = Duration::from_millis(250);

/// Waits until the node is in (kubelet healthy, its client certificate issued by the
/// cluster CA, its Node readable with it), each step its own phase. kubelet exiting or
/// restarting meanwhile fails the join at once, quoting kubelet's fatal line.
pub async fn wait_until_in(
    systemd: &Systemd,
    phases: &mut Phases,
    started: UnitStatus,
    ca_pem: &[u8],
    version: &Version,
    deadline: Instant,
) -> Result<NodeIn, Failure> {
    phases.start(Phase::Healthz, "waiting for kubelet's health endpoint");
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
                Phase::TlsBootstrap,
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
                        Phase::Node,
                        &format!("waiting for the Node {} to be registered", cert.node_name),
                    );
                    let reader =
                        ready::NodeReader::new(&cert, ca_pem).map_err(|e| Failure::Transient {
                            message: format!("cannot use kubelet's client certificate: {e}"),
                            fix: format!("check {}", cert.path),
                        })?;
                    certificate = Some((now(), cert, reader));
                }
                Ok(None) => last = format!("{} has no client certificate yet", KUBELET_KUBECONFIG),
                Err(e) => last = e,
            }
        }
        if let Some((cert_at, cert, reader)) = &certificate {
            match reader.read().await {
                ready::NodeAnswer::Registered(node) => {
                    let readiness = kubelet::node_status::explain(&node);
                    tracing::info!(phase = "node", node = %cert.node_name, ready = %readiness.line(),
                        "the Node {} is registered: {}", cert.node_name, readiness.line());
                    return Ok(NodeIn {
                        name: cert.node_name.clone(),
                        kubelet_version: version.to_string(),
                        healthz: healthz.unwrap_or_default(),
                        certificate: *cert_at,
                        certificate_path: cert.path.clone(),
                        certificate_not_after: cert.not_after.clone(),
                        registered: now(),
                        ready: Some(readiness),
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
                      system:bootstrappers are approved and issued (ClusterRoleBindings for \
                      node-bootstrapper and nodeclient auto-approval, and the controller-manager's signer: \
                      `kubejoin cluster prepare` creates and checks them); \
                      [kubelet] join_timeout sets the wait"
                    .into(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The failure for a kubelet that exited: its fatal line from its journal, and the fix.
pub async fn kubelet_exited(st: &UnitStatus, invocation: Option<&str>) -> Failure {
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
