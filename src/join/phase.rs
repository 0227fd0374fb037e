//! The phases of a join, in the order a fresh join passes them: each starts with one line
//! in the log and in systemd's `STATUS=`, and ends with its time in the report.

use std::time::Instant;

use serde::Serialize;

use crate::systemd::notify::Notifier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The host's checks, and whether this node has joined already.
    Preflight,
    /// Swap, kernel prerequisites, the container runtime.
    Host,
    /// cluster-info, verified by the token and the CA pin.
    Discovery,
    /// kubelet's files and unit, compared with what is there.
    Plan,
    /// The bootstrap kubeconfig, the cluster CA, kubelet's configuration and unit.
    Files,
    /// kubelet.service enabled and started over D-Bus.
    Kubelet,
    /// Until kubelet's health endpoint answers.
    Healthz,
    /// Until kubelet has its client certificate.
    TlsBootstrap,
    /// Until kubelet's Node is registered.
    Node,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Preflight,
        Phase::Host,
        Phase::Discovery,
        Phase::Plan,
        Phase::Files,
        Phase::Kubelet,
        Phase::Healthz,
        Phase::TlsBootstrap,
        Phase::Node,
    ];

    /// Its name in the log's `phase=`, the report and fail points (`phase:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Host => "host",
            Phase::Discovery => "discovery",
            Phase::Plan => "plan",
            Phase::Files => "files",
            Phase::Kubelet => "kubelet",
            Phase::Healthz => "healthz",
            Phase::TlsBootstrap => "tls-bootstrap",
            Phase::Node => "node",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: Phase,
    pub ms: u128,
}

/// The phase a run is in, and the times of those it has passed.
pub struct Phases {
    pub notifier: Notifier,
    pub times: Vec<PhaseTime>,
    current: Option<(Phase, Instant)>,
}

impl Phases {
    pub fn new(notifier: Notifier) -> Self {
        Phases {
            notifier,
            times: Vec::new(),
            current: None,
        }
    }

    /// Ends the current phase and starts `phase`, saying `status`.
    pub fn start(&mut self, phase: Phase, status: &str) {
        self.end();
        crate::failpoint::hit(&format!("phase:{phase}"));
        tracing::info!(phase = phase.name(), "{status}");
        self.notifier.status(status);
        self.current = Some((phase, Instant::now()));
    }

    pub fn end(&mut self) {
        if let Some((phase, started)) = self.current.take() {
            let ms = started.elapsed().as_millis();
            tracing::info!(
                phase = phase.name(),
                elapsed_ms = ms as u64,
                "phase {phase} took {ms} ms"
            );
            self.times.push(PhaseTime { phase, ms });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_keep_their_names_in_the_report() {
        let names: Vec<String> = Phase::ALL
            .iter()
            .map(|p| {
                serde_json::to_value(p)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let shown: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, shown);
        assert_eq!(
            shown,
            [
                "preflight",
                "host",
                "discovery",
                "plan",
                "files",
                "kubelet",
                "healthz",
                "tls-bootstrap",
                "node"
            ]
        );
    }
}
