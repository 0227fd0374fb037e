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

/// A package repository as `packaging/repo.sh` makes it (`URL/apt`, suite `stable`,
/// component `main`; `URL/rpm`), and the public key its metadata is signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    url: String,
    key: String,
}

impl Repository {
    /// Checks the URL (http, https or file, without spaces or quotes) and that `key` is one
    /// ASCII-armoured OpenPGP public key block; the error says which is wrong, and how.
    pub fn new(url: &str, key: &str) -> Result<Repository, RepoError> {
        let url = url.trim_end_matches('/');
        let scheme_ok = ["https://", "http://", "file:///"]
            .iter()
            .any(|s| url.starts_with(s) && url.len() > s.len());
        if !scheme_ok || url.contains(|c: char| c.is_whitespace() || "\"'[]#".contains(c)) {
            return Err(RepoError::Url(format!(
                "{url:?} is not a repository URL: give https://HOST/PATH (or http://, file:///), the directory that holds apt/ and rpm/"
            )));
        }
        let key = key.trim();
        let (begin, end) = (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----END PGP PUBLIC KEY BLOCK-----",
        );
        if !key.starts_with(begin) || !key.ends_with(end) || key.matches(begin).count() != 1 {
            return Err(RepoError::Key(
                "it is not one ASCII-armoured OpenPGP public key (-----BEGIN PGP PUBLIC KEY BLOCK-----): export it with gpg --armor --export KEYID".into(),
            ));
        }
        Ok(Repository {
            url: url.to_string(),
            key: key.to_string(),
        })
    }
}

/// What is wrong with a repository: its URL, or its key.
#[derive(Debug, PartialEq, Eq)]
pub enum RepoError {
    Url(String),
    Key(String),
}

/// Where the user-data puts the repository's key: apt's signed-by reads an armoured key
/// from a `.asc` file; dnf's gpgkey, a file URL.
const APT_KEY: &str = "/etc/apt/keyrings/kubejoin.asc";
const RPM_KEY: &str = "/etc/pki/rpm-gpg/RPM-GPG-KEY-kubejoin";

/// A worker's whole `#cloud-config`: the configuration and the token (both 0600), the
/// package, and kubejoin started without waiting, so that cloud-init's own units are never
/// waited on by it (kubejoin.service is ordered after cloud-config.service, and
/// cloud-final.service runs this after multi-user.target). With `repo`, the package comes
/// from that repository, trusted through its key only: `apt: sources:` with `signed-by`
/// (Debian, Ubuntu) and `yum_repos:` with `gpgcheck` and `repo_gpgcheck` (the RHEL
/// family); cloud-init applies the one of the machine's family. The keys are written by
/// `write_files`, which runs before both (no gpg needed on the machine).
pub fn cloud_init(
    servers: &[Endpoint],
    pins: &[CaPin],
    token: &BootstrapToken,
    repo: Option<&Repository>,
) -> String {
    let config = config_toml(servers, pins, "/etc/kubejoin/token");
    let indent = |text: &str| -> String { text.lines().map(|l| format!("      {l}\n")).collect() };
    let (key_files, sources) = match repo {
        None => (String::new(), String::new()),
        Some(r) => {
            let key = indent(&r.key);
            (
                format!(
                    "\x20 # The repository's signing key, for apt and for dnf.\n\
                     \x20 - path: {APT_KEY}\n\
                     \x20   permissions: \"0644\"\n\
                     \x20   content: |\n\
                     {key}\
                     \x20 - path: {RPM_KEY}\n\
                     \x20   permissions: \"0644\"\n\
                     \x20   content: |\n\
                     {key}"
                ),
                format!(
                    "# kubejoin's repository, trusted through its key only.\n\
                     apt:\n\
                     \x20 sources:\n\
                     \x20   kubejoin.list:\n\
                     \x20     source: \"deb [signed-by={APT_KEY}] {url}/apt stable main\"\n\
                     yum_repos:\n\
                     \x20 kubejoin:\n\
                     \x20   name: kubejoin\n\
                     \x20   baseurl: {url}/rpm\n\
                     \x20   enabled: true\n\
                     \x20   gpgcheck: true\n\
                     \x20   repo_gpgcheck: true\n\
                     \x20   gpgkey: file://{RPM_KEY}\n",
                    url = r.url
                ),
            )
        }
    };
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
         {key_files}\
         {sources}\
         packages:\n\
         \x20 - kubejoin\n\
         runcmd:\n\
         \x20 # --no-block: kubejoin.service is Type=notify and runs until kubelet is up.\n\
         \x20 - [systemctl, enable, --now, --no-block, kubejoin.service]\n",
        indented = indent(&config),
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
        let text = cloud_init(&servers, &pins, &token, None);
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

    const KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ1Rlc3QWCSsGAQQB2kcPAQEHQK8=\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n";

    #[test]
    fn the_user_data_installs_from_the_repository_through_its_key_only() {
        let (servers, pins, token) = values();
        let repo = Repository::new("https://pkgs.example/kubejoin/", KEY).unwrap();
        let text = cloud_init(&servers, &pins, &token, Some(&repo));
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            v["apt"]["sources"]["kubejoin.list"]["source"],
            "deb [signed-by=/etc/apt/keyrings/kubejoin.asc] https://pkgs.example/kubejoin/apt stable main"
        );
        let yum = &v["yum_repos"]["kubejoin"];
        assert_eq!(yum["baseurl"], "https://pkgs.example/kubejoin/rpm");
        assert_eq!(yum["gpgcheck"], true);
        assert_eq!(yum["repo_gpgcheck"], true);
        assert_eq!(
            yum["gpgkey"],
            "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-kubejoin"
        );
        let files = v["write_files"].as_array().unwrap();
        for (i, path) in [
            (2, "/etc/apt/keyrings/kubejoin.asc"),
            (3, "/etc/pki/rpm-gpg/RPM-GPG-KEY-kubejoin"),
        ] {
            assert_eq!(files[i]["path"], path);
            assert_eq!(files[i]["permissions"], "0644");
            assert_eq!(files[i]["content"], KEY);
        }
        assert_eq!(v["packages"][0], "kubejoin");
        // The token stays in its 0600 file only.
        assert_eq!(text.matches("abcdef.0123456789abcdef").count(), 1);
    }

    #[test]
    fn a_repository_needs_a_url_and_one_public_key() {
        for url in [
            "pkgs.example",
            "ftp://x/y",
            "https://",
            "https://a b",
            "https://x/\"y",
        ] {
            assert!(
                matches!(Repository::new(url, KEY), Err(RepoError::Url(_))),
                "{url}"
            );
        }
        for key in [
            "",
            "mDMEZ1Rlc3Q=",
            &KEY.replace("PUBLIC KEY", "PRIVATE KEY"),
            &format!("{KEY}{KEY}"),
        ] {
            assert!(
                matches!(
                    Repository::new("https://pkgs.example", key),
                    Err(RepoError::Key(_))
                ),
                "{key}"
            );
        }
        assert!(Repository::new("file:///srv/repo", KEY).is_ok());
    }
}
