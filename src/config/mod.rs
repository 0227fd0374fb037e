//! Configuration: `/etc/kubejoin/config.toml`, then `config.d/*.toml` beside it in name
//! order (later wins, key by key), then command-line flags. Raw fragments are all
//! `Option`; [`validate`] turns the merged result into typed [`Settings`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::endpoint::Endpoint;
use crate::host::HostSettings;
use crate::pin::{self, CaPin};
use crate::token::{self, BootstrapToken};

pub mod kubelet;
pub mod kubelet_fields;
mod origin;
pub mod token_command;
pub use kubelet::{KubeletSettings, KubeletWaits};
pub use origin::{Cidr, ConfigError, DEFAULT_PATH, Origin, parse_duration};

/// kubeadm's JoinConfiguration `timeouts.discovery` default.
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// One configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    #[serde(default)]
    pub cluster: ClusterFragment,
    #[serde(default)]
    pub kubelet: kubelet::KubeletFragment,
    #[serde(default)]
    pub host: HostFragment,
    #[serde(default)]
    pub proxy: ProxyFragment,
    /// `[registries."<host>"]`: mirrors and CAs for containerd.
    #[serde(default)]
    pub registries: std::collections::BTreeMap<String, RegistryFragment>,
}

/// `[registries."<host>"]`: one registry as containerd reaches it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFragment {
    /// Mirrors tried in order before the registry itself.
    pub mirrors: Option<Vec<String>>,
    /// The CA the registry's and its mirrors' certificates chain to (a PEM file).
    pub ca: Option<PathBuf>,
    /// A file (mode 0600) holding `username:password` for the registry.
    pub credentials_file: Option<PathBuf>,
}

/// `[proxy]`: the proxy for the internet, for the container runtime and kubelet.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFragment {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Option<Vec<String>>,
}

/// `[host]`: which host-preparation steps run.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFragment {
    /// Turn swap off now and after reboot (default true).
    pub swap: Option<bool>,
    /// Kernel modules and sysctls kubelet's networking needs (default true).
    pub kernel: Option<bool>,
    /// Turn zram swap off too (default false: it belongs to its generator).
    pub swap_zram: Option<bool>,
    /// With docker: remove its nat leftovers (default true).
    pub netfilter: Option<bool>,
    /// With docker: delete docker0 (default true).
    pub docker0: Option<bool>,
    /// `"docker"` (the seed's settings, nat leftovers, docker0) or `"none"` (default).
    pub container_runtime: Option<String>,
    /// The pod sandbox ("pause") image, for the runtime.
    pub sandbox_image: Option<String>,
    /// A directory of image archives imported into the runtime before kubelet starts.
    pub image_archives: Option<PathBuf>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFragment {
    pub server: Option<String>,
    pub servers: Option<Vec<String>>,
    pub token: Option<Zeroizing<String>>,
    pub token_file: Option<PathBuf>,
    pub token_command: Option<Vec<String>>,
    pub token_command_timeout: Option<String>,
    pub keep_token: Option<bool>,
    pub ca_cert_hashes: Option<Vec<String>>,
    pub unsafe_skip_ca_verification: Option<bool>,
    pub discovery_timeout: Option<String>,
    pub use_configured_server: Option<bool>,
    pub pinned_refetch: Option<bool>,
}

impl fmt::Debug for ClusterFragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterFragment")
            .field("server", &self.server)
            .field("servers", &self.servers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("token_command", &self.token_command)
            .field("token_command_timeout", &self.token_command_timeout)
            .field("keep_token", &self.keep_token)
            .field("ca_cert_hashes", &self.ca_cert_hashes)
            .field(
                "unsafe_skip_ca_verification",
                &self.unsafe_skip_ca_verification,
            )
            .field("discovery_timeout", &self.discovery_timeout)
            .field("use_configured_server", &self.use_configured_server)
            .field("pinned_refetch", &self.pinned_refetch)
            .finish()
    }
}

/// Parses one file's text. TOML errors are reported by line and column only: the
/// parser's own message quotes the offending line, which may hold the token.
pub fn parse_fragment(text: &str, origin: &Origin) -> Result<Fragment, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        ConfigError::new(origin, None, format!("{at}{}", e.message().trim_end()))
    })
}

/// Where the token comes from, after merging.
#[derive(Clone)]
pub enum TokenSource {
    Inline(Zeroizing<String>),
    File(PathBuf),
    Stdin,
    /// A program's standard output (`cluster.token_command`), run with this timeout.
    Command {
        argv: Vec<String>,
        timeout: Duration,
        /// `[proxy]`'s variables, for a program that fetches the token over the internet.
        env: Vec<(String, String)>,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            TokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
            TokenSource::Stdin => f.write_str("Stdin"),
            TokenSource::Command { argv, timeout, .. } => f
                .debug_struct("Command")
                .field("argv", argv)
                .field("timeout", timeout)
                .finish(),
        }
    }
}

/// A value and the place that set it.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// Fragments merged key by key: later fragments win.
#[derive(Debug, Default)]
pub struct Merged {
    /// The main file, named in errors about keys that nothing set.
    main_file: Option<PathBuf>,
    /// The main file is there and holds nothing (flags may still say everything).
    main_empty: bool,
    /// No file was read at all: neither the main file nor a drop-in exists.
    nothing_read: bool,
    kubelet: kubelet::KubeletMerged,
    host: HostFragment,
    host_runtime_origin: Option<Origin>,
    /// The last file that set `sandbox_image` or `image_archives`, for errors.
    host_images_origin: Option<Origin>,
    /// Each registry as the last file that named it gave it (whole).
    registries: std::collections::BTreeMap<String, (RegistryFragment, Origin)>,
    proxy: ProxyFragment,
    /// The last file that set a `[proxy]` key, for errors.
    proxy_origin: Option<Origin>,
    servers: Option<Sourced<Vec<String>>>,
    token: Option<Sourced<TokenSource>>,
    token_command_timeout: Option<Sourced<String>>,
    keep_token: Option<Sourced<bool>>,
    ca_cert_hashes: Option<Sourced<Vec<String>>>,
    unsafe_skip_ca_verification: Option<Sourced<bool>>,
    discovery_timeout: Option<Sourced<String>>,
    use_configured_server: Option<Sourced<bool>>,
    pinned_refetch: Option<Sourced<bool>>,
}

fn set<T>(slot: &mut Option<Sourced<T>>, value: Option<T>, origin: &Origin) {
    if let Some(value) = value {
        *slot = Some(Sourced {
            value,
            origin: origin.clone(),
        });
    }
}

impl Merged {
    pub fn add(&mut self, fragment: Fragment, origin: &Origin) -> Result<(), ConfigError> {
        self.kubelet.add(fragment.kubelet, origin);
        if fragment.host.swap.is_some() {
            self.host.swap = fragment.host.swap;
        }
        if fragment.host.kernel.is_some() {
            self.host.kernel = fragment.host.kernel;
        }
        if fragment.host.swap_zram.is_some() {
            self.host.swap_zram = fragment.host.swap_zram;
        }
        if fragment.host.netfilter.is_some() {
            self.host.netfilter = fragment.host.netfilter;
        }
        if fragment.host.docker0.is_some() {
            self.host.docker0 = fragment.host.docker0;
        }
        if fragment.host.container_runtime.is_some() {
            self.host.container_runtime = fragment.host.container_runtime;
            self.host_runtime_origin = Some(origin.clone());
        }
        if fragment.host.sandbox_image.is_some() || fragment.host.image_archives.is_some() {
            self.host_images_origin = Some(origin.clone());
        }
        if fragment.host.sandbox_image.is_some() {
            self.host.sandbox_image = fragment.host.sandbox_image;
        }
        if fragment.host.image_archives.is_some() {
            self.host.image_archives = fragment.host.image_archives;
        }
        for (name, r) in fragment.registries {
            self.registries.insert(name, (r, origin.clone()));
        }
        let p = fragment.proxy;
        if p.http.is_some() || p.https.is_some() || p.no_proxy.is_some() {
            self.proxy_origin = Some(origin.clone());
        }
        if p.http.is_some() {
            self.proxy.http = p.http;
        }
        if p.https.is_some() {
            self.proxy.https = p.https;
        }
        if p.no_proxy.is_some() {
            self.proxy.no_proxy = p.no_proxy;
        }
        let c = fragment.cluster;
        if c.server.is_some() && c.servers.is_some() {
            return Err(ConfigError::new(
                origin,
                Some("cluster.servers"),
                "set either cluster.server or cluster.servers, not both",
            ));
        }
        let sources = [
            c.token.is_some(),
            c.token_file.is_some(),
            c.token_command.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(ConfigError::new(
                origin,
                Some(if c.token_command.is_some() {
                    "cluster.token_command"
                } else {
                    "cluster.token_file"
                }),
                "set one of cluster.token, cluster.token_file and cluster.token_command, not several",
            ));
        }
        if let Some(argv) = &c.token_command
            && argv.first().is_none_or(|p| p.is_empty())
        {
            return Err(ConfigError::new(
                origin,
                Some("cluster.token_command"),
                "is empty: give the program and its arguments, e.g. [\"/usr/local/bin/get-join-token\", \"--cluster\", \"prod\"]",
            ));
        }
        set(&mut self.servers, c.server.map(|s| vec![s]), origin);
        set(&mut self.servers, c.servers, origin);
        set(&mut self.token, c.token.map(TokenSource::Inline), origin);
        set(&mut self.token, c.token_file.map(TokenSource::File), origin);
        let command = c.token_command.map(|argv| TokenSource::Command {
            argv,
            timeout: token_command::DEFAULT_TIMEOUT,
            env: Vec::new(),
        });
        set(&mut self.token, command, origin);
        set(
            &mut self.token_command_timeout,
            c.token_command_timeout,
            origin,
        );
        set(&mut self.keep_token, c.keep_token, origin);
        set(&mut self.ca_cert_hashes, c.ca_cert_hashes, origin);
        set(
            &mut self.unsafe_skip_ca_verification,
            c.unsafe_skip_ca_verification,
            origin,
        );
        set(&mut self.discovery_timeout, c.discovery_timeout, origin);
        set(
            &mut self.use_configured_server,
            c.use_configured_server,
            origin,
        );
        set(&mut self.pinned_refetch, c.pinned_refetch, origin);
        Ok(())
    }

    /// Command-line flags: they override every file.
    pub fn apply(&mut self, o: &Overrides) {
        if !o.servers.is_empty() {
            set(
                &mut self.servers,
                Some(o.servers.clone()),
                &Origin::Flag("--server"),
            );
        }
        if let Some(path) = &o.token_file {
            let source = if path.as_os_str() == "-" {
                TokenSource::Stdin
            } else {
                TokenSource::File(path.clone())
            };
            set(&mut self.token, Some(source), &Origin::Flag("--token-file"));
        }
        if !o.ca_cert_hashes.is_empty() {
            set(
                &mut self.ca_cert_hashes,
                Some(o.ca_cert_hashes.clone()),
                &Origin::Flag("--ca-cert-hash"),
            );
        }
        if o.unsafe_skip_ca_verification {
            set(
                &mut self.unsafe_skip_ca_verification,
                Some(true),
                &Origin::Flag("--unsafe-skip-ca-verification"),
            );
        }
        set(
            &mut self.discovery_timeout,
            o.timeout.clone(),
            &Origin::Flag("--timeout"),
        );
    }

    /// A systemd credential named `token` wins over the files, not over `--token-file`.
    pub fn apply_credential(&mut self, path: PathBuf) {
        let from_flag = matches!(&self.token, Some(s) if matches!(s.origin, Origin::Flag(_)));
        if !from_flag {
            set(
                &mut self.token,
                Some(TokenSource::File(path.clone())),
                &Origin::Credential(path),
            );
        }
    }
}

/// What the command line can override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub servers: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub ca_cert_hashes: Vec<String>,
    pub unsafe_skip_ca_verification: bool,
    pub timeout: Option<String>,
}

/// Validated settings for the `[cluster]` table.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub servers: Vec<Endpoint>,
    /// The bootstrap token, or why there is none: a node that has joined needs none (and
    /// kubejoin removes the token's file once it has joined), so its absence is an error
    /// only where a token is used ([`ClusterSettings::token`]).
    pub bootstrap_token: Result<BootstrapToken, ConfigError>,
    /// The token's file as the configuration names it (`token_file`, or the default file
    /// beside it), which kubejoin removes once the node has joined; not a systemd
    /// credential, not `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `keep_token`: keep that file and the bootstrap kubeconfig after the join.
    pub keep_token: bool,
    /// Where else the token is on this node, which kubejoin does not remove: `cluster.token`
    /// in a file, a systemd credential, a file given with `--token-file`.
    pub token_elsewhere: Option<String>,
    pub ca_cert_hashes: Vec<CaPin>,
    pub unsafe_skip_ca_verification: bool,
    pub discovery_timeout: Duration,
    pub use_configured_server: bool,
    /// kubeadm's flow: after the signed, pinned CA is established, fetch cluster-info a
    /// second time over TLS that trusts only that CA. By default the certificate chain
    /// the first connection presented is verified against the CA instead: the same
    /// proof without a second request.
    pub pinned_refetch: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster: ClusterSettings,
    /// `[proxy]`, as configured (completed for the units by the join).
    pub proxy: Option<crate::host::proxy::Proxy>,
    pub kubelet: KubeletSettings,
    pub kubelet_waits: KubeletWaits,
    pub host: HostSettings,
    /// Where each `[kubelet]` key was set, for errors found after validation (a key that
    /// cannot work with the kubelet found).
    pub kubelet_origins: std::collections::BTreeMap<&'static str, Origin>,
}

/// Reads token files; injected so that [`validate`] stays testable without a disk.
pub trait TokenReader {
    fn read(&self, source: &TokenSource, origin: &Origin) -> Result<BootstrapToken, ConfigError>;
    /// Whether a token file exists (a missing one is an error only where a token is used).
    fn exists(&self, _path: &Path) -> bool {
        true
    }
}

impl ClusterSettings {
    /// The bootstrap token, for what needs one (discovery, a join, doctor's checks).
    pub fn token(&self) -> Result<&BootstrapToken, ConfigError> {
        self.bootstrap_token.as_ref().map_err(Clone::clone)
    }
}

/// Turns the merged configuration into settings, naming the file and key of any error.
pub fn validate(m: Merged, tokens: &dyn TokenReader) -> Result<Settings, ConfigError> {
    let main_file = m.main_file.clone();
    let main_empty = m.main_empty;
    let nothing_read = m.nothing_read;
    let missing = |key: &str, what: &str| {
        let origin = Origin::File(
            main_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH)),
        );
        // With no server either, nothing configures the join at all; flags that give a
        // server are meant to go with an empty file.
        if main_empty && key == "cluster.server" {
            return empty_main_file(&origin, key);
        }
        if nothing_read && key == "cluster.server" {
            return no_configuration(&origin);
        }
        ConfigError {
            origin,
            key: Some(key.to_string()),
            message: format!("is required: {what}"),
            transient: false,
        }
    };
    let servers = m.servers.ok_or_else(|| {
        missing(
            "cluster.server",
            "the API server, e.g. server = \"https://203.0.113.10:6443\" (or --server)",
        )
    })?;
    if servers.value.is_empty() {
        return Err(ConfigError::new(
            &servers.origin,
            Some("cluster.servers"),
            "is empty; list at least one API server",
        ));
    }
    let endpoints = servers
        .value
        .iter()
        .map(|s| {
            s.parse::<Endpoint>().map_err(|e| {
                ConfigError::new(
                    &servers.origin,
                    Some("cluster.server"),
                    format!("{s:?}: {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let none = || {
        missing(
            "cluster.token",
            "the bootstrap token, as cluster.token, cluster.token_file, cluster.token_command, a systemd credential named \"token\", or --token-file",
        )
    };
    let token_file = match &m.token {
        Some(Sourced {
            value: TokenSource::File(path),
            origin: Origin::File(_),
        }) => Some(path.clone()),
        _ => None,
    };
    let token_elsewhere = m.token.as_ref().and_then(|t| match (&t.value, &t.origin) {
        (TokenSource::Inline(_), origin) => Some(format!("cluster.token in {origin}")),
        (TokenSource::File(_), Origin::Credential(path)) => Some(format!(
            "the systemd credential \"token\" ({}; systemd's: remove its LoadCredential= line)",
            path.display()
        )),
        (TokenSource::File(path), Origin::Flag(flag)) => {
            Some(format!("{} (given with {flag})", path.display()))
        }
        _ => None,
    });
    let proxy = validate_proxy(&m.proxy, m.proxy_origin.as_ref())?;
    // No token, or its file gone: an error only where a token is used.
    let bootstrap_token = match m.token {
        None => Err(none()),
        Some(Sourced {
            value: TokenSource::File(path),
            origin,
        }) if !tokens.exists(&path) => Err(ConfigError::new(
            &origin,
            Some("cluster.token_file"),
            format!(
                "{} does not exist (kubejoin removes the token's file once the node has joined; \
                 a new join needs a new token)",
                path.display()
            ),
        )),
        Some(mut token) => {
            if let (TokenSource::Command { timeout, .. }, Some(t)) =
                (&mut token.value, &m.token_command_timeout)
            {
                *timeout = parse_duration(&t.value).map_err(|e| {
                    ConfigError::new(&t.origin, Some("cluster.token_command_timeout"), e)
                })?;
            }
            // A secret store's CLI fetches over the internet: through [proxy], as the
            // runtime does; the API servers direct.
            if let (TokenSource::Command { env, .. }, Some(p)) = (&mut token.value, &proxy) {
                let servers: Vec<String> = endpoints.iter().map(|e| e.host_name()).collect();
                *env =
                    crate::host::proxy::variables(&crate::host::proxy::complete(p, &servers, &[]));
            }
            Ok(tokens.read(&token.value, &token.origin)?)
        }
    };

    let unsafe_skip = m
        .unsafe_skip_ca_verification
        .map(|s| s.value)
        .unwrap_or(false);
    let pins = match m.ca_cert_hashes {
        Some(pins) => pin::parse_all(&pins.value).map_err(|(i, e)| {
            ConfigError::new(
                &pins.origin,
                Some(&format!("cluster.ca_cert_hashes[{i}]")),
                e.to_string(),
            )
        })?,
        None => Vec::new(),
    };
    if pins.is_empty() && !unsafe_skip {
        return Err(missing(
            "cluster.ca_cert_hashes",
            "at least one CA pin (sha256:<hex>, from `kubeadm token create --print-join-command` or \
             `openssl x509 -pubkey -in ca.crt | openssl pkey -pubin -outform der | sha256sum`); \
             only unsafe_skip_ca_verification = true runs without one",
        ));
    }
    let discovery_timeout = match m.discovery_timeout {
        Some(t) => parse_duration(&t.value)
            .map_err(|e| ConfigError::new(&t.origin, Some("cluster.discovery_timeout"), e))?,
        None => DEFAULT_DISCOVERY_TIMEOUT,
    };
    let kubelet_origins = m.kubelet.origins().clone();
    let (kubelet, kubelet_waits) = kubelet::validate(m.kubelet)?;
    let runtime = match m.host.container_runtime.as_deref() {
        None => crate::host::Runtime::Detect,
        Some("none") => crate::host::Runtime::None,
        Some("docker") => crate::host::Runtime::Docker,
        Some("containerd") => crate::host::Runtime::Containerd,
        Some(other) => {
            let origin = m
                .host_runtime_origin
                .clone()
                .unwrap_or(Origin::File(PathBuf::from(DEFAULT_PATH)));
            return Err(ConfigError::new(
                &origin,
                Some("host.container_runtime"),
                format!("{other:?} is not \"docker\", \"containerd\" or \"none\""),
            ));
        }
    };
    let images_origin = m
        .host_images_origin
        .clone()
        .unwrap_or(Origin::File(PathBuf::from(DEFAULT_PATH)));
    let sandbox_image = m
        .host
        .sandbox_image
        .as_deref()
        .map(validate_image)
        .transpose()
        .map_err(|e| ConfigError::new(&images_origin, Some("host.sandbox_image"), e))?;
    if let Some(dir) = &m.host.image_archives
        && !dir.is_absolute()
    {
        return Err(ConfigError::new(
            &images_origin,
            Some("host.image_archives"),
            format!("{} is not an absolute path", dir.display()),
        ));
    }
    let registries = validate_registries(&m.registries)?;
    let mut kubelet = kubelet;
    kubelet.sandbox_image = sandbox_image.clone();
    let host = HostSettings {
        swap: m.host.swap.unwrap_or(true),
        kernel: m.host.kernel.unwrap_or(true),
        runtime,
        systemd_cgroup: kubelet.cgroup_driver == "systemd",
        swap_zram: m.host.swap_zram.unwrap_or(false),
        netfilter: m.host.netfilter.unwrap_or(true),
        docker0: m.host.docker0.unwrap_or(true),
        ipv6: false,
        inhibit_delay: kubelet::inhibit_delay(&kubelet),
        proxy: None,
        sandbox_image,
        registries,
        image_archives: m.host.image_archives.clone(),
    };
    Ok(Settings {
        proxy,
        kubelet,
        kubelet_waits,
        kubelet_origins,
        host,
        cluster: ClusterSettings {
            servers: endpoints,
            bootstrap_token,
            token_file,
            keep_token: m.keep_token.map(|k| k.value).unwrap_or(false),
            token_elsewhere,
            ca_cert_hashes: pins,
            unsafe_skip_ca_verification: unsafe_skip,
            discovery_timeout,
            use_configured_server: m.use_configured_server.map(|s| s.value).unwrap_or(false),
            pinned_refetch: m.pinned_refetch.map(|s| s.value).unwrap_or(false),
        },
    })
}

/// An image reference as the runtimes take it: a name, maybe a tag or digest; no scheme.
fn validate_image(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.contains("://") || s.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(format!(
            "{s:?} is not an image reference (e.g. registry.k8s.io/pause:3.10)"
        ));
    }
    Ok(s.to_string())
}

/// `[registries]`: each name, mirror and CA path checked.
fn validate_registries(
    given: &std::collections::BTreeMap<String, (RegistryFragment, Origin)>,
) -> Result<Vec<crate::host::registry::Registry>, ConfigError> {
    use crate::host::registry::{Registry, validate_mirror, validate_name};
    given
        .iter()
        .map(|(name, (r, origin))| {
            let key = |k: &str| format!("registries.{name:?}{k}");
            let err = |k: &str, e: String| ConfigError::new(origin, Some(&key(k)), e);
            let name = validate_name(name).map_err(|e| err("", e))?;
            let mirrors = r
                .mirrors
                .iter()
                .flatten()
                .map(|m| validate_mirror(m).map_err(|e| err(".mirrors", e)))
                .collect::<Result<Vec<_>, _>>()?;
            for (k, path) in [(".ca", &r.ca), (".credentials_file", &r.credentials_file)] {
                if let Some(path) = path
                    && !path.is_absolute()
                {
                    return Err(err(
                        k,
                        format!("{} is not an absolute path", path.display()),
                    ));
                }
            }
            if mirrors.is_empty() && r.ca.is_none() && r.credentials_file.is_none() {
                return Err(err(
                    "",
                    "sets none of mirrors, ca and credentials_file: there is nothing to configure"
                        .into(),
                ));
            }
            Ok((
                Registry {
                    name,
                    mirrors,
                    ca: r.ca.clone(),
                    credentials: r.credentials_file.clone(),
                },
                origin,
            ))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|mut all| {
            all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            if let Some(w) = all.windows(2).find(|w| w[0].0.name == w[1].0.name) {
                return Err(ConfigError::new(
                    w[1].1,
                    Some(&format!("registries.{:?}", w[1].0.name)),
                    "is configured twice (names differ only in case)",
                ));
            }
            Ok(all.into_iter().map(|(r, _)| r).collect())
        })
}

/// `[proxy]`: `None` without `http` and `https`; each URL and `no_proxy` entry checked.
fn validate_proxy(
    p: &ProxyFragment,
    origin: Option<&Origin>,
) -> Result<Option<crate::host::proxy::Proxy>, ConfigError> {
    use crate::host::proxy::{Proxy, validate_entry, validate_url};
    let origin = origin
        .cloned()
        .unwrap_or(Origin::File(PathBuf::from(DEFAULT_PATH)));
    let err = |key: &str, e: String| ConfigError::new(&origin, Some(key), e);
    if p.http.is_none() && p.https.is_none() {
        if p.no_proxy.is_some() {
            return Err(err(
                "proxy.no_proxy",
                "is set without proxy.http or proxy.https: there is no proxy to bypass".into(),
            ));
        }
        return Ok(None);
    }
    let url = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map(validate_url)
            .transpose()
            .map_err(|e| err(key, e))
    };
    Ok(Some(Proxy {
        http: url("proxy.http", &p.http)?,
        https: url("proxy.https", &p.https)?,
        no_proxy: p
            .no_proxy
            .iter()
            .flatten()
            .map(|e| validate_entry(e).map_err(|e| err("proxy.no_proxy", e)))
            .collect::<Result<_, _>>()?,
    }))
}

/// The files to read: the main file, then `config.d/*.toml` beside it in name order.
pub fn dropins(main: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = main.parent().unwrap_or(Path::new(".")).join("config.d");
    let mut files = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    Ok(files)
}

/// The mode check for anything that holds the token.
pub fn check_private(
    path: &Path,
    mode: u32,
    origin: &Origin,
    key: &str,
) -> Result<(), ConfigError> {
    if mode & 0o077 != 0 {
        return Err(ConfigError::new(
            origin,
            Some(key),
            format!(
                "{} holds the bootstrap token but is readable by group or others (mode {:04o}); run: chmod 600 {}",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The check for a file that names a program kubejoin runs as root (`token_command`):
/// owned by root and writable by no one else.
pub fn check_root_only(
    path: &Path,
    meta: &std::fs::Metadata,
    origin: &Origin,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    if meta.uid() != 0 || mode & 0o022 != 0 {
        return Err(ConfigError::new(
            origin,
            Some("cluster.token_command"),
            format!(
                "{} names a program kubejoin runs as root, but {} (owner uid {}, mode {:04o}); run: chown root: {} && chmod go-w {}",
                path.display(),
                if meta.uid() != 0 {
                    "is not owned by root"
                } else {
                    "others may write it"
                },
                meta.uid(),
                mode & 0o7777,
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Reads the configuration from disk: the main file (missing is fine unless it was named
/// with `--config`), the drop-ins, the systemd credential and the flags.
pub fn load(
    main: Option<&Path>,
    overrides: &Overrides,
    credentials_dir: Option<&Path>,
) -> Result<Settings, ConfigError> {
    use std::os::unix::fs::PermissionsExt;

    let explicit = main.is_some();
    let main = main.unwrap_or(Path::new(DEFAULT_PATH));
    let mut merged = Merged {
        main_file: Some(main.to_path_buf()),
        ..Default::default()
    };
    let mut files = vec![main.to_path_buf()];
    files.extend(dropins(main).map_err(|e| {
        ConfigError::new(
            &Origin::File(main.parent().unwrap_or(Path::new("/")).join("config.d")),
            None,
            format!("cannot list drop-ins: {e}"),
        )
    })?);
    merged.nothing_read = true;
    for (i, path) in files.iter().enumerate() {
        let origin = Origin::File(path.clone());
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if i == 0 && !explicit && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ConfigError::new(&origin, None, format!("cannot read: {e}"))),
        };
        merged.nothing_read = false;
        if i == 0 {
            merged.main_empty = text.trim().is_empty();
        }
        let fragment = parse_fragment(&text, &origin)?;
        let c = &fragment.cluster;
        if c.token_command.is_some() || c.token.is_some() {
            let meta = std::fs::metadata(path)
                .map_err(|e| ConfigError::new(&origin, None, format!("cannot stat: {e}")))?;
            if c.token_command.is_some() {
                check_root_only(path, &meta, &origin)?;
            }
            if c.token.is_some() {
                check_private(path, meta.permissions().mode(), &origin, "cluster.token")?;
            }
        }
        merged.add(fragment, &origin)?;
    }
    // Nothing named a token: the conventional file beside the configuration.
    if merged.token.is_none() {
        let default = main.parent().unwrap_or(Path::new("/")).join("token");
        if default.exists() {
            merged.token = Some(Sourced {
                value: TokenSource::File(default.clone()),
                origin: Origin::File(default),
            });
        }
    }
    if let Some(dir) = credentials_dir {
        let cred = dir.join("token");
        if cred.exists() {
            merged.apply_credential(cred);
        }
    }
    merged.apply(overrides);
    validate(merged, &DiskTokens)
}

/// A required key missing because the main file holds nothing (not even a comment): what
/// a file written at first boot becomes when the power goes before it reaches the disk
/// (cloud-init's write_files does not sync; ext4 then keeps the new file and loses its
/// contents). Said as that, rather than as the first missing key.
fn empty_main_file(origin: &Origin, key: &str) -> ConfigError {
    ConfigError::new(
        origin,
        None,
        format!(
            "is empty, so nothing sets {key}. A file that cloud-init wrote at first boot is left \
             empty when the power goes before it reaches the disk (write_files does not sync): \
             `cloud-init clean --logs --reboot` runs the first boot again from the same \
             user-data; or write the file again"
        ),
    )
}

/// No configuration at all (no main file, no drop-in, no server flag): said as that, with
/// the ways to make one, rather than as the first missing key.
fn no_configuration(origin: &Origin) -> ConfigError {
    ConfigError::new(
        origin,
        None,
        "does not exist, and no drop-in or flag configures this node: kubejoin has no cluster to \
         join. On the control plane, `kubejoin token create --output config` prints this file \
         with a new token (write it with mode 0600), or `kubejoin config init --server URL \
         --ca-cert-hash sha256:HEX` makes it from kubeadm's join command; every key is in \
         `man 5 kubejoin-config.toml` (the packages also install /etc/kubejoin/config.toml.example)"
            .to_string(),
    )
}

/// Reads tokens from files, the credential directory and stdin.
pub struct DiskTokens;

impl TokenReader for DiskTokens {
    fn exists(&self, path: &Path) -> bool {
        // A path that cannot be checked (permissions) counts as there: reading it says why.
        !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    fn read(&self, source: &TokenSource, origin: &Origin) -> Result<BootstrapToken, ConfigError> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;

        let key = match origin {
            Origin::File(_) => "cluster.token_file",
            _ => "token",
        };
        let contents = match source {
            TokenSource::Command { argv, timeout, env } => {
                let key = Some("cluster.token_command");
                let out = token_command::run(argv, env, *timeout).map_err(|e| ConfigError {
                    transient: e.transient,
                    ..ConfigError::new(origin, key, e.message)
                })?;
                return token::parse_file_contents(&out).map_err(|e| {
                    let program = argv.first().map(String::as_str).unwrap_or_default();
                    ConfigError::new(origin, key, format!("{program}'s output: {e}"))
                });
            }
            TokenSource::Inline(t) => {
                return t.parse().map_err(|e: token::TokenError| {
                    ConfigError::new(origin, Some("cluster.token"), e.to_string())
                });
            }
            TokenSource::Stdin => {
                let mut s = Zeroizing::new(String::new());
                std::io::stdin().read_to_string(&mut s).map_err(|e| {
                    ConfigError::new(
                        origin,
                        None,
                        format!("cannot read the token from stdin: {e}"),
                    )
                })?;
                s
            }
            TokenSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| {
                    ConfigError::new(
                        origin,
                        Some(key),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                // The credential directory is systemd's and private to the unit.
                if !matches!(origin, Origin::Credential(_)) {
                    check_private(path, meta.permissions().mode(), origin, key)?;
                }
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(
                        origin,
                        Some(key),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?)
            }
        };
        token::parse_file_contents(&contents)
            .map_err(|e| ConfigError::new(origin, Some(key), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tokens;
    impl TokenReader for Tokens {
        fn read(
            &self,
            source: &TokenSource,
            origin: &Origin,
        ) -> Result<BootstrapToken, ConfigError> {
            match source {
                TokenSource::Inline(t) => t
                    .parse()
                    .map_err(|e: token::TokenError| ConfigError::new(origin, None, e.to_string())),
                _ => Ok("abcdef.0123456789abcdef".parse().unwrap()),
            }
        }
    }

    fn file(n: &str) -> Origin {
        Origin::File(PathBuf::from(n))
    }

    const PIN: &str = "sha256:c5a7d6bff8b0f36878bb9a89ecdb489acb3bce12e8944d37f06d88cb8d80564b";

    fn merged(files: &[(&str, &str)]) -> Result<Merged, ConfigError> {
        let mut m = Merged::default();
        for (name, text) in files {
            let origin = file(name);
            m.add(parse_fragment(text, &origin)?, &origin)?;
        }
        Ok(m)
    }

    #[test]
    fn an_empty_main_file_is_said_to_be_empty_with_the_way_back() {
        let merged = |empty: bool| Merged {
            main_file: Some(PathBuf::from(DEFAULT_PATH)),
            main_empty: empty,
            ..Default::default()
        };
        let said = validate(merged(true), &Tokens).unwrap_err().to_string();
        assert!(
            said.starts_with(
                "/etc/kubejoin/config.toml: is empty, so nothing sets cluster.server."
            ),
            "{said}"
        );
        assert!(said.contains("cloud-init clean --logs --reboot"), "{said}");
        let said = validate(merged(false), &Tokens).unwrap_err().to_string();
        assert!(said.contains("cluster.server: is required"), "{said}");
        let nothing = Merged {
            nothing_read: true,
            ..merged(false)
        };
        let said = validate(nothing, &Tokens).unwrap_err().to_string();
        assert!(
            said.starts_with("/etc/kubejoin/config.toml: does not exist, and no drop-in or flag configures this node"),
            "{said}"
        );
        assert!(
            said.contains("kubejoin token create --output config"),
            "{said}"
        );
    }

    #[test]
    fn later_dropins_win_key_by_key() {
        let m = merged(&[
            (
                "/etc/kubejoin/config.toml",
                &format!("[cluster]\nserver = \"10.0.0.1:6443\"\ntoken = \"abcdef.0123456789abcdef\"\nca_cert_hashes = [\"{PIN}\"]\n"),
            ),
            ("/etc/kubejoin/config.d/10-a.toml", "[cluster]\nserver = \"10.0.0.2:6443\"\n"),
            ("/etc/kubejoin/config.d/20-b.toml", "[cluster]\ndiscovery_timeout = \"1m30s\"\n"),
        ])
        .unwrap();
        let s = validate(m, &Tokens).unwrap().cluster;
        assert_eq!(s.servers[0].to_string(), "https://10.0.0.2:6443");
        assert_eq!(s.discovery_timeout, Duration::from_secs(90));
        assert_eq!(s.ca_cert_hashes.len(), 1);
        assert!(!s.unsafe_skip_ca_verification);
    }

    #[test]
    fn a_proxy_is_checked_and_named_by_its_file() {
        let base = format!(
            "[cluster]\nserver = \"10.0.0.1:6443\"\ntoken = \"abcdef.0123456789abcdef\"\nca_cert_hashes = [\"{PIN}\"]\n"
        );
        let s = validate(merged(&[("/c.toml", &base)]).unwrap(), &Tokens).unwrap();
        assert_eq!(s.proxy, None);
        let s = validate(
            merged(&[
                ("/c.toml", &base),
                (
                    "/d/10-proxy.toml",
                    "[proxy]\nhttps = \"http://proxy:3128/\"\nno_proxy = [\".corp\"]\n",
                ),
            ])
            .unwrap(),
            &Tokens,
        )
        .unwrap();
        let p = s.proxy.unwrap();
        assert_eq!(p.https.as_deref(), Some("http://proxy:3128"));
        assert_eq!(p.http, None);
        assert_eq!(p.no_proxy, [".corp"]);
        for (text, key) in [
            ("[proxy]\nhttp = \"proxy:3128\"\n", "proxy.http"),
            (
                "[proxy]\nhttps = \"http://u:p@proxy:3128\"\n",
                "proxy.https",
            ),
            ("[proxy]\nno_proxy = [\".corp\"]\n", "proxy.no_proxy"),
            (
                "[proxy]\nhttp = \"http://proxy:3128\"\nno_proxy = [\"a b\"]\n",
                "proxy.no_proxy",
            ),
        ] {
            let e = validate(
                merged(&[("/c.toml", &base), ("/d/10-proxy.toml", text)]).unwrap(),
                &Tokens,
            )
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert_eq!(e.origin, file("/d/10-proxy.toml"), "{text}");
        }
    }

    #[test]
    fn registries_and_images_are_checked_and_named_by_their_file() {
        let base = format!(
            "[cluster]\nserver = \"10.0.0.1:6443\"\ntoken = \"abcdef.0123456789abcdef\"\nca_cert_hashes = [\"{PIN}\"]\n"
        );
        let s = validate(
            merged(&[
                ("/c.toml", &base),
                (
                    "/d/10-registries.toml",
                    "[host]\nsandbox_image = \"mirror.corp/pause:3.10\"\nimage_archives = \"/var/lib/images\"\n\n\
                     [registries.\"docker.io\"]\nmirrors = [\"https://mirror.corp/\"]\n\n\
                     [registries.\"Registry.Corp:5000\"]\nca = \"/etc/kubejoin/corp.pem\"\n",
                ),
                // A later file replaces a registry whole.
                (
                    "/d/20-hub.toml",
                    "[registries.\"docker.io\"]\nmirrors = [\"https://other.corp\"]\n",
                ),
            ])
            .unwrap(),
            &Tokens,
        )
        .unwrap();
        assert_eq!(
            s.host.sandbox_image.as_deref(),
            Some("mirror.corp/pause:3.10")
        );
        assert_eq!(s.kubelet.sandbox_image, s.host.sandbox_image);
        assert_eq!(
            s.host.image_archives.as_deref(),
            Some(Path::new("/var/lib/images"))
        );
        let names: Vec<(&str, Vec<String>, bool)> = s
            .host
            .registries
            .iter()
            .map(|r| (r.name.as_str(), r.mirrors.clone(), r.ca.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("docker.io", vec!["https://other.corp".to_string()], false),
                ("registry.corp:5000", vec![], true),
            ]
        );
        for (text, key) in [
            (
                "[host]\nsandbox_image = \"https://x/pause\"\n",
                "host.sandbox_image",
            ),
            (
                "[host]\nimage_archives = \"images\"\n",
                "host.image_archives",
            ),
            (
                "[registries.\"https://a\"]\nca = \"/a.pem\"\n",
                "registries.\"https://a\"",
            ),
            (
                "[registries.a]\nmirrors = [\"a.corp\"]\n",
                "registries.\"a\".mirrors",
            ),
            ("[registries.a]\nca = \"a.pem\"\n", "registries.\"a\".ca"),
            ("[registries.a]\n", "registries.\"a\""),
        ] {
            let e = validate(
                merged(&[("/c.toml", &base), ("/d/10-r.toml", text)]).unwrap(),
                &Tokens,
            )
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert_eq!(e.origin, file("/d/10-r.toml"), "{text}");
        }
        assert!(merged(&[("/c.toml", "[registries.a]\nmirror = []\n")]).is_err());
    }

    #[test]
    fn unknown_keys_name_the_file_and_key() {
        let e = merged(&[("/x.toml", "[cluster]\nservr = \"a\"\n")]).unwrap_err();
        assert_eq!(e.origin, file("/x.toml"));
        assert!(e.message.contains("servr"), "{e}");
        assert!(
            e.to_string().starts_with("/x.toml: line 2, column 1"),
            "{e}"
        );
        let e = merged(&[("/x.toml", "[clusterr]\n")]).unwrap_err();
        assert!(e.message.contains("clusterr"), "{e}");
    }

    #[test]
    fn toml_errors_do_not_quote_the_token_line() {
        let e = merged(&[(
            "/x.toml",
            "[cluster]\ntoken = \"abcdef.0123456789abcdef\" junk\n",
        )])
        .unwrap_err();
        assert!(!e.to_string().contains("0123456789abcdef"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn a_pin_is_required_unless_unsafe() {
        let base = "[cluster]\nserver = \"10.0.0.1:6443\"\ntoken = \"abcdef.0123456789abcdef\"\n";
        let e = validate(merged(&[("/c.toml", base)]).unwrap(), &Tokens).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cluster.ca_cert_hashes"));
        let unsafe_ok = format!("{base}unsafe_skip_ca_verification = true\n");
        assert!(validate(merged(&[("/c.toml", &unsafe_ok)]).unwrap(), &Tokens).is_ok());
    }

    #[test]
    fn bad_values_name_key_and_origin() {
        let e = validate(
            merged(&[(
                "/c.toml",
                "[cluster]\nserver = \"10.0.0.1:6443\"\ntoken = \"abcdef.0123456789abcdef\"\nca_cert_hashes = [\"sha256:00\"]\n",
            )])
            .unwrap(),
            &Tokens,
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cluster.ca_cert_hashes[0]"));
        assert_eq!(e.origin, file("/c.toml"));

        let e = validate(
            merged(&[("/c.toml", "[cluster]\nserver = \"http://10.0.0.1\"\n")]).unwrap(),
            &Tokens,
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cluster.server"));
        assert!(e.message.contains("https"), "{e}");
    }

    #[test]
    fn flags_override_files() {
        let mut m = merged(&[(
            "/c.toml",
            "[cluster]\nserver = \"10.0.0.1:6443\"\ntoken = \"abcdef.0123456789abcdef\"\nunsafe_skip_ca_verification = true\n",
        )])
        .unwrap();
        m.apply(&Overrides {
            servers: vec!["https://127.0.0.1:6443".into()],
            timeout: Some("10s".into()),
            ..Default::default()
        });
        let s = validate(m, &Tokens).unwrap().cluster;
        assert_eq!(s.servers[0].to_string(), "https://127.0.0.1:6443");
        assert_eq!(s.discovery_timeout, Duration::from_secs(10));
    }

    #[test]
    fn credential_wins_over_files_but_not_over_the_flag() {
        let mut m = merged(&[("/c.toml", "[cluster]\ntoken_file = \"/t\"\n")]).unwrap();
        m.apply_credential(PathBuf::from("/run/cred/token"));
        assert!(matches!(
            m.token.as_ref().unwrap().origin,
            Origin::Credential(_)
        ));
        m.apply(&Overrides {
            token_file: Some("-".into()),
            ..Default::default()
        });
        m.apply_credential(PathBuf::from("/run/cred/token"));
        assert!(matches!(
            m.token.as_ref().unwrap().value,
            TokenSource::Stdin
        ));
    }

    #[test]
    fn both_token_and_token_file_is_an_error() {
        let e =
            merged(&[("/c.toml", "[cluster]\ntoken = \"x\"\ntoken_file = \"/t\"\n")]).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cluster.token_file"));
    }

    #[test]
    fn debug_of_a_fragment_hides_the_token() {
        let f = parse_fragment(
            "[cluster]\ntoken = \"abcdef.0123456789abcdef\"\n",
            &file("/c"),
        )
        .unwrap();
        assert!(!format!("{f:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn debug_of_the_merged_and_validated_settings_hides_the_token() {
        let m = merged(&[(
            "/c.toml",
            &format!("[cluster]\nserver = \"10.0.0.1:6443\"\ntoken = \"abcdef.0123456789abcdef\"\nca_cert_hashes = [\"{PIN}\"]\n"),
        )])
        .unwrap();
        assert!(!format!("{m:?}").contains("0123456789abcdef"));
        let s = validate(m, &Tokens).unwrap();
        let shown = format!("{s:?} {s:#?}");
        assert!(shown.contains("abcdef"), "the id is shown: {shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }

    #[test]
    fn private_mode_check() {
        let o = file("/c");
        assert!(check_private(Path::new("/c"), 0o100600, &o, "cluster.token").is_ok());
        let e = check_private(Path::new("/c"), 0o100644, &o, "cluster.token").unwrap_err();
        assert!(e.message.contains("chmod 600 /c"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let origin = file("config.toml.example");
        let text = include_str!("../../packaging/config.toml.example");
        let mut m = Merged::default();
        m.add(parse_fragment(text, &origin).unwrap(), &origin)
            .unwrap();
        let s = validate(m, &Tokens).unwrap().cluster;
        assert_eq!(s.servers[0].to_string(), "https://203.0.113.10:6443");
        assert_eq!(s.discovery_timeout, DEFAULT_DISCOVERY_TIMEOUT);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        for bad in ["", "5", "m", "5 m", "-5s", "5d", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
