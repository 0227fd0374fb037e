//! `kubejoin status`: the last run's record and kubelet's state.

use crate::cli::{Output, StatusArgs};
use crate::clock;
use crate::failure::Failure;
use crate::join;
use crate::kubelet::files::KUBELET_UNIT;
use crate::systemd;

pub async fn run(args: StatusArgs) -> Result<(), Failure> {
    let state = join::load_state()?;
    let kubelet = match systemd::dbus::Systemd::connect().await {
        Ok(s) => s.status(KUBELET_UNIT).await.ok(),
        Err(_) => None,
    };
    let now = match &state {
        Some(s) if !s["node"].is_null() => join::readiness_now().await,
        _ => Err("no join recorded".into()),
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "last_run": state,
                "kubelet": kubelet,
                "node_ready": now.as_ref().ok(),
            })
        ),
        Output::Text => {
            match &state {
                Some(s) => println!(
                    "last run:      {} (finished {})",
                    s["outcome"].as_str().unwrap_or("?"),
                    clock::format_utc(s["finished"].as_i64().unwrap_or(0))
                ),
                None => println!("last run:      none ({} does not exist)", join::STATE_FILE),
            }
            if let Some(phases) = state.as_ref().and_then(|s| s["phases"].as_array()) {
                let text: Vec<String> = phases
                    .iter()
                    .map(|p| format!("{} {} ms", p["phase"].as_str().unwrap_or("?"), p["ms"]))
                    .collect();
                println!("phases:        {}", text.join(", "));
            }
            match &kubelet {
                Some(k) => println!("kubelet:       {} ({})", k.active_state, k.sub_state),
                None => println!("kubelet:       unknown (systemd not reachable over D-Bus)"),
            }
            let node = state
                .as_ref()
                .and_then(|s| serde_json::from_value::<join::NodeIn>(s["node"].clone()).ok());
            if let Some(mut node) = node {
                // Ready now, rather than at the join.
                match &now {
                    Ok(r) => node.ready = Some(r.clone()),
                    Err(why) => {
                        if let Some(r) = node.ready.as_mut() {
                            r.summary = format!("{} at the join (now unknown: {why})", r.summary);
                        }
                    }
                }
                print!("{}", join::render_node(&node));
            }
            let credentials = state
                .as_ref()
                .and_then(join::credentials::Credentials::of_record);
            if let Some(c) = credentials {
                println!("credentials:   {}", c.describe());
            }
        }
    }
    Ok(())
}
