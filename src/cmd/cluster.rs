//! `kubejoin cluster prepare`: the control plane's half, with an admin kubeconfig.

use super::context::{admin_api, print_json};
use crate::cli::{self, Output};
use crate::cluster::{Api, admin, prepare};
use crate::endpoint;
use crate::failure::Failure;

pub async fn prepare(args: cli::PrepareArgs) -> Result<(), Failure> {
    let (admin, api) = admin_api(&args.admin)?;
    let server = match &args.server {
        Some(s) => s
            .parse::<endpoint::Endpoint>()
            .map_err(|e| Failure::NeedsPerson {
                message: format!("--server {s:?}: {e}"),
                fix: "give the API server workers use as https://HOST[:PORT]".into(),
            })?
            .to_string(),
        None => admin.server.clone(),
    };
    let anonymous =
        Api::new(&admin.server, &admin.ca_pem, None).map_err(|e| Failure::NeedsPerson {
            message: format!("the admin kubeconfig's CA cannot be used: {e}"),
            fix: admin::AdminError::NoCa(String::new()).fix(),
        })?;
    let opts = prepare::Options {
        server,
        ca_pem: admin.ca_pem.clone(),
        dry_run: args.dry_run,
        signer_timeout: args.signer_timeout,
    };
    let text = args.output == Output::Text;
    let report = prepare::run(&api, &anonymous, &admin.user, &opts, &mut |plan| {
        if text {
            print!("{}", prepare::render_text(plan, true));
        }
    })
    .await?;
    match args.output {
        Output::Json => print_json(&report)?,
        Output::Text if !args.dry_run => print!("{}", prepare::render_text(&report, false)),
        Output::Text => {}
    }
    let failed = report.failed();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::NeedsPerson {
        message: format!(
            "the control plane is not ready for joins: {}",
            failed.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
        ),
        fix: failed
            .iter()
            .filter_map(|i| i.fix.clone())
            .collect::<Vec<_>>()
            .join("; "),
    })
}
