//! What the commands share: the settings from the flags, one run at a time, the admin's
//! API, JSON output.

use std::path::Path;

use crate::cli::{self, ClusterArgs};
use crate::cluster::{Api, admin};
use crate::config;
use crate::failure::Failure;
use crate::lock;

/// The settings from the files, the systemd credential and the flags.
pub fn settings(args: ClusterArgs) -> Result<config::Settings, Failure> {
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

/// One run at a time on this host (`run`, `plan`, `reset`).
pub async fn take_lock(wait: std::time::Duration) -> Result<lock::RunLock, Failure> {
    lock::acquire(std::path::Path::new(lock::LOCK_FILE), wait)
        .await
        .map_err(|e| Failure::Transient {
            fix: e.fix(),
            message: e.to_string(),
        })
}

pub fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?
    );
    Ok(())
}

/// The admin kubeconfig, read, and the API client over it.
pub fn admin_api(args: &cli::AdminArgs) -> Result<(admin::Admin, Api), Failure> {
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

/// The repository of `--repo` and `--repo-key`, which only cloud-init's user-data holds.
pub fn repository(
    args: &cli::RepoArgs,
    cloud_init: bool,
) -> Result<Option<crate::init::Repository>, Failure> {
    let (Some(url), Some(key_file)) = (&args.repo, &args.repo_key) else {
        return Ok(None);
    };
    let flag = |flag: &'static str, message: String| {
        Failure::Config(crate::config::ConfigError {
            origin: crate::config::Origin::Flag(flag),
            key: None,
            message,
            transient: false,
        })
    };
    if !cloud_init {
        return Err(flag(
            "--repo",
            "only --output cloud-init installs the package: give --output cloud-init, or leave --repo out".into(),
        ));
    }
    let key = std::fs::read_to_string(key_file)
        .map_err(|e| flag("--repo-key", format!("{}: {e}", key_file.display())))?;
    crate::init::Repository::new(url, &key)
        .map(Some)
        .map_err(|e| match e {
            crate::init::RepoError::Url(m) => flag("--repo", m),
            crate::init::RepoError::Key(m) => {
                flag("--repo-key", format!("{}: {m}", key_file.display()))
            }
        })
}
