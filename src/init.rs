//! `kubejoin config init`: from the values an operator has after creating a token (server,
//! CA pin, token file) to a worker's `/etc/kubejoin/config.toml`, or to the whole
//! cloud-init user-data of a worker. Pure rendering of validated values.

use crate::endpoint::Endpoint;
use crate::pin::CaPin;
use crate::token::BootstrapToken;

/// The configuration file, reading the token from `token_file`.
pub fn config_toml(servers: &[Endpoint], pins: &[CaPin], token_file: &str) -> String {
    let list = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let server = match servers {
        [one] => format!("server = \"{one}\""),
        many => format!(
            "servers = [{}]",
            list(many.iter().map(|s| s.to_string()).collect())
        ),
    };
    format!(
        "# /etc/kubejoin/config.toml, from `kubejoin config init`. Every key is documented in\n\
         # /etc/kubejoin/config.toml.example.\n\
         [cluster]\n\
         {server}\n\
         token_file = \"{token_file}\"\n\
         ca_cert_hashes = [{}]\n",
        list(pins.iter().map(|p| p.to_string()).collect())
    )
}

/// The configuration file with the token inside: what `kubejoin token create` prints,
/// to be written with mode 0600 (kubejoin refuses it otherwise).
pub fn config_toml_with_token(
    servers: &[Endpoint],
    pins: &[CaPin],
    token: &BootstrapToken,
) -> zeroize::Zeroizing<String> {
    let text = config_toml(servers, pins, "");
    zeroize::Zeroizing::new(
        text.replace(
            "token_file = \"\"\n",
            &format!("token = \"{}\"\n", token.expose().as_str()),
        )
        .replace(
            "# /etc/kubejoin/config.toml, from `kubejoin config init`.",
            "# /etc/kubejoin/config.toml (mode 0600: it holds the token), from `kubejoin token create`.",
        ),
    )
}

/// A worker's whole `#cloud-config`: the configuration and the token (both 0600), the
/// package, and kubejoin started without waiting, so that cloud-init's own units are never
/// waited on by it (kubejoin.service is ordered after cloud-config.service, and
/// cloud-final.service runs this after multi-user.target).
pub fn cloud_init(servers: &[Endpoint], pins: &[CaPin], token: &BootstrapToken) -> String {
    let config = config_toml(servers, pins, "/etc/kubejoin/token");
    let indented: String = config.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "#cloud-config\n\
         # A Kubernetes worker joined by kubejoin, from `kubejoin config init --output cloud-init`.\n\
         # This user-data holds the bootstrap token: give it only to the machine it is for.\n\
         write_files:\n\
         \x20 - path: /etc/kubejoin/config.toml\n\
         \x20   permissions: \"0600\"\n\
         \x20   content: |\n\
         {indented}\
         \x20 - path: /etc/kubejoin/token\n\
         \x20   permissions: \"0600\"\n\
         \x20   content: {token}\n\
         packages:\n\
         \x20 - kubejoin\n\
         runcmd:\n\
         \x20 # --no-block: kubejoin.service is Type=notify and runs until kubelet is up.\n\
         \x20 - [systemctl, enable, --now, --no-block, kubejoin.service]\n",
        token = token.expose().as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> (Vec<Endpoint>, Vec<CaPin>, BootstrapToken) {
        (
            vec!["https://203.0.113.10:6443".parse().unwrap()],
            vec![format!("sha256:{}", "ab".repeat(32)).parse().unwrap()],
            "abcdef.0123456789abcdef".parse().unwrap(),
        )
    }

    #[test]
    fn the_config_is_valid_configuration() {
        let (servers, pins, _) = values();
        let text = config_toml(&servers, &pins, "/etc/kubejoin/token");
        let origin = crate::config::Origin::File("init".into());
        let fragment = crate::config::parse_fragment(&text, &origin).unwrap();
        assert_eq!(
            fragment.cluster.server.as_deref(),
            Some("https://203.0.113.10:6443")
        );
        assert_eq!(
            fragment.cluster.ca_cert_hashes.unwrap()[0],
            pins[0].to_string()
        );
        let two = config_toml(
            &[servers[0].clone(), "10.0.0.2:6443".parse().unwrap()],
            &pins,
            "/t",
        );
        assert!(
            two.contains("servers = [\"https://203.0.113.10:6443\", \"https://10.0.0.2:6443\"]")
        );
    }

    #[test]
    fn the_config_with_the_token_inside() {
        let (servers, pins, token) = values();
        let text = config_toml_with_token(&servers, &pins, &token);
        let origin = crate::config::Origin::File("init".into());
        let fragment = crate::config::parse_fragment(&text, &origin).unwrap();
        assert_eq!(
            fragment.cluster.token.as_deref().map(|t| t.as_str()),
            Some("abcdef.0123456789abcdef")
        );
        assert!(fragment.cluster.token_file.is_none());
        assert!(text.contains("mode 0600"));
    }

    #[test]
    fn the_user_data_is_yaml_with_private_files() {
        let (servers, pins, token) = values();
        let text = cloud_init(&servers, &pins, &token);
        assert!(text.starts_with("#cloud-config\n"));
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let files = v["write_files"].as_array().unwrap();
        assert_eq!(files[0]["path"], "/etc/kubejoin/config.toml");
        assert_eq!(files[0]["permissions"], "0600");
        assert!(
            files[0]["content"]
                .as_str()
                .unwrap()
                .contains("token_file = \"/etc/kubejoin/token\"")
        );
        assert_eq!(files[1]["content"], "abcdef.0123456789abcdef");
        assert_eq!(files[1]["permissions"], "0600");
        assert_eq!(v["runcmd"][0][4], "kubejoin.service");
    }
}
