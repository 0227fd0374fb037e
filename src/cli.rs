//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  transient failure (API server unreachable, cluster-info not ready, timeout): worth a restart
  2  usage or configuration error: fix the configuration first
  3  trust failure (bad signature, CA pin mismatch, cluster-info changed, wrong certificate):
     possibly an attack, never retried";

/// Joins this Linux node to a Kubernetes cluster with a bootstrap token.
#[derive(Debug, Parser)]
#[command(name = "kubejoin", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join this node: discovery, kubelet's files, kubelet.service started over D-Bus
    ///
    /// Discovery as `kubejoin discover`, then the bootstrap kubeconfig (0600), the cluster
    /// CA, a KubeletConfiguration and kubelet.service, then daemon-reload, enable and start
    /// over the system D-Bus. Everything is planned first; a second run on a joined node
    /// changes nothing.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Print what `kubejoin run` would change (as `run --dry-run`) and change nothing
    #[command(after_help = EXIT_CODES)]
    Plan(JoinArgs),
    /// Learn the cluster's CA from kube-public/cluster-info, verified by token and CA pin
    #[command(after_help = EXIT_CODES)]
    Discover(DiscoverArgs),
    /// Check this host before a join: each check with its severity and fix
    #[command(after_help = EXIT_CODES)]
    Preflight(JoinArgs),
    /// Write a worker's configuration, or its whole cloud-init user-data
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), kubejoin(8); with --dir, write it and one page per
    /// command (kubejoin-run(8), kubejoin-reset(8), ...) into DIR
    Manpage {
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Show the last run (/var/lib/kubejoin/state.json) and kubelet.service's state
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// Undo what kubejoin changed on this host, as its runs recorded it
    ///
    /// kubelet stopped and disabled over D-Bus; every file kubejoin created removed; every
    /// file it edited (/etc/fstab, /etc/docker/daemon.json, /etc/containerd/config.toml)
    /// restored byte for byte from its .kubejoin-orig backup; swap units unmasked; the
    /// runtime restarted if its configuration changed back; /var/lib/kubelet removed if
    /// kubejoin made it. A file changed by someone else since is left alone and named.
    /// Planned first: --dry-run prints the plan and changes nothing.
    #[command(after_help = EXIT_CODES)]
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Print what would be undone and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Restore or remove files even where someone changed them since kubejoin wrote them.
    #[arg(long)]
    pub force: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// How long to wait for another kubejoin run on this host to finish (/run/kubejoin/lock).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = lock_timeout)]
    pub lock_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub join: JoinArgs,

    /// Print what would change (files with diffs, D-Bus calls) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `run`, `plan` and `preflight` share: the configuration, the preflight checks to
/// downgrade, and the output format.
#[derive(Debug, Args)]
pub struct JoinArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Preflight checks whose errors are only warnings (names as printed; "all" for every one).
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// run and plan: how long to wait for another kubejoin run on this host to finish
    /// (/run/kubejoin/lock) before giving up with exit status 1.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = lock_timeout)]
    pub lock_timeout: std::time::Duration,
}

fn lock_timeout(s: &str) -> Result<std::time::Duration, String> {
    if s == "0s" || s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    crate::config::parse_duration(s)
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print /etc/kubejoin/config.toml, or with --output cloud-init a worker's whole
    /// #cloud-config, from the values `kubeadm token create --print-join-command` gives
    #[command(after_help = EXIT_CODES)]
    Init(InitArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitOutput {
    Config,
    CloudInit,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// API server, https://HOST[:PORT] or HOST:PORT (repeatable).
    #[arg(long, value_name = "URL", required = true)]
    pub server: Vec<String>,

    /// CA public-key pin, sha256:HEX (repeatable).
    #[arg(long = "ca-cert-hash", value_name = "sha256:HEX", required = true)]
    pub ca_cert_hashes: Vec<String>,

    /// With --output config: where the worker finds its token. With --output cloud-init:
    /// the file to read the token from ("-" for stdin), to put into the user-data.
    #[arg(long, value_name = "PATH", default_value = "/etc/kubejoin/token")]
    pub token_file: std::path::PathBuf,

    /// What to print.
    #[arg(long, value_enum, default_value_t = InitOutput::Config)]
    pub output: InitOutput,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file [default: /etc/kubejoin/config.toml]; drop-ins are read from
    /// config.d/*.toml beside it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format of the result.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Also write the bootstrap kubeconfig (mode 0600) to PATH.
    #[arg(long, value_name = "PATH")]
    pub write_kubeconfig: Option<PathBuf>,
}

/// The configuration file and the flags that override its `[cluster]` table.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// API server, https://HOST[:PORT] or HOST:PORT (repeat to try several in turn).
    #[arg(long, value_name = "URL")]
    pub server: Vec<String>,

    /// File holding the bootstrap token ("-" for stdin). The token is never taken from
    /// the command line, where every user can read it.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// CA public-key pin, sha256:HEX, as kubeadm's --discovery-token-ca-cert-hash (repeatable).
    #[arg(long = "ca-cert-hash", value_name = "sha256:HEX")]
    pub ca_cert_hashes: Vec<String>,

    /// Trust whatever CA cluster-info names, checked only by the token's signature.
    #[arg(long)]
    pub unsafe_skip_ca_verification: bool,

    /// How long discovery may take, e.g. 30s, 5m (default 5m).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn there_is_no_token_flag() {
        assert!(Cli::try_parse_from(["kubejoin", "discover", "--token", "x"]).is_err());
    }
}
