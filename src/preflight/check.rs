//! One check's verdict, and its severity.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// kubeadm-style name, for `--ignore-preflight-errors`.
    pub name: &'static str,
    pub ok: bool,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

pub fn check(
    name: &'static str,
    ok: bool,
    severity: Severity,
    message: String,
    fix: Option<String>,
) -> Check {
    Check {
        name,
        ok,
        severity,
        message,
        fix: if ok { None } else { fix },
    }
}
