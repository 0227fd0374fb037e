//! `kubejoin reset`.

use super::context::take_lock;
use crate::cli::{self, Output};
use crate::failure::Failure;
use crate::reset;

pub async fn run(args: cli::ResetArgs) -> Result<(), Failure> {
    let _lock = take_lock(args.lock_timeout).await?;
    let report = reset::run(args.dry_run, args.force).await?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
        ),
        Output::Text => print!("{}", reset::render_text(&report, args.dry_run)),
    }
    Ok(())
}
