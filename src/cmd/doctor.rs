//! `kubejoin doctor`: why a join would not succeed, one line per check.

use super::context::{print_json, settings};
use crate::cli::{self, Output};
use crate::doctor;
use crate::failure::Failure;

pub async fn run(args: cli::DoctorArgs) -> Result<(), Failure> {
    let settings = settings(args.cluster)?;
    let report = doctor::run(&settings).await;
    match args.output {
        Output::Json => print_json(&report)?,
        Output::Text => print!("{}", doctor::render_text(&report)),
    }
    let Some(failures) = report.failures() else {
        return Ok(());
    };
    Err(Failure::Transient {
        message: format!("a join would not succeed: {failures}"),
        fix: "see each check's fix above, then run kubejoin doctor again".into(),
    })
}
