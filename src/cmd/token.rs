//! `kubejoin token create|list|delete`: bootstrap tokens, with an admin kubeconfig.

use super::context::{admin_api, print_json};
use crate::cli::{self, Output};
use crate::cluster::{Api, prepare, tokens};
use crate::endpoint;
use crate::failure::Failure;
use crate::init;
use crate::pin;

/// What a worker needs of cluster-info: its server and its CA's pins.
async fn worker_values(api: &Api) -> Result<(endpoint::Endpoint, Vec<pin::CaPin>), Failure> {
    let missing = || {
        Failure::NeedsPerson {
        message: "the cluster has no usable kube-public/cluster-info, from which workers learn the server and CA".into(),
        fix: "run `kubejoin cluster prepare` first".into(),
    }
    };
    let cm = api
        .get_opt(crate::cluster_info::PATH)
        .await?
        .ok_or_else(missing)?;
    let info = crate::cluster_info::read(&cm).map_err(|_| missing())?;
    let ca = crate::x509::parse_pem_bundle(&info.ca_pem).map_err(|_| missing())?;
    Ok((info.server, ca.iter().map(pin::CaPin::of).collect()))
}

pub async fn create(args: cli::TokenCreateArgs) -> Result<(), Failure> {
    if let Some(g) = args.groups.iter().find(|g| !tokens::valid_group(g)) {
        return Err(Failure::NeedsPerson {
            message: format!("--groups: {g:?} is not a bootstrap token group"),
            fix: "give groups of the form system:bootstrappers:NAME ([a-z0-9:-], ending in a letter or digit), comma-separated".into(),
        });
    }
    let repo = super::context::repository(&args.repo, args.output == cli::TokenOutput::CloudInit)?;
    let (_, api) = admin_api(&args.admin)?;
    let (server, pins) = worker_values(&api).await?;
    let token = tokens::generate();
    let ttl = (!args.ttl.is_zero()).then_some(args.ttl);
    let spec = tokens::Spec {
        ttl,
        description: args.description.clone(),
        groups: args.groups.clone(),
        authentication: true,
        single_use: args.single_use(),
    };
    let expires = tokens::create(&api, &token, &spec).await?;
    tracing::info!(
        token_id = token.id(),
        expires = expires.as_deref().unwrap_or("never"),
        single_use = spec.single_use,
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
        cli::TokenOutput::CloudInit => print!(
            "{}",
            init::cloud_init(&servers, &pins, &token, repo.as_ref())
        ),
        cli::TokenOutput::Json => print_json(&serde_json::json!({
            "token": token.expose().as_str(),
            "id": token.id(),
            "expires": expires,
            "server": servers[0].to_string(),
            "ca_cert_hashes": pins.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "groups": args.groups,
            "description": args.description,
            "signed": signed.is_some(),
            "single_use": spec.single_use,
        }))?,
    }
    Ok(())
}

pub async fn list(args: cli::TokenListArgs) -> Result<(), Failure> {
    let (_, api) = admin_api(&args.admin)?;
    let rows = tokens::list(&api).await?;
    match args.output {
        Output::Json => print_json(&rows)?,
        Output::Text => print!("{}", tokens::render_list(&rows)),
    }
    Ok(())
}

pub async fn delete(args: cli::TokenDeleteArgs) -> Result<(), Failure> {
    for id in &args.ids {
        let message = if id.contains('.') {
            "give the token's id only (the 6 characters before the dot): a whole token on a command line is readable by every user".to_string()
        } else if id.len() != crate::token::ID_LEN
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
