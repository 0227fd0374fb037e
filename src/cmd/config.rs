//! `kubejoin config init`: a configuration file or cloud-init user-data for this node.

use crate::cli;
use crate::config::{self, ConfigError};
use crate::endpoint;
use crate::failure::Failure;
use crate::pin;

pub fn init(args: cli::InitArgs) -> Result<(), Failure> {
    let flag = |flag: &'static str, message: String| {
        Failure::Config(ConfigError {
            origin: config::Origin::Flag(flag),
            key: None,
            message,
            transient: false,
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
    let repo = super::context::repository(&args.repo, args.output == cli::InitOutput::CloudInit)?;
    let text = match args.output {
        cli::InitOutput::Config => {
            crate::init::config_toml(&servers, &pins, &args.token_file.display().to_string())
        }
        cli::InitOutput::CloudInit => {
            use config::TokenReader;
            let source = if args.token_file.as_os_str() == "-" {
                config::TokenSource::Stdin
            } else {
                config::TokenSource::File(args.token_file.clone())
            };
            let token = config::DiskTokens.read(&source, &config::Origin::Flag("--token-file"))?;
            crate::init::cloud_init(&servers, &pins, &token, repo.as_ref())
        }
    };
    print!("{text}");
    Ok(())
}
