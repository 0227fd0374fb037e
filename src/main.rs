//! kubejoin's command line: parses the arguments, runs the command, prints the whole
//! error chain and the fix, and exits with the failure's status.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use kubejoin::cli::{self, Cli, ClusterArgs, Command, DiscoverArgs, Output, RunArgs, StatusArgs};
use kubejoin::cluster::{self, Api, admin, prepare, tokens};
use kubejoin::config::{self, ConfigError};
use kubejoin::failure::{Failure, exit};
use kubejoin::{
    clock, discovery, doctor, endpoint, fsutil, init, join, kubeconfig, lock, logging, pin,
    preflight, reset, systemd,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    if matches!(
        cli.command,
        Command::Run(_)
            | Command::Plan(_)
            | Command::Discover(_)
            | Command::Preflight(_)
            | Command::Doctor(_)
            | Command::Cluster(_)
            | Command::Token(_)
    ) {
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
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Plan(join) => runtime.block_on(run(RunArgs {
            join,
            dry_run: true,
        })),
        Command::Discover(args) => runtime.block_on(discover(args)),
        Command::Status(args) => runtime.block_on(status(args)),
        Command::Reset(args) => runtime.block_on(reset(args)),
        Command::Config(cli::ConfigCommand::Init(args)) => config_init(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "kubejoin", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage { dir } => manpage(dir.as_deref()),
        Command::Preflight(args) => runtime.block_on(preflight_command(args)),
        Command::Doctor(args) => runtime.block_on(doctor(args)),
        Command::Cluster(cli::ClusterCommand::Prepare(args)) => {
            runtime.block_on(cluster_prepare(args))
        }
        Command::Token(cli::TokenCommand::Create(args)) => runtime.block_on(token_create(args)),
        Command::Token(cli::TokenCommand::List(args)) => runtime.block_on(token_list(args)),
        Command::Token(cli::TokenCommand::Delete(args)) => runtime.block_on(token_delete(args)),
    };
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
    let kind = match failure.exit_code() {
        exit::TRUST => "trust",
        exit::NEEDS_PERSON => "config",
        _ => "transient",
    };
    if logging::to_journal() {
        tracing::error!(kind, exit_code = failure.exit_code(), "{text}");
    } else {
        eprintln!("{text}");
    }
}

/// The settings from the files, the systemd credential and the flags.
fn settings(args: ClusterArgs) -> Result<config::Settings, Failure> {
    let overrides = config::Overrides {
        servers: args.server,
        token_file: args.token_file,
        ca_cert_hashes: args.ca_cert_hashes,
        unsafe_skip_ca_verification: args.unsafe_skip_ca_verification,
        timeout: args.timeout,
    };
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY");
    Ok(config::load(
        args.config.config.as_deref(),
        &overrides,
        credentials.as_deref().map(Path::new),
    )?)
}

async fn run(
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

/// One run at a time on this host (`run`, `plan`, `reset`).
async fn take_lock(wait: std::time::Duration) -> Result<lock::RunLock, Failure> {
    lock::acquire(std::path::Path::new(lock::LOCK_FILE), wait)
        .await
        .map_err(|e| Failure::Transient {
            fix: e.fix(),
            message: e.to_string(),
        })
}

async fn reset(args: cli::ResetArgs) -> Result<(), Failure> {
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

fn manpage(dir: Option<&Path>) -> Result<(), Failure> {
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

fn config_init(args: cli::InitArgs) -> Result<(), Failure> {
    let flag = |flag: &'static str, message: String| {
        Failure::Config(ConfigError {
            origin: config::Origin::Flag(flag),
            key: None,
            message,
        })
    };
    let servers = args
        .server
        .iter()
        .map(|s| {
            s.parse::<endpoint::Endpoint>()
                .map_err(|e| flag("--server", format!("{s:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pins = pin::parse_all(&args.ca_cert_hashes).map_err(|(i, e)| {
        flag(
            "--ca-cert-hash",
            format!("{:?}: {e}", args.ca_cert_hashes[i]),
        )
    })?;
    let text = match args.output {
        cli::InitOutput::Config => {
            init::config_toml(&servers, &pins, &args.token_file.display().to_string())
        }
        cli::InitOutput::CloudInit => {
            use config::TokenReader;
            let source = if args.token_file.as_os_str() == "-" {
                config::TokenSource::Stdin
            } else {
                config::TokenSource::File(args.token_file.clone())
            };
            let token = config::DiskTokens.read(&source, &config::Origin::Flag("--token-file"))?;
            init::cloud_init(&servers, &pins, &token)
        }
    };
    print!("{text}");
    Ok(())
}

async fn preflight_command(args: cli::JoinArgs) -> Result<(), Failure> {
    let mut settings = settings(args.cluster)?;
    let (bus, kubelet_active) = match systemd::dbus::Systemd::connect().await {
        Ok(s) => match s.status(kubejoin::kubelet::files::KUBELET_UNIT).await {
            Ok(k) => {
                join::resolve_runtime(&mut settings, &s).await?;
                (Ok(()), k.is_active())
            }
            Err(e) => (Err(e.to_string()), false),
        },
        Err(e) => (Err(e.to_string()), false),
    };
    let node = join::node_kubelet(&settings)?;
    let facts = preflight::inspect(
        &settings.kubelet,
        &node.version,
        node.profile.as_ref(),
        settings.host.swap,
        settings.host.swap_zram,
        bus,
        kubelet_active,
    );
    let checks = preflight::evaluate(&facts, &settings.kubelet, &args.ignore_preflight_errors);
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&checks).map_err(anyhow::Error::from)?
        ),
        Output::Text => print!("{}", preflight::render_text(&checks)),
    }
    // Each check's fix is printed above: the error names the checks only.
    let Some(failure) = preflight::stop(&checks) else {
        return Ok(());
    };
    let errors = preflight::errors(&checks);
    let message = format!(
        "{} preflight check(s) failed: {}",
        errors.len(),
        errors.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    );
    let fix = "see each check's fix above, or skip one with --ignore-preflight-errors=NAME".into();
    Err(match failure {
        Failure::Transient { .. } => Failure::Transient { message, fix },
        _ => Failure::NeedsPerson { message, fix },
    })
}

async fn status(args: StatusArgs) -> Result<(), Failure> {
    let state = join::load_state()?;
    let kubelet = match systemd::dbus::Systemd::connect().await {
        Ok(s) => s.status(kubejoin::kubelet::files::KUBELET_UNIT).await.ok(),
        Err(_) => None,
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "last_run": state, "kubelet": kubelet })
        ),
        Output::Text => {
            match &state {
                Some(s) => println!(
                    "last run:      {} (finished {})",
                    s["outcome"].as_str().unwrap_or("?"),
                    clock::format_utc(s["finished"].as_i64().unwrap_or(0))
                ),
                None => println!("last run:      none ({} does not exist)", join::STATE_FILE),
            }
            if let Some(phases) = state.as_ref().and_then(|s| s["phases"].as_array()) {
                let text: Vec<String> = phases
                    .iter()
                    .map(|p| format!("{} {} ms", p["phase"].as_str().unwrap_or("?"), p["ms"]))
                    .collect();
                println!("phases:        {}", text.join(", "));
            }
            match &kubelet {
                Some(k) => println!("kubelet:       {} ({})", k.active_state, k.sub_state),
                None => println!("kubelet:       unknown (systemd not reachable over D-Bus)"),
            }
            let node = state
                .as_ref()
                .and_then(|s| serde_json::from_value::<join::NodeIn>(s["node"].clone()).ok());
            if let Some(node) = node {
                print!("{}", join::render_node(&node));
            }
        }
    }
    Ok(())
}

async fn discover(args: DiscoverArgs) -> Result<(), Failure> {
    let settings = settings(args.cluster)?;
    let cluster = &settings.cluster;
    tracing::info!(
        phase = "discovery",
        token_id = cluster.token.id(),
        servers = %cluster.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
        pins = cluster.ca_cert_hashes.len(),
        unsafe_skip_ca_verification = cluster.unsafe_skip_ca_verification,
        timeout_s = cluster.discovery_timeout.as_secs(),
        "discovery starting"
    );
    let found = discovery::discover(cluster).await?;

    let written = match &args.write_kubeconfig {
        Some(path) => {
            let contents =
                kubeconfig::render_bootstrap(&found.server, &found.ca_pem, &cluster.token);
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

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?
    );
    Ok(())
}

async fn doctor(args: cli::DoctorArgs) -> Result<(), Failure> {
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

/// The admin kubeconfig, read, and the API client over it.
fn admin_api(args: &cli::AdminArgs) -> Result<(admin::Admin, Api), Failure> {
    let env = std::env::var("KUBECONFIG").ok();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let path = admin::locate(args.kubeconfig.as_deref(), env.as_deref(), home.as_deref());
    let read_error = |e: std::io::Error| admin::AdminError::Read {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let text = std::fs::read_to_string(&path).map_err(read_error)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let admin = admin::parse(&text, dir, &|p| std::fs::read(p))?;
    let api = Api::admin(&admin)?;
    tracing::info!(kubeconfig = %path.display(), server = %admin.server, user = %admin.user, "admin kubeconfig read");
    Ok((admin, api))
}

async fn cluster_prepare(args: cli::PrepareArgs) -> Result<(), Failure> {
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

/// What a worker needs of cluster-info: its server and its CA's pins.
async fn worker_values(api: &Api) -> Result<(endpoint::Endpoint, Vec<pin::CaPin>), Failure> {
    let missing = || {
        Failure::NeedsPerson {
        message: "the cluster has no usable kube-public/cluster-info, from which workers learn the server and CA".into(),
        fix: "run `kubejoin cluster prepare` first".into(),
    }
    };
    let cm = api
        .get_opt(cluster::CLUSTER_INFO)
        .await?
        .ok_or_else(missing)?;
    let info = kubejoin::cluster_info::read(&cm).map_err(|_| missing())?;
    let ca = kubejoin::x509::parse_pem_bundle(&info.ca_pem).map_err(|_| missing())?;
    Ok((info.server, ca.iter().map(pin::CaPin::of).collect()))
}

async fn token_create(args: cli::TokenCreateArgs) -> Result<(), Failure> {
    if let Some(g) = args.groups.iter().find(|g| !tokens::valid_group(g)) {
        return Err(Failure::NeedsPerson {
            message: format!("--groups: {g:?} is not a bootstrap token group"),
            fix: "give groups of the form system:bootstrappers:NAME ([a-z0-9:-], ending in a letter or digit), comma-separated".into(),
        });
    }
    let (_, api) = admin_api(&args.admin)?;
    let (server, pins) = worker_values(&api).await?;
    let token = tokens::generate();
    let ttl = (!args.ttl.is_zero()).then_some(args.ttl);
    let spec = tokens::Spec {
        ttl,
        description: args.description.clone(),
        groups: args.groups.clone(),
        authentication: true,
    };
    let expires = tokens::create(&api, &token, &spec).await?;
    tracing::info!(
        token_id = token.id(),
        expires = expires.as_deref().unwrap_or("never"),
        "bootstrap token created"
    );
    let signed = tokens::wait_signed(&api, token.id(), std::time::Duration::from_secs(15)).await?;
    if signed.is_none() {
        eprintln!(
            "kubejoin: warning: cluster-info holds no signature for token {} 15 s after its creation; workers will wait for it\n  fix: {}",
            token.id(),
            prepare::SIGNER_FIX
        );
    }
    let servers = [server];
    match args.output {
        cli::TokenOutput::Config => print!(
            "{}",
            init::config_toml_with_token(&servers, &pins, &token).as_str()
        ),
        cli::TokenOutput::CloudInit => print!("{}", init::cloud_init(&servers, &pins, &token)),
        cli::TokenOutput::Json => print_json(&serde_json::json!({
            "token": token.expose().as_str(),
            "id": token.id(),
            "expires": expires,
            "server": servers[0].to_string(),
            "ca_cert_hashes": pins.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "groups": args.groups,
            "description": args.description,
            "signed": signed.is_some(),
        }))?,
    }
    Ok(())
}

async fn token_list(args: cli::TokenListArgs) -> Result<(), Failure> {
    let (_, api) = admin_api(&args.admin)?;
    let rows = tokens::list(&api).await?;
    match args.output {
        Output::Json => print_json(&rows)?,
        Output::Text => print!("{}", tokens::render_list(&rows)),
    }
    Ok(())
}

async fn token_delete(args: cli::TokenDeleteArgs) -> Result<(), Failure> {
    for id in &args.ids {
        let message = if id.contains('.') {
            "give the token's id only (the 6 characters before the dot): a whole token on a command line is readable by every user".to_string()
        } else if id.len() != kubejoin::token::ID_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            format!("{id:?} is not a token id: 6 characters of [a-z0-9]")
        } else {
            continue;
        };
        return Err(Failure::NeedsPerson {
            message,
            fix: "`kubejoin token list` shows the ids".into(),
        });
    }
    let (_, api) = admin_api(&args.admin)?;
    for id in &args.ids {
        match tokens::delete(&api, id).await {
            Ok(()) => println!("bootstrap token {id} deleted"),
            Err(e) if e.status() == Some(404) => {
                return Err(Failure::NeedsPerson {
                    message: format!(
                        "there is no bootstrap token {id} (no Secret kube-system/bootstrap-token-{id})"
                    ),
                    fix: "`kubejoin token list` shows the cluster's tokens".into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
