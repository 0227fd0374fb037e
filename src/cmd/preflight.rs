//! `kubejoin preflight`: the checks a run starts with, and nothing else.

use super::context::settings;
use crate::cli::{self, Output};
use crate::failure::Failure;
use crate::join;
use crate::kubelet::files::KUBELET_UNIT;
use crate::preflight;
use crate::systemd;

pub async fn run(args: cli::JoinArgs) -> Result<(), Failure> {
    let mut settings = settings(args.cluster)?;
    let (bus, kubelet_active) = match systemd::dbus::Systemd::connect().await {
        Ok(s) => match s.status(KUBELET_UNIT).await {
            Ok(k) => {
                join::resolve_runtime(&mut settings, &s).await?;
                (Ok(()), k.is_active())
            }
            Err(e) => (Err(e.to_string()), false),
        },
        Err(e) => (Err(e.to_string()), false),
    };
    let node = join::node_kubelet(&settings)?;
    let facts = node.preflight_facts(&settings, bus, kubelet_active);
    let checks = preflight::evaluate(&facts, &settings.kubelet, &args.ignore_preflight_errors);
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&checks).map_err(anyhow::Error::from)?
        ),
        Output::Text => print!("{}", preflight::render_text(&checks)),
    }
    // Each check's fix is printed above: the error names the checks only.
    let Some(failure) = preflight::stop(&checks) else {
        return Ok(());
    };
    let errors = preflight::errors(&checks);
    let message = format!(
        "{} preflight check(s) failed: {}",
        errors.len(),
        errors.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    );
    let fix = "see each check's fix above, or skip one with --ignore-preflight-errors=NAME".into();
    Err(match failure {
        Failure::Transient { .. } => Failure::Transient { message, fix },
        _ => Failure::NeedsPerson { message, fix },
    })
}
