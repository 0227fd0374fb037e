//! The `[kubelet]` table: how kubejoin writes and starts kubelet.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::kubelet_fields as fields;
use super::origin::{Cidr, ConfigError, DEFAULT_PATH, Origin, parse_duration};

/// The validated `[kubelet]` settings. Unset runtime keys are chosen for the node by
/// [`crate::kubelet::profile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletSettings {
    pub binary: PathBuf,
    pub extra_args: Vec<String>,
    /// `key=value` labels, sorted by key.
    pub node_labels: Vec<(String, String)>,
    /// `key=value:Effect` or `key:Effect`.
    pub register_with_taints: Vec<String>,
    /// Explicit CRI endpoint; `None`: the runtime's.
    pub container_runtime_endpoint: Option<String>,
    /// Explicit `After=` and `Requires=` unit (`Some(None)`: none); `None`: the runtime's.
    pub runtime_unit: Option<Option<String>>,
    pub cgroup_driver: String,
    /// Per-node KubeletConfiguration fields (`[kubelet.config]`, and `cluster_dns` and
    /// `cluster_domain` as `clusterDNS` and `clusterDomain`), each type-checked.
    pub config: BTreeMap<String, UserField>,
    /// Refuse a cgroup v1 host instead of letting kubelet >= 1.35 run on it.
    pub fail_cgroup_v1: bool,
    /// `reservations = "gke"`: kubeReserved sized to this host by GKE's formula
    /// ([`crate::kubelet::reserve`]), with where it was set; `None`: kubelet's default
    /// (nothing reserved).
    pub reservations: Option<Origin>,
    /// The networks kubelet's node IP is chosen from (at most one IPv4 and one IPv6);
    /// empty: the source of the route to the API server where the host has several.
    pub node_ip_cidrs: Vec<Cidr>,
    /// `node_name`: the name kubelet registers the node under (`--hostname-override`),
    /// lower-case; `None`: the hostname.
    pub node_name: Option<String>,
    /// `[host] sandbox_image`, which kubelet's dockershim takes as a flag.
    pub sandbox_image: Option<String>,
}

/// Whether `s` is a valid node name: a DNS-1123 subdomain.
pub fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl KubeletSettings {
    /// The name kubelet registers this node under: `node_name`, else `--hostname-override`
    /// in `extra_args`, else the hostname; lower-cased and trimmed as kubelet does.
    pub fn node_name(&self, hostname: &str) -> String {
        let mut args = self.extra_args.iter();
        let mut overridden = None;
        while let Some(a) = args.next() {
            if let Some(v) = a.strip_prefix("--hostname-override=") {
                overridden = Some(v.to_string());
            } else if a == "--hostname-override" {
                overridden = args.next().cloned();
            }
        }
        self.node_name
            .clone()
            .or(overridden)
            .unwrap_or_else(|| hostname.to_string())
            .trim()
            .to_lowercase()
    }
}

impl Default for KubeletSettings {
    fn default() -> Self {
        KubeletSettings {
            binary: PathBuf::from("/usr/local/bin/kubelet"),
            extra_args: Vec::new(),
            node_labels: Vec::new(),
            register_with_taints: Vec::new(),
            container_runtime_endpoint: None,
            runtime_unit: None,
            cgroup_driver: "systemd".into(),
            config: BTreeMap::new(),
            reservations: None,
            node_ip_cidrs: Vec::new(),
            node_name: None,
            fail_cgroup_v1: false,
            sandbox_image: None,
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletFragment {
    pub binary: Option<PathBuf>,
    pub extra_args: Option<Vec<String>>,
    pub node_labels: Option<BTreeMap<String, String>>,
    pub register_with_taints: Option<Vec<String>>,
    pub container_runtime_endpoint: Option<String>,
    pub runtime_unit: Option<String>,
    pub cgroup_driver: Option<String>,
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub start_timeout: Option<String>,
    /// Removed: kubejoin waits for the node itself now (an error names `join_timeout`).
    pub settle: Option<String>,
    /// The old name of `join_timeout`.
    pub wait_for_tls_bootstrap: Option<String>,
    pub join_timeout: Option<String>,
    pub fail_cgroup_v1: Option<bool>,
    pub reservations: Option<String>,
    pub node_ip_cidrs: Option<Vec<String>>,
    pub node_name: Option<String>,
    pub shutdown_grace_period: Option<String>,
    pub shutdown_grace_period_critical_pods: Option<String>,
    /// `[kubelet.config]`: KubeletConfiguration fields for this node.
    pub config: Option<toml::Table>,
}

/// A per-node KubeletConfiguration field: its value (as JSON), the key that set it and
/// where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserField {
    pub value: serde_json::Value,
    /// `kubelet.config.maxPods`, `kubelet.cluster_dns`, ...
    pub key: String,
    pub origin: Origin,
}

/// Merged `[kubelet]` keys, each with the file or flag that set it; `[kubelet.config]`
/// field by field.
#[derive(Debug, Default)]
pub struct KubeletMerged {
    values: KubeletFragment,
    origins: BTreeMap<&'static str, Origin>,
    config: BTreeMap<String, (toml::Value, Origin)>,
}

macro_rules! merge_fields {
    ($self:ident, $f:ident, $origin:ident, $($field:ident),*) => {
        $(
            if $f.$field.is_some() {
                $self.values.$field = $f.$field;
                $self.origins.insert(stringify!($field), $origin.clone());
            }
        )*
    };
}

impl KubeletMerged {
    /// Where each key was set.
    pub fn origins(&self) -> &BTreeMap<&'static str, Origin> {
        &self.origins
    }

    pub fn add(&mut self, mut f: KubeletFragment, origin: &Origin) {
        for (k, v) in f.config.take().unwrap_or_default() {
            self.config.insert(k, (v, origin.clone()));
        }
        merge_fields!(
            self,
            f,
            origin,
            binary,
            extra_args,
            node_labels,
            register_with_taints,
            container_runtime_endpoint,
            runtime_unit,
            cgroup_driver,
            cluster_dns,
            cluster_domain,
            start_timeout,
            settle,
            wait_for_tls_bootstrap,
            join_timeout,
            fail_cgroup_v1,
            reservations,
            node_ip_cidrs,
            node_name,
            shutdown_grace_period,
            shutdown_grace_period_critical_pods
        );
    }
}

/// How long `kubejoin run` waits for kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletWaits {
    /// For systemd's start job.
    pub start_timeout: Duration,
    /// From kubelet's start until the node is in: health endpoint, client certificate,
    /// Node object. kubeadm v1.20 waits 5 minutes for the TLS bootstrap.
    pub join_timeout: Duration,
}

/// The default of `join_timeout`: kubeadm's `TLSBootstrapTimeout`.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// KubeletConfiguration fields kubejoin sets itself, and what to use instead.
const OWNED_FIELDS: [(&str, &str); 7] = [
    (
        "healthzBindAddress",
        "kubejoin waits for kubelet's health endpoint there",
    ),
    (
        "healthzPort",
        "kubejoin waits for kubelet's health endpoint there",
    ),
    (
        "rotateCertificates",
        "kubelet renews its client certificate with it",
    ),
    (
        "cgroupDriver",
        "use [kubelet] cgroup_driver, which the container runtime is set to match",
    ),
    (
        "containerRuntimeEndpoint",
        "use [kubelet] container_runtime_endpoint",
    ),
    ("registerWithTaints", "use [kubelet] register_with_taints"),
    ("failCgroupV1", "use [kubelet] fail_cgroup_v1"),
];

/// Flags kubejoin manages itself: setting them in `extra_args` would fight it.
const MANAGED_FLAGS: [&str; 6] = [
    "--bootstrap-kubeconfig",
    "--kubeconfig",
    "--config",
    "--cert-dir",
    "--rotate-certificates",
    "--container-runtime-endpoint",
];

fn valid_label_part(s: &str, max: usize) -> bool {
    s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

fn check_label(key: &str, value: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.is_empty() || !valid_label_part(name, 63) {
        return Err(format!(
            "label key {key:?} is not a valid Kubernetes label name"
        ));
    }
    if let Some(p) = prefix {
        if p.is_empty()
            || p.len() > 253
            || !p
                .split('.')
                .all(|l| valid_label_part(l, 63) && !l.is_empty())
        {
            return Err(format!("label key {key:?} has an invalid prefix"));
        }
        // kubelet itself refuses these with --node-labels (NodeRestriction).
        let restricted = p == "kubernetes.io"
            || p.ends_with(".kubernetes.io")
            || p == "k8s.io"
            || p.ends_with(".k8s.io");
        let allowed = p == "node.kubernetes.io"
            || p.ends_with(".node.kubernetes.io")
            || p == "kubelet.kubernetes.io"
            || p.ends_with(".kubelet.kubernetes.io");
        if restricted && !allowed {
            return Err(format!(
                "kubelet refuses label {key:?} in --node-labels (kubernetes.io and k8s.io labels are reserved); set node roles from the control plane instead"
            ));
        }
    }
    if !valid_label_part(value, 63) {
        return Err(format!(
            "label value {value:?} for {key:?} is not a valid Kubernetes label value"
        ));
    }
    Ok(())
}

fn check_taint(t: &str) -> Result<(), String> {
    let bad = || format!("taint {t:?} is not KEY[=VALUE]:NoSchedule|PreferNoSchedule|NoExecute");
    let (kv, effect) = t.rsplit_once(':').ok_or_else(bad)?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(bad());
    }
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    check_label(k, v).map_err(|_| bad())
}

/// A duration as Go writes one (`45s`, `1m30s` as `90s`, `500ms`), for KubeletConfiguration.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// How long logind lets an inhibitor delay a shutdown for this node's kubelet: its
/// `shutdownGracePeriod`, when this node sets one (`None`: kubelet's default, no graceful
/// shutdown, or a value this cannot read).
pub fn inhibit_delay(s: &KubeletSettings) -> Option<Duration> {
    let value = s.config.get("shutdownGracePeriod")?.value.as_str()?;
    parse_duration(value).ok()
}

/// Validates the merged `[kubelet]` table.
pub fn validate(m: KubeletMerged) -> Result<(KubeletSettings, KubeletWaits), ConfigError> {
    let default_origin = Origin::File(PathBuf::from(DEFAULT_PATH));
    let err = |key: &'static str, message: String| ConfigError {
        origin: m
            .origins
            .get(key)
            .cloned()
            .unwrap_or(default_origin.clone()),
        key: Some(format!("kubelet.{key}")),
        message,
        transient: false,
    };
    let v = m.values.clone();
    let mut s = KubeletSettings::default();
    if let Some(binary) = v.binary {
        if !binary.is_absolute() {
            return Err(err(
                "binary",
                format!("{} is not an absolute path", binary.display()),
            ));
        }
        s.binary = binary;
    }
    if let Some(args) = v.extra_args {
        for a in &args {
            if !a.starts_with("--") {
                return Err(err("extra_args", format!("{a:?} is not a --flag[=value]")));
            }
            let name = a.split('=').next().unwrap_or(a);
            if MANAGED_FLAGS.contains(&name) {
                return Err(err(
                    "extra_args",
                    format!("{name} is set by kubejoin; use the [kubelet] keys instead"),
                ));
            }
        }
        s.extra_args = args;
    }
    if let Some(labels) = v.node_labels {
        for (k, val) in &labels {
            check_label(k, val).map_err(|e| err("node_labels", e))?;
        }
        s.node_labels = labels.into_iter().collect();
    }
    if let Some(taints) = v.register_with_taints {
        for t in &taints {
            check_taint(t).map_err(|e| err("register_with_taints", e))?;
        }
        s.register_with_taints = taints;
    }
    if let Some(ep) = v.container_runtime_endpoint {
        if !ep.starts_with("unix:///") {
            return Err(err(
                "container_runtime_endpoint",
                format!("{ep:?} is not a unix:///path socket"),
            ));
        }
        s.container_runtime_endpoint = Some(ep);
    }
    if let Some(unit) = v.runtime_unit {
        s.runtime_unit = match unit.as_str() {
            "" => Some(None),
            u if (u.ends_with(".service") || u.ends_with(".socket"))
                && !u.contains(char::is_whitespace) =>
            {
                Some(Some(unit))
            }
            _ => {
                return Err(err(
                    "runtime_unit",
                    format!("{unit:?} is not a .service or .socket unit name (\"\" for none)"),
                ));
            }
        };
    }
    if let Some(driver) = v.cgroup_driver {
        if driver != "systemd" && driver != "cgroupfs" {
            return Err(err(
                "cgroup_driver",
                format!("{driver:?} is not \"systemd\" or \"cgroupfs\""),
            ));
        }
        s.cgroup_driver = driver;
    }
    s.config = per_node_fields(&m)?;
    if v.shutdown_grace_period.is_some()
        && let Some(other) = s.config.get("shutdownGracePeriodByPodPriority")
    {
        return Err(err(
            "shutdown_grace_period",
            format!(
                "and shutdownGracePeriodByPodPriority ({} in {}) exclude each other in kubelet: set one",
                other.key, other.origin
            ),
        ));
    }
    let mut shorthand = |key: &'static str, field: &str, value: serde_json::Value| {
        let origin = m
            .origins
            .get(key)
            .cloned()
            .unwrap_or(default_origin.clone());
        if let Some(other) = s.config.get(field) {
            return Err(err(
                key,
                format!(
                    "sets {field}, as does {} in {}: set it once",
                    other.key, other.origin
                ),
            ));
        }
        s.config.insert(
            field.to_string(),
            UserField {
                value,
                key: format!("kubelet.{key}"),
                origin,
            },
        );
        Ok(())
    };
    if let Some(dns) = v.cluster_dns {
        for ip in &dns {
            ip.parse::<IpAddr>()
                .map_err(|_| err("cluster_dns", format!("{ip:?} is not an IP address")))?;
        }
        shorthand("cluster_dns", "clusterDNS", serde_json::json!(dns))?;
    }
    if let Some(domain) = v.cluster_domain {
        let ok = !domain.is_empty()
            && domain
                .split('.')
                .all(|l| !l.is_empty() && valid_label_part(l, 63) && !l.contains('_'));
        if !ok {
            return Err(err(
                "cluster_domain",
                format!("{domain:?} is not a DNS domain"),
            ));
        }
        shorthand("cluster_domain", "clusterDomain", serde_json::json!(domain))?;
    }
    match (
        v.shutdown_grace_period.as_deref(),
        v.shutdown_grace_period_critical_pods.as_deref(),
    ) {
        (Some(total), critical) => {
            let total = parse_duration(total).map_err(|e| err("shutdown_grace_period", e))?;
            // A third for the critical pods by default, as the whole's last part.
            let critical = match critical {
                Some(c) => {
                    parse_duration(c).map_err(|e| err("shutdown_grace_period_critical_pods", e))?
                }
                None => Duration::from_secs(total.as_secs() / 3),
            };
            if critical > total {
                return Err(err(
                    "shutdown_grace_period_critical_pods",
                    format!(
                        "is longer than shutdown_grace_period ({}): the critical pods' time is the last part of it",
                        go_duration(total)
                    ),
                ));
            }
            shorthand(
                "shutdown_grace_period",
                "shutdownGracePeriod",
                serde_json::json!(go_duration(total)),
            )?;
            shorthand(
                "shutdown_grace_period",
                "shutdownGracePeriodCriticalPods",
                serde_json::json!(go_duration(critical)),
            )?;
        }
        (None, Some(_)) => {
            return Err(err(
                "shutdown_grace_period_critical_pods",
                "needs shutdown_grace_period, the whole time of which it is a part".into(),
            ));
        }
        (None, None) => {}
    }
    let duration = |key: &'static str, value: Option<String>, default: Duration| match value {
        Some(t) => parse_duration(&t).map_err(|e| err(key, e)),
        None => Ok(default),
    };
    if v.settle.is_some() {
        return Err(err(
            "settle",
            "is no longer used: kubejoin waits until kubelet is healthy, has its client certificate and \
             its Node exists; remove it (join_timeout bounds that wait)"
                .into(),
        ));
    }
    s.fail_cgroup_v1 = v.fail_cgroup_v1.unwrap_or(false);
    if let Some(name) = &v.node_name {
        let name = name.trim().to_lowercase();
        if !valid_node_name(&name) {
            return Err(err(
                "node_name",
                format!(
                    "{name:?} is not a valid node name: letters, digits, '-' and '.' (a DNS-1123 \
                     subdomain, at most 253 characters)"
                ),
            ));
        }
        if s.extra_args
            .iter()
            .any(|a| a.starts_with("--hostname-override"))
        {
            return Err(err(
                "node_name",
                "is set, and extra_args has --hostname-override: set the name once".into(),
            ));
        }
        s.node_name = Some(name);
    }
    if let Some(cidrs) = &v.node_ip_cidrs {
        let parsed = cidrs
            .iter()
            .map(|c| c.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("node_ip_cidrs", e))?;
        let v4 = parsed.iter().filter(|c| c.network.is_ipv4()).count();
        if v4 > 1 || parsed.len() - v4 > 1 {
            return Err(err(
                "node_ip_cidrs",
                "names more than one IPv4 or IPv6 network: a node has at most one address of each (dual-stack)".into(),
            ));
        }
        s.node_ip_cidrs = parsed;
    }
    s.reservations = match v.reservations.as_deref() {
        None | Some("none") => None,
        Some("gke") => {
            if let Some(f) = s.config.get("kubeReserved") {
                return Err(err(
                    "reservations",
                    format!(
                        "sets kubeReserved, as does {} in {}: set it once",
                        f.key, f.origin
                    ),
                ));
            }
            Some(
                m.origins
                    .get("reservations")
                    .cloned()
                    .unwrap_or(default_origin.clone()),
            )
        }
        Some(other) => {
            return Err(err(
                "reservations",
                format!("{other:?} is not \"gke\" (GKE's published formula) or \"none\""),
            ));
        }
    };
    let join_timeout = match (v.join_timeout, v.wait_for_tls_bootstrap) {
        (Some(t), _) => duration("join_timeout", Some(t), DEFAULT_JOIN_TIMEOUT)?,
        (None, t) => duration("wait_for_tls_bootstrap", t, DEFAULT_JOIN_TIMEOUT)?,
    };
    let waits = KubeletWaits {
        start_timeout: duration("start_timeout", v.start_timeout, Duration::from_secs(120))?,
        join_timeout,
    };
    Ok((s, waits))
}

/// `[kubelet.config]`, field by field: a KubeletConfiguration field of the right type
/// that kubejoin does not set itself.
fn per_node_fields(m: &KubeletMerged) -> Result<BTreeMap<String, UserField>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, (value, origin)) in &m.config {
        let key = format!("kubelet.config.{name}");
        let fail = |message: String| ConfigError {
            origin: origin.clone(),
            key: Some(key.clone()),
            message,
            transient: false,
        };
        let Some((kind, _)) = fields::field(name) else {
            return Err(fail(match fields::suggest(name) {
                Some(s) => format!("is not a KubeletConfiguration field; did you mean {s}?"),
                None => "is not a KubeletConfiguration field (names as in kubelet's configuration reference, e.g. maxPods)".into(),
            }));
        };
        if let Some((_, why)) = OWNED_FIELDS.iter().find(|(f, _)| f == name) {
            return Err(fail(format!("is set by kubejoin: {why}")));
        }
        let json = serde_json::to_value(value).map_err(|e| fail(e.to_string()))?;
        fields::check(kind, &json).map_err(fail)?;
        out.insert(
            name.clone(),
            UserField {
                value: json,
                key,
                origin: origin.clone(),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(text: &str) -> KubeletMerged {
        let f: KubeletFragment = toml::from_str(text).unwrap();
        let mut m = KubeletMerged::default();
        m.add(f, &Origin::File("/c.toml".into()));
        m
    }

    #[test]
    fn defaults() {
        let (s, w) = validate(KubeletMerged::default()).unwrap();
        assert_eq!(s, KubeletSettings::default());
        assert_eq!(w.join_timeout, DEFAULT_JOIN_TIMEOUT);
    }

    #[test]
    fn the_node_is_named_as_kubelet_names_it() {
        let mut s = KubeletSettings::default();
        assert_eq!(s.node_name("Worker-7\n"), "worker-7");
        s.extra_args = vec!["--v=2".into(), "--hostname-override=Node-A.example".into()];
        assert_eq!(s.node_name("worker-7"), "node-a.example");
        let (s, _) = validate(merged("node_name = \"Worker-9\"")).unwrap();
        assert_eq!(s.node_name.as_deref(), Some("worker-9"));
        assert_eq!(s.node_name("worker-7"), "worker-9");
    }

    #[test]
    fn values_are_checked_with_file_and_key() {
        for (text, key) in [
            ("binary = \"kubelet\"", "kubelet.binary"),
            ("extra_args = [\"v=2\"]", "kubelet.extra_args"),
            ("extra_args = [\"--kubeconfig=/x\"]", "kubelet.extra_args"),
            (
                "node_labels = { \"node-role.kubernetes.io/worker\" = \"\" }",
                "kubelet.node_labels",
            ),
            (
                "node_labels = { \"bad key\" = \"x\" }",
                "kubelet.node_labels",
            ),
            (
                "register_with_taints = [\"a=b:Sometimes\"]",
                "kubelet.register_with_taints",
            ),
            (
                "container_runtime_endpoint = \"tcp://x\"",
                "kubelet.container_runtime_endpoint",
            ),
            ("runtime_unit = \"docker\"", "kubelet.runtime_unit"),
            ("cgroup_driver = \"cgroupv2\"", "kubelet.cgroup_driver"),
            ("cluster_dns = [\"10.96.0\"]", "kubelet.cluster_dns"),
            ("cluster_domain = \"bad_domain\"", "kubelet.cluster_domain"),
            ("settle = \"3s\"", "kubelet.settle"),
            ("join_timeout = \"soon\"", "kubelet.join_timeout"),
            ("reservations = \"eks\"", "kubelet.reservations"),
            (
                "shutdown_grace_period = \"30s\"\nshutdown_grace_period_critical_pods = \"1m\"",
                "kubelet.shutdown_grace_period_critical_pods",
            ),
            (
                "shutdown_grace_period_critical_pods = \"10s\"",
                "kubelet.shutdown_grace_period_critical_pods",
            ),
            (
                "shutdown_grace_period = \"30s\"\n[config]\nshutdownGracePeriod = \"20s\"",
                "kubelet.shutdown_grace_period",
            ),
            (
                "shutdown_grace_period = \"soon\"",
                "kubelet.shutdown_grace_period",
            ),
            ("node_name = \"Not_A_Name\"", "kubelet.node_name"),
            (
                "node_name = \"a\"\nextra_args = [\"--hostname-override=b\"]",
                "kubelet.node_name",
            ),
            ("node_ip_cidrs = [\"10.0.0.0\"]", "kubelet.node_ip_cidrs"),
            (
                "node_ip_cidrs = [\"10.0.0.0/8\", \"192.168.0.0/16\"]",
                "kubelet.node_ip_cidrs",
            ),
            (
                "reservations = \"gke\"\n[config]\nkubeReserved = { cpu = \"1\" }",
                "kubelet.reservations",
            ),
        ] {
            let e = validate(merged(text)).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert_eq!(e.origin, Origin::File("/c.toml".into()));
        }
    }

    #[test]
    fn accepted_values() {
        let (s, w) = validate(merged(
            "binary = \"/opt/bin/kubelet\"\nextra_args = [\"--v=2\"]\nnode_labels = { zone = \"a\", \"node.kubernetes.io/pool\" = \"infra\" }\nregister_with_taints = [\"dedicated=infra:NoSchedule\", \"gpu:NoExecute\"]\nruntime_unit = \"\"\ncluster_dns = [\"10.96.0.10\"]\nwait_for_tls_bootstrap = \"2m\"\n",
        ))
        .unwrap();
        assert_eq!(s.runtime_unit, Some(None));
        assert_eq!(s.node_labels[0].0, "node.kubernetes.io/pool");
        assert_eq!(w.join_timeout, Duration::from_secs(120));
    }

    #[test]
    fn per_node_fields_are_checked_and_merged_field_by_field() {
        let mut m =
            merged("[config]\nmaxPods = 50\nevictionHard = { \"memory.available\" = \"200Mi\" }\n");
        let f: KubeletFragment = toml::from_str("[config]\nmaxPods = 60\n").unwrap();
        m.add(f, &Origin::File("/d/50-node.toml".into()));
        let (s, _) = validate(m).unwrap();
        assert_eq!(s.config["maxPods"].value, serde_json::json!(60));
        assert_eq!(
            s.config["maxPods"].origin,
            Origin::File("/d/50-node.toml".into())
        );
        assert_eq!(
            s.config["evictionHard"].origin,
            Origin::File("/c.toml".into())
        );
        assert_eq!(s.config["evictionHard"].key, "kubelet.config.evictionHard");

        for (text, want) in [
            ("[config]\nmax_pods = 5\n", "did you mean maxPods?"),
            (
                "[config]\nnoSuchField = 5\n",
                "is not a KubeletConfiguration field",
            ),
            ("[config]\nmaxPods = \"5\"\n", "must be an integer"),
            (
                "[config]\nshutdownGracePeriod = \"30\"\n",
                "must be a duration",
            ),
            ("[config]\nhealthzPort = 1\n", "is set by kubejoin"),
            (
                "[config]\ncgroupDriver = \"systemd\"\n",
                "use [kubelet] cgroup_driver",
            ),
        ] {
            let e = validate(merged(text)).unwrap_err();
            assert!(
                e.key.as_deref().unwrap().starts_with("kubelet.config."),
                "{e}"
            );
            assert!(e.message.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn shorthands_are_fields_set_once() {
        let (s, _) = validate(merged(
            "cluster_dns = [\"10.96.0.10\"]\ncluster_domain = \"k8s.example\"\n",
        ))
        .unwrap();
        assert_eq!(
            s.config["clusterDNS"].value,
            serde_json::json!(["10.96.0.10"])
        );
        assert_eq!(s.config["clusterDNS"].key, "kubelet.cluster_dns");
        assert_eq!(s.config["clusterDomain"].value, "k8s.example");
        let e = validate(merged(
            "cluster_dns = [\"10.96.0.10\"]\n[config]\nclusterDNS = [\"10.0.0.10\"]\n",
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("kubelet.cluster_dns"));
        assert!(e.message.contains("set it once"), "{e}");
    }

    #[test]
    fn shutdown_grace_period_is_both_fields_and_loginds_delay() {
        let (s, _) = validate(merged("shutdown_grace_period = \"45s\"")).unwrap();
        assert_eq!(s.config["shutdownGracePeriod"].value, "45s");
        assert_eq!(s.config["shutdownGracePeriodCriticalPods"].value, "15s");
        assert_eq!(
            s.config["shutdownGracePeriod"].key,
            "kubelet.shutdown_grace_period"
        );
        assert_eq!(inhibit_delay(&s), Some(Duration::from_secs(45)));
        let (s, _) = validate(merged(
            "shutdown_grace_period = \"2m\"\nshutdown_grace_period_critical_pods = \"500ms\"",
        ))
        .unwrap();
        assert_eq!(s.config["shutdownGracePeriod"].value, "120s");
        assert_eq!(s.config["shutdownGracePeriodCriticalPods"].value, "500ms");
        // Set as a field of [kubelet.config]: logind's delay follows it too.
        let (s, _) = validate(merged("[config]\nshutdownGracePeriod = \"1m30s\"")).unwrap();
        assert_eq!(inhibit_delay(&s), Some(Duration::from_secs(90)));
        assert_eq!(inhibit_delay(&KubeletSettings::default()), None);
    }
}
