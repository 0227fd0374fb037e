//! kubejoin's command line: parses the arguments, runs the command (`src/cmd/`), prints
//! the whole error chain and the fix, and exits with the failure's status.

use std::process::ExitCode;

use clap::Parser;
use kubejoin::cli::Cli;
use kubejoin::failure::{Failure, exit};
use kubejoin::{cmd, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cmd::logs_progress(&cli.command));
    if cmd::holds_secrets(&cli.command) {
        // These read the bootstrap token or admin credentials: no core dump of this
        // process may hold them.
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            tracing::warn!("cannot turn core dumps off (PR_SET_DUMPABLE): {e}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubejoin: cannot start the async runtime: {e}");
            return ExitCode::from(exit::TRANSIENT);
        }
    };
    let result = runtime.block_on(cmd::execute(cli.command));
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            report(&failure);
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Prints the whole error chain, one cause per line, then the fix.
fn report(failure: &Failure) {
    let mut text = format!("kubejoin: error: {failure}");
    if let Failure::Other(e) = failure {
        for cause in e.chain().skip(1) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    if let Some(fix) = failure.fix() {
        text.push_str(&format!("\n  fix: {fix}"));
    }
    let kind = exit::kind(failure.exit_code());
    if logging::to_journal() {
        tracing::error!(kind, exit_code = failure.exit_code(), "{text}");
    } else {
        eprintln!("{text}");
    }
}
