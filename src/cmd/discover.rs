//! `kubejoin discover`: discovery alone, and optionally the bootstrap kubeconfig.

use super::context::settings;
use crate::cli::{DiscoverArgs, Output};
use crate::discovery;
use crate::failure::Failure;
use crate::fsutil;
use crate::kubeconfig;

pub async fn run(args: DiscoverArgs) -> Result<(), Failure> {
    let settings = settings(args.cluster)?;
    let cluster = &settings.cluster;
    let token = cluster.token()?;
    tracing::info!(
        phase = "discovery",
        token_id = token.id(),
        servers = %cluster.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
        pins = cluster.ca_cert_hashes.len(),
        unsafe_skip_ca_verification = cluster.unsafe_skip_ca_verification,
        timeout_s = cluster.discovery_timeout.as_secs(),
        "discovery starting"
    );
    let found = discovery::discover(cluster, token).await?;

    let written = match &args.write_kubeconfig {
        Some(path) => {
            let contents = kubeconfig::render_bootstrap(&found.server, &found.ca_pem, token);
            let outcome = fsutil::write_atomic(path, contents.as_bytes(), 0o600)?;
            tracing::info!(phase = "bootstrap-kubeconfig", path = %path.display(), changed = outcome == fsutil::Outcome::Written, "bootstrap kubeconfig in place");
            Some((path.clone(), outcome))
        }
        None => None,
    };
    print_result(&found, written.as_ref(), args.output)?;
    Ok(())
}

fn print_result(
    found: &discovery::Discovered,
    written: Option<&(std::path::PathBuf, fsutil::Outcome)>,
    output: Output,
) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            let mut value = serde_json::to_value(found)?;
            if let Some((path, outcome)) = written {
                value["kubeconfig_written"] = serde_json::json!({
                    "path": path,
                    "changed": *outcome == fsutil::Outcome::Written,
                });
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Text => {
            println!("server:        {}", found.server);
            if found.cluster_info_server != found.queried {
                println!(
                    "               (queried {}, cluster-info names {})",
                    found.queried, found.cluster_info_server
                );
            }
            for ca in &found.ca {
                println!(
                    "CA:            {} {} (valid {} to {})",
                    ca.subject_cn
                        .as_deref()
                        .map(|cn| format!("CN={cn}"))
                        .unwrap_or_else(|| "(no CN)".into()),
                    ca.pin,
                    ca.not_before,
                    ca.not_after
                );
            }
            match &found.matched_pin {
                Some(pin) => println!("trust:         signature verified, CA pinned by {pin}"),
                None => println!(
                    "trust:         signature verified, CA NOT pinned (unsafe_skip_ca_verification)"
                ),
            }
            println!(
                "cluster-info:  sha256 {} ({} attempts, {} ms)",
                found.kubeconfig_sha256, found.attempts, found.elapsed_ms
            );
            if let Some((path, outcome)) = written {
                let what = match outcome {
                    fsutil::Outcome::Written => "written",
                    fsutil::Outcome::Unchanged => "unchanged",
                };
                println!("kubeconfig:    {} ({what}, mode 0600)", path.display());
            }
        }
    }
    Ok(())
}
