//! One module per command: each reads its arguments, calls the library and prints its
//! output; `src/main.rs` only parses the command line and ends with the exit status.

mod cluster;
mod config;
mod context;
mod discover;
mod docs;
mod doctor;
mod preflight;
mod reset;
mod run;
mod status;
mod token;

use crate::cli::{self, Command, RunArgs};
use crate::failure::Failure;

/// Whether the command reads the bootstrap token or admin credentials (no core dump of
/// such a process may hold them).
pub fn holds_secrets(command: &Command) -> bool {
    matches!(
        command,
        Command::Run(_)
            | Command::Plan(_)
            | Command::Discover(_)
            | Command::Preflight(_)
            | Command::Doctor(_)
            | Command::Cluster(_)
            | Command::Token(_)
    )
}

/// Whether the command's progress is logged (INFO and up): a join's phases, discovery's
/// tries. The operator's commands print their own report, so only warnings and errors are
/// logged beside it.
pub fn logs_progress(command: &Command) -> bool {
    !matches!(command, Command::Cluster(_) | Command::Token(_))
}

/// Runs one command.
pub async fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Plan(join) => {
            run::run(RunArgs {
                join,
                dry_run: true,
            })
            .await
        }
        Command::Discover(args) => discover::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Reset(args) => reset::run(args).await,
        Command::Config(cli::ConfigCommand::Init(args)) => config::init(args),
        Command::Completions { shell } => docs::completions(shell),
        Command::Manpage { dir } => docs::manpage(dir.as_deref()),
        Command::Preflight(args) => preflight::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Cluster(cli::ClusterCommand::Prepare(args)) => cluster::prepare(args).await,
        Command::Token(cli::TokenCommand::Create(args)) => token::create(args).await,
        Command::Token(cli::TokenCommand::List(args)) => token::list(args).await,
        Command::Token(cli::TokenCommand::Delete(args)) => token::delete(args).await,
    }
}
