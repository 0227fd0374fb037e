//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Joins this Linux node to a Kubernetes cluster with a bootstrap token.
#[derive(Debug, Parser)]
#[command(name = "kubejoin", version, about, after_help = crate::failure::exit::help())]
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
    ///
    /// kubelet's configuration is, field by field: the cluster's (kube-system/kubelet-config
    /// as kubeadm publishes it, read with the bootstrap token), else kubejoin's defaults;
    /// then what this node needs (its runtime's endpoint and cgroup driver, kubelet's health
    /// endpoint, resolvConf where systemd-resolved runs); then [kubelet.config] and
    /// cluster_dns and cluster_domain in the configuration. `kubejoin plan` shows where
    /// each field came from.
    #[command(after_help = crate::failure::exit::help())]
    Run(RunArgs),
    /// Print what `kubejoin run` would change (as `run --dry-run`) and change nothing
    #[command(after_help = crate::failure::exit::help())]
    Plan(JoinArgs),
    /// Learn the cluster's CA from kube-public/cluster-info, verified by token and CA pin
    #[command(after_help = crate::failure::exit::help())]
    Discover(DiscoverArgs),
    /// Check this host before a join: each check with its severity and fix
    #[command(after_help = crate::failure::exit::help())]
    Preflight(JoinArgs),
    /// Write a worker's configuration, or its whole cloud-init user-data
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The control plane's half of a join, with an admin kubeconfig
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Create, list and delete bootstrap tokens, with an admin kubeconfig
    #[command(subcommand)]
    Token(TokenCommand),
    /// On a worker: would a join succeed? Each check with its verdict and fix
    ///
    /// With only this node's configuration: the API server reachable over TLS; cluster-info
    /// readable anonymously (403 names the RBAC objects to add, 404 the ConfigMap); its
    /// signature for this token id (else whether the token is unknown or expired, or the
    /// bootstrap signer does not run); the CA pin; this host's clock; whether the token may
    /// create CSRs and whether they would be approved automatically (SelfSubjectAccessReview
    /// as the token, over TLS trusting only the pinned CA); kubelet, the runtime and their
    /// cgroup driver. Changes nothing. Exit status 0 only when a join would succeed.
    #[command(after_help = crate::failure::exit::help())]
    Doctor(DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), kubejoin(8); with --dir, write it, one page per command
    /// (kubejoin-run(8), kubejoin-reset(8), ...) and the configuration's,
    /// kubejoin-config.toml(5), into DIR
    Manpage {
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Show the last run (/var/lib/kubejoin/state.json) and kubelet.service's state
    #[command(after_help = crate::failure::exit::help())]
    Status(StatusArgs),
    /// Undo what kubejoin changed on this host, as its runs recorded it
    ///
    /// kubelet stopped and disabled over D-Bus; every file kubejoin created removed; every
    /// file it edited (/etc/fstab, /etc/docker/daemon.json, /etc/containerd/config.toml)
    /// restored byte for byte from its .kubejoin-orig backup; swap units unmasked; the
    /// runtime restarted if its configuration changed back; /var/lib/kubelet removed if
    /// kubejoin made it. A file changed by someone else since is left alone and named.
    /// Planned first: --dry-run prints the plan and changes nothing.
    #[command(after_help = crate::failure::exit::help())]
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
    #[command(after_help = crate::failure::exit::help())]
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// The package repository a worker's cloud-init user-data installs kubejoin from.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// With --output cloud-init: install kubejoin from this repository (as
    /// packaging/repo.sh makes it: URL/apt for apt, URL/rpm for dnf), trusted through
    /// --repo-key only. Without it, the user-data's `packages: [kubejoin]` uses the
    /// repositories the image already has.
    #[arg(long, value_name = "URL", requires = "repo_key")]
    pub repo: Option<String>,

    /// The repository's public signing key, ASCII-armoured (packaging/repo.sh writes
    /// kubejoin-archive-keyring.asc).
    #[arg(long, value_name = "FILE", requires = "repo")]
    pub repo_key: Option<PathBuf>,
}

/// The admin kubeconfig of `cluster` and `token`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else
    /// /etc/kubernetes/admin.conf]. Its credentials are sent only to its server, over TLS
    /// trusting only its CA, and are never printed or logged.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Check and create what workers need of the control plane, each shown in a plan first
    ///
    /// The ConfigMap kube-public/cluster-info (kubeadm's shape, from the kubeconfig's server
    /// and CA; an existing one that differs is reported, never overwritten), the Role and
    /// RoleBinding that let anonymous users read it, the ClusterRoleBindings that let
    /// bootstrap tokens create CSRs and have them approved automatically and let nodes renew
    /// their certificates. Rights granted by other objects count (the API server is asked,
    /// with SubjectAccessReview); what is missing is created with kubeadm's names. Then a
    /// throwaway token checks that kube-controller-manager's bootstrap signer signs
    /// cluster-info. Run it again at any time: it changes nothing that is in place.
    #[command(after_help = crate::failure::exit::help())]
    Prepare(PrepareArgs),
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub admin: AdminArgs,

    /// The API server URL cluster-info names for workers [default: the kubeconfig's].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// Print the plan and change nothing (the signer is then not probed).
    #[arg(long)]
    pub dry_run: bool,

    /// How long to wait for the bootstrap signer to sign the probe token.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::config::parse_duration)]
    pub signer_timeout: std::time::Duration,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token and print a worker's configuration, user-data or JSON
    ///
    /// The token is drawn from the OS's secure random source; its Secret
    /// kube-system/bootstrap-token-<id> may authenticate and sign cluster-info, expires
    /// after --ttl and carries --groups. The server and CA pin printed are those of the
    /// cluster's cluster-info (run `kubejoin cluster prepare` first). kubejoin waits a
    /// moment for the bootstrap signer's signature and warns when it does not come. The
    /// token's secret is printed only on standard output, in the format asked for. A
    /// single-use token (--single-use, the default with --output cloud-init) is deleted
    /// on the cluster by the node that joins with it, once that node is in.
    #[command(after_help = crate::failure::exit::help())]
    Create(TokenCreateArgs),
    /// List the cluster's bootstrap tokens (never their secrets)
    #[command(after_help = crate::failure::exit::help())]
    List(TokenListArgs),
    /// Delete bootstrap tokens by id
    #[command(after_help = crate::failure::exit::help())]
    Delete(TokenDeleteArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenOutput {
    /// /etc/kubejoin/config.toml with the token inside (write it with mode 0600)
    Config,
    /// A worker's whole #cloud-config user-data
    CloudInit,
    Json,
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub admin: AdminArgs,

    /// How long the token is valid ("0": it never expires, as kubeadm's --ttl 0).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = ttl)]
    pub ttl: std::time::Duration,

    /// A description stored in the token's Secret.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,

    /// Extra groups the token authenticates as, each system:bootstrappers:...
    #[arg(long, value_name = "GROUP,...", value_delimiter = ',', default_value = crate::cluster::tokens::DEFAULT_GROUP)]
    pub groups: Vec<String>,

    /// What to print.
    #[arg(long, value_enum, default_value_t = TokenOutput::Config)]
    pub output: TokenOutput,

    #[command(flatten)]
    pub repo: RepoArgs,

    /// The node that joins with the token deletes it on the cluster once it is in, and
    /// every copy of it dies with it (a Role and RoleBinding let the token delete its own
    /// Secret and nothing else). The default with --output cloud-init; otherwise give
    /// --single-use. --single-use=false: a token for several nodes.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub single_use: Option<bool>,
}

impl TokenCreateArgs {
    /// Whether the token is single-use: as asked, else with cloud-init's user-data.
    pub fn single_use(&self) -> bool {
        self.single_use
            .unwrap_or(self.output == TokenOutput::CloudInit)
    }
}

/// A TTL; zero: the token never expires.
fn ttl(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" || s == "0s" {
        return Ok(std::time::Duration::ZERO);
    }
    crate::config::parse_duration(s)
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[command(flatten)]
    pub admin: AdminArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct TokenDeleteArgs {
    #[command(flatten)]
    pub admin: AdminArgs,

    /// Token ids (the 6 characters before the dot).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
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

    #[command(flatten)]
    pub repo: RepoArgs,
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
    fn token_create_arguments() {
        let Cli {
            command: Command::Token(TokenCommand::Create(a)),
        } = Cli::try_parse_from(["kubejoin", "token", "create", "--ttl", "0"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.ttl, std::time::Duration::ZERO);
        assert_eq!(a.groups, [crate::cluster::tokens::DEFAULT_GROUP]);
        assert_eq!(a.output, TokenOutput::Config);
        assert!(!a.single_use());
        assert!(Cli::try_parse_from(["kubejoin", "token", "delete"]).is_err());
        let single_use = |args: &[&str]| {
            let mut all = vec!["kubejoin", "token", "create"];
            all.extend(args);
            match Cli::try_parse_from(all).unwrap().command {
                Command::Token(TokenCommand::Create(a)) => a.single_use(),
                _ => panic!(),
            }
        };
        assert!(single_use(&["--single-use"]));
        assert!(single_use(&["--output", "cloud-init"]));
        assert!(!single_use(&[
            "--output",
            "cloud-init",
            "--single-use=false"
        ]));
        assert!(single_use(&["--output", "json", "--single-use=true"]));
    }

    #[test]
    fn completions_and_man_pages_cover_the_control_planes_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kubejoin", &mut out);
            let script = String::from_utf8(out).unwrap();
            for word in [
                "doctor",
                "prepare",
                "signer-timeout",
                "create",
                "ttl",
                "delete",
            ] {
                assert!(script.contains(word), "{shell:?}: {word}");
            }
        }
        let cmd = Cli::command();
        let create = cmd
            .find_subcommand("token")
            .and_then(|t| t.find_subcommand("create"))
            .unwrap()
            .clone();
        let mut page = Vec::new();
        clap_mangen::Man::new(create).render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.contains("\\-\\-ttl") && page.contains("secure random"),
            "{page}"
        );
    }

    #[test]
    fn there_is_no_token_flag() {
        assert!(Cli::try_parse_from(["kubejoin", "discover", "--token", "x"]).is_err());
    }
}
