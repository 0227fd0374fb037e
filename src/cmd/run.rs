//! `kubejoin run` and `kubejoin plan` (a run with `--dry-run`).

use super::context::{settings, take_lock};
use crate::cli::{Output, RunArgs};
use crate::failure::Failure;
use crate::join;

pub async fn run(
    RunArgs {
        join: args,
        dry_run,
    }: RunArgs,
) -> Result<(), Failure> {
    let _lock = take_lock(args.lock_timeout).await?;
    let report = join::run(
        || settings(args.cluster),
        &args.ignore_preflight_errors,
        dry_run,
    )
    .await?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
        ),
        Output::Text => print!("{}", join::render_text(&report, dry_run)),
    }
    Ok(())
}
