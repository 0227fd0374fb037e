//! `kubejoin manpage` and `kubejoin completions`: the man pages and shell completions the
//! packages install, from the command-line definitions.

use std::path::Path;

use crate::cli::Cli;
use crate::failure::Failure;
use crate::fsutil;

/// Shell completions for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "kubejoin", &mut std::io::stdout());
    Ok(())
}

pub fn manpage(dir: Option<&Path>) -> Result<(), Failure> {
    let cmd = <Cli as clap::CommandFactory>::command().name("kubejoin");
    let render = |cmd: clap::Command| {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.disable_help_subcommand(true))
            .section("8")
            .render(&mut page)
            .map(|()| page)
            .map_err(|e| anyhow::Error::from(e).context("cannot render the man page"))
    };
    let Some(dir) = dir else {
        use std::io::Write;
        std::io::stdout()
            .write_all(&render(cmd)?)
            .map_err(|e| anyhow::Error::from(e).context("cannot write the man page"))?;
        return Ok(());
    };
    // kubejoin(8), then kubejoin-<command>(8) for each command, as the first page names them.
    // Each page is named kubejoin-run and so on; its synopsis says `kubejoin run`.
    fn pages(cmd: clap::Command, out: &mut Vec<clap::Command>) {
        let bin = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
        for sub in cmd.get_subcommands() {
            let name = format!("{}-{}", cmd.get_name(), sub.get_name());
            let sub_bin = format!("{bin} {}", sub.get_name());
            pages(sub.clone().name(name).bin_name(sub_bin), out);
        }
        out.push(cmd);
    }
    let mut all = Vec::new();
    pages(cmd.bin_name("kubejoin"), &mut all);
    for cmd in all {
        let path = dir.join(format!("{}.8", cmd.get_name()));
        fsutil::write_atomic(&path, &render(cmd)?, 0o644)?;
    }
    Ok(())
}
