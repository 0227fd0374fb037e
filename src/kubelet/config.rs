//! kubelet's configuration (`/var/lib/kubelet/config.yaml`), built in layers with each
//! field keeping where it came from (pure):
//! 1. kubejoin's defaults: what kubeadm's KubeletConfiguration holds for a worker;
//! 2. the cluster's, from `kube-system/kubelet-config` as kubeadm publishes it (each of
//!    its fields replaces the default);
//! 3. what this node needs: its runtime's endpoint and cgroup driver, what its kubelet
//!    version takes in the file, its resolver, kubejoin's wait on kubelet's health;
//! 4. the user's per-node fields (`[kubelet.config]`, `cluster_dns`, `cluster_domain`).
//!
//! A field in none of them stays kubelet's default.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::files::{CLUSTER_CA, HEALTHZ_ADDRESS, HEALTHZ_PORT, STATIC_POD_PATH};
use super::profile::{Cri, Profile};
use crate::config::KubeletSettings;

pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KIND: &str = "KubeletConfiguration";
/// systemd-resolved's list of the real upstream servers (its `/etc/resolv.conf` names
/// only its local stub, which pods cannot reach).
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// kubelet's default `resolvConf`.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The cluster's KubeletConfiguration, as its ConfigMap holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The ConfigMap, `kube-system/<name>`.
    pub configmap: String,
    /// Its fields, without `apiVersion` and `kind`.
    pub fields: Map<String, Value>,
}

/// The ConfigMap's `kubelet` key: a KubeletConfiguration in YAML (or JSON).
pub fn parse_cluster(configmap: &str, text: &str) -> Result<ClusterConfig, String> {
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| format!("its `kubelet` key is not YAML: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err("its `kubelet` key is not a YAML mapping".into());
    };
    let api_version = fields.remove("apiVersion");
    let kind = fields.remove("kind");
    if kind.as_ref().and_then(Value::as_str) != Some(KIND)
        || api_version.as_ref().and_then(Value::as_str) != Some(API_VERSION)
    {
        return Err(format!(
            "its `kubelet` key is not a {KIND} of {API_VERSION} (apiVersion {}, kind {})",
            api_version.unwrap_or(Value::Null),
            kind.unwrap_or(Value::Null)
        ));
    }
    Ok(ClusterConfig {
        configmap: configmap.to_string(),
        fields,
    })
}

/// Where a field's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum Source {
    /// kubejoin's default (kubeadm's, for a worker).
    Default,
    /// The cluster's ConfigMap.
    Cluster { configmap: String },
    /// This node needs it.
    Node { why: &'static str },
    /// The user's per-node setting: the key and the file (or flag) that set it.
    User { key: String, origin: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "kubejoin's default"),
            Source::Cluster { configmap } => write!(f, "the cluster's {configmap}"),
            Source::Node { why } => write!(f, "this node: {why}"),
            Source::User { key, origin } if origin.is_empty() => write!(f, "{key}"),
            Source::User { key, origin } => write!(f, "{key} in {origin}"),
        }
    }
}

/// A field of the configuration and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub name: String,
    pub value: Value,
    pub source: Source,
}

/// What kubejoin knows of the host for kubelet's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Host {
    /// systemd-resolved.service is active.
    pub systemd_resolved: bool,
    /// The cluster's `resolvConf` exists on this node (when the cluster sets one).
    pub cluster_file_exists: bool,
    /// Online CPUs and memory in bytes, for `reservations`.
    pub cpus: u64,
    pub memory_bytes: u64,
}

/// The effective configuration: every field kubejoin writes, sorted by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    /// The cluster's ConfigMap the configuration started from, if any.
    pub cluster: Option<String>,
    pub fields: Vec<Field>,
    /// The cluster's fields left out: this kubelet's configuration does not have them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// Where kubelet reads a drop-in ([`super::files::DROP_IN`]): config.yaml's fields
    /// and the drop-in's; `None`: everything in config.yaml.
    #[serde(skip)]
    split: Option<Split>,
}

/// config.yaml and the drop-in, for a kubelet that reads drop-ins.
#[derive(Debug, Clone, PartialEq)]
struct Split {
    /// Every layer below the per-node fields.
    config_yaml: Map<String, Value>,
    /// The per-node fields (`[kubelet.config]`) as written.
    drop_in: Map<String, Value>,
}

impl Effective {
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// `config.yaml`: apiVersion and kind, then the fields by name (without the per-node
    /// ones where they have a drop-in).
    pub fn render(&self) -> String {
        if let Some(split) = &self.split {
            return document(&split.config_yaml);
        }
        let map: Map<String, Value> = self
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect();
        document(&map)
    }

    /// The drop-in ([`super::files::DROP_IN`], kubelet >= 1.30): the per-node fields, which kubelet
    /// merges over config.yaml as a JSON merge patch. Written even when there are none,
    /// so that removing the last one removes it from kubelet's configuration too.
    pub fn render_drop_in(&self) -> Option<String> {
        self.split.as_ref().map(|split| {
            format!(
                "# Written by kubejoin: [kubelet.config] from /etc/kubejoin/config.toml and \
                 config.d; changes here are overwritten.\n{}",
                document(&split.drop_in)
            )
        })
    }
}

/// A KubeletConfiguration document.
fn document(map: &Map<String, Value>) -> String {
    let mut out = format!("apiVersion: {API_VERSION}\nkind: {KIND}\n");
    write_map(&mut out, map, 0);
    out
}

/// RFC 7386's JSON merge patch, as kubelet merges its drop-ins: objects merge key by
/// key (`null` removes one), anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// kubejoin's defaults: kubeadm's KubeletConfiguration for a worker (webhook
/// authentication and authorization, no anonymous access, the cluster CA for client
/// certificates, the static pod path, the cluster domain).
fn defaults() -> Vec<(&'static str, Value)> {
    vec![
        (
            "authentication",
            json!({
                "anonymous": { "enabled": false },
                "webhook": { "cacheTTL": "0s", "enabled": true },
                "x509": { "clientCAFile": CLUSTER_CA },
            }),
        ),
        (
            "authorization",
            json!({
                "mode": "Webhook",
                "webhook": { "cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s" },
            }),
        ),
        ("clusterDomain", json!("cluster.local")),
        ("staticPodPath", json!(STATIC_POD_PATH)),
    ]
}

/// The KubeletConfiguration `kubejoin cluster prepare` publishes for a cluster that has
/// none: kubejoin's defaults (kubeadm's) with systemd's cgroup driver, kubelet's health
/// endpoint, certificate rotation, and the cluster's DNS Service address when known.
pub fn published(cluster_dns: Option<&str>) -> String {
    let mut fields: BTreeMap<String, Value> = defaults()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    fields.insert("cgroupDriver".into(), json!("systemd"));
    if let Some(ip) = cluster_dns {
        fields.insert("clusterDNS".into(), json!([ip]));
    }
    fields.insert("healthzBindAddress".into(), json!(HEALTHZ_ADDRESS));
    fields.insert("healthzPort".into(), json!(HEALTHZ_PORT));
    fields.insert("rotateCertificates".into(), json!(true));
    document(&fields.into_iter().collect())
}

/// The configuration for this node, layer over layer.
pub fn effective(
    s: &KubeletSettings,
    p: &Profile,
    cluster: Option<&ClusterConfig>,
    host: Host,
) -> Effective {
    let mut fields: BTreeMap<String, (Value, Source)> = defaults()
        .into_iter()
        .map(|(k, v)| (k.to_string(), (v, Source::Default)))
        .collect();
    let mut left_out = Vec::new();
    if let Some(c) = cluster {
        for (k, v) in &c.fields {
            let known_to_1_20 = crate::config::kubelet_fields::field(k).is_none_or(|(_, old)| old);
            if !p.version.at_least(21) && !known_to_1_20 {
                left_out.push(k.clone());
                continue;
            }
            let source = Source::Cluster {
                configmap: c.configmap.clone(),
            };
            fields.insert(k.clone(), (v.clone(), source));
        }
    }
    let resolv = resolv_conf(fields.get("resolvConf").and_then(|(v, _)| v.as_str()), host);
    let mut node = |name: &str, value: Value, why: &'static str| {
        fields.insert(name.to_string(), (value, Source::Node { why }));
    };
    node(
        "cgroupDriver",
        json!(s.cgroup_driver),
        "the container runtime's cgroup driver (kubejoin sets both)",
    );
    if let (Cri::Remote(ep), true) = (&p.cri, p.endpoint_in_config) {
        node(
            "containerRuntimeEndpoint",
            json!(ep),
            "the container runtime's socket",
        );
    }
    if p.allow_cgroup_v1 {
        node(
            "failCgroupV1",
            json!(false),
            "kubelet >= 1.35 refuses this cgroup v1 host otherwise",
        );
    }
    let health = "kubejoin waits for kubelet's health endpoint there";
    node("healthzBindAddress", json!(HEALTHZ_ADDRESS), health);
    node("healthzPort", json!(HEALTHZ_PORT), health);
    node(
        "kubeletCgroups",
        json!("/systemd/system.slice"),
        "kubelet's own cgroup, under systemd's system.slice",
    );
    node(
        "rotateCertificates",
        json!(true),
        "kubelet renews its client certificate",
    );
    if let Some((value, why)) = resolv {
        node("resolvConf", json!(value), why);
    }
    if !s.register_with_taints.is_empty() && p.taints_in_config {
        let taints: Vec<Value> = s.register_with_taints.iter().map(|t| taint(t)).collect();
        fields.insert(
            "registerWithTaints".into(),
            (
                Value::Array(taints),
                Source::User {
                    key: "kubelet.register_with_taints".into(),
                    origin: String::new(),
                },
            ),
        );
    }
    if let Some(origin) = &s.reservations {
        let reserved = super::reserve::gke(host.cpus, host.memory_bytes);
        fields.insert(
            "kubeReserved".into(),
            (
                reserved.kube_reserved(),
                Source::User {
                    key: "kubelet.reservations (GKE's formula)".into(),
                    origin: origin.to_string(),
                },
            ),
        );
    }
    let split = p.config_dir.then(|| Split {
        config_yaml: fields
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect(),
        drop_in: s
            .config
            .iter()
            .map(|(name, f)| (name.clone(), f.value.clone()))
            .collect(),
    });
    // Merged as kubelet merges a drop-in, so that both ways give the same configuration
    // (but for kubelet's own defaults: a drop-in is merged over them, config.yaml not).
    for (name, f) in &s.config {
        let source = Source::User {
            key: f.key.clone(),
            origin: f.origin.to_string(),
        };
        let value = match fields.remove(name) {
            Some((mut below, _)) => {
                merge_patch(&mut below, &f.value);
                below
            }
            None => f.value.clone(),
        };
        fields.insert(name.clone(), (value, source));
    }
    Effective {
        cluster: cluster.map(|c| c.configmap.clone()),
        split,
        left_out,
        fields: fields
            .into_iter()
            .map(|(name, (value, source))| Field {
                name,
                value,
                source,
            })
            .collect(),
    }
}

/// `resolvConf` is this node's: systemd-resolved's upstream list where it runs (as
/// kubeadm does), else the cluster's when this node has that file, else kubelet's default
/// (`None`: leave what the cluster says, or nothing).
fn resolv_conf(cluster: Option<&str>, r: Host) -> Option<(&'static str, &'static str)> {
    if r.systemd_resolved {
        return (cluster != Some(SYSTEMD_RESOLV_CONF)).then_some((
            SYSTEMD_RESOLV_CONF,
            "systemd-resolved runs here: its upstream servers, not its local stub",
        ));
    }
    match cluster {
        Some(path) if !r.cluster_file_exists && path != DEFAULT_RESOLV_CONF => Some((
            DEFAULT_RESOLV_CONF,
            "the cluster's resolvConf does not exist on this node",
        )),
        _ => None,
    }
}

/// `KEY[=VALUE]:Effect` as a Taint.
fn taint(t: &str) -> Value {
    let (kv, effect) = t.rsplit_once(':').unwrap_or((t, "NoSchedule"));
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    let mut m = Map::new();
    m.insert("effect".into(), json!(effect));
    m.insert("key".into(), json!(key));
    if !value.is_empty() {
        m.insert("value".into(), json!(value));
    }
    Value::Object(m)
}

/// A YAML block mapping at `indent`.
fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in map {
        out.push_str(&pad);
        out.push_str(&scalar_str(k));
        out.push(':');
        write_value_after_key(out, v, indent);
    }
}

/// A value after `key:`: inline when a scalar or empty, else on the next lines.
fn write_value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_list(out, a, indent);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// A YAML block sequence at `indent` (kubectl's style: `- ` at the key's indentation).
fn write_list(out: &mut String, list: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for item in list {
        out.push_str(&pad);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => {
                let mut inner = String::new();
                write_map(&mut inner, m, indent + 2);
                // The first key goes on the dash's line.
                out.push_str(inner.trim_start());
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_list(out, a, indent + 2);
            }
            _ => {
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => scalar_str(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// A string plain where YAML reads it back as that string, else double-quoted (JSON's
/// escapes are YAML's).
fn scalar_str(s: &str) -> String {
    if s.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_ipv4()) {
        return s.to_string();
    }
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c))
        && !s.ends_with(':');
    let starts_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/');
    let has_letter = s.chars().any(|c| c.is_ascii_alphabetic() || c == '/');
    let lower = s.to_ascii_lowercase();
    let special = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf",
    ]
    .contains(&lower.as_str());
    let number_like = s.chars().next().is_some_and(|c| c.is_ascii_digit())
        && (lower.starts_with("0x")
            || lower.starts_with("0o")
            || lower.starts_with("0b")
            || lower
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '_')
                .strip_prefix('e')
                .is_some_and(|exp| {
                    exp.trim_start_matches(['+', '-'])
                        .chars()
                        .all(|c| c.is_ascii_digit())
                }));
    if plain_chars && starts_ok && has_letter && !special && !number_like {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use crate::config::kubelet::UserField;
    use crate::host::Runtime;
    use crate::kubelet::profile::{Node, profile};
    use crate::kubelet::version::Version;

    fn node_profile(version: &str, s: &KubeletSettings) -> Profile {
        let node = Node {
            version: Version::parse(version).unwrap(),
            runtime: Runtime::Containerd,
            cgroup_v2: true,
        };
        profile(s, &node).unwrap()
    }

    /// kubeadm's kubelet-config of a v1.36 cluster, printed by kubeadm itself.
    const KUBEADM_1_36: &str =
        include_str!("../../tests/fixtures/kubeadm/kubelet-config-v1.36.yaml");

    #[test]
    fn without_the_clusters_it_is_kubejoins_defaults_and_the_nodes_needs() {
        let s = KubeletSettings::default();
        let e = effective(&s, &node_profile("v1.36.2", &s), None, Host::default());
        assert_eq!(e.cluster, None);
        assert_eq!(e.get("clusterDomain").unwrap().source, Source::Default);
        assert_eq!(e.get("clusterDNS"), None);
        assert!(matches!(
            e.get("containerRuntimeEndpoint").unwrap().source,
            Source::Node { .. }
        ));
        let text = e.render();
        assert!(text.starts_with("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\n"), "{text}");
        assert!(text.contains("    cacheTTL: 0s\n"), "{text}");
        assert!(text.contains("healthzPort: 10248\n"), "{text}");
    }

    #[test]
    fn the_clusters_fields_come_first_and_the_node_wins_where_it_must() {
        let cluster = parse_cluster("kube-system/kubelet-config", KUBEADM_1_36).unwrap();
        let s = KubeletSettings::default();
        let e = effective(
            &s,
            &node_profile("v1.36.2", &s),
            Some(&cluster),
            Host::default(),
        );
        let dns = e.get("clusterDNS").unwrap();
        assert_eq!(dns.value, json!(["10.96.0.10"]));
        assert_eq!(
            dns.source.to_string(),
            "the cluster's kube-system/kubelet-config"
        );
        // The cluster's empty endpoint is replaced by this node's runtime's.
        let ep = e.get("containerRuntimeEndpoint").unwrap();
        assert_eq!(ep.value, json!("unix:///run/containerd/containerd.sock"));
        assert!(matches!(ep.source, Source::Node { .. }));
        // kubelet reads its own defaults back where the cluster wrote zero values.
        assert_eq!(e.get("syncFrequency").unwrap().value, json!("0s"));
        let text = e.render();
        assert!(text.contains("clusterDNS:\n- 10.96.0.10\n"), "{text}");
        assert!(text.contains("      infoBufferSize: \"0\"\n"), "{text}");
        assert!(text.contains("crashLoopBackOff: {}\n"), "{text}");
        // What kubejoin writes reads back as the same configuration.
        let back = parse_cluster("x", &text).unwrap();
        let map: Map<String, Value> = e
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect();
        assert_eq!(back.fields, map);
    }

    #[test]
    fn kubelet_1_20_gets_only_its_own_fields() {
        let cluster = parse_cluster("kube-system/kubelet-config", KUBEADM_1_36).unwrap();
        let s = KubeletSettings::default();
        let e = effective(
            &s,
            &node_profile("v1.20.2", &s),
            Some(&cluster),
            Host::default(),
        );
        assert_eq!(
            e.left_out,
            [
                "containerRuntimeEndpoint",
                "crashLoopBackOff",
                "imageMaximumGCAge",
                "memorySwap"
            ]
        );
        assert!(e.get("crashLoopBackOff").is_none());
        let old = include_str!("../../tests/fixtures/kubeadm/kubelet-config-v1.20.yaml");
        let cluster = parse_cluster("kube-system/kubelet-config-1.20", old).unwrap();
        let e = effective(
            &s,
            &node_profile("v1.20.2", &s),
            Some(&cluster),
            Host::default(),
        );
        assert!(e.left_out.is_empty());
        assert_eq!(e.get("cgroupDriver").unwrap().value, "systemd");
    }

    #[test]
    fn the_users_fields_win() {
        let mut s = KubeletSettings::default();
        for (name, value) in [("maxPods", json!(50)), ("clusterDNS", json!(["10.0.0.10"]))] {
            s.config.insert(
                name.into(),
                UserField {
                    value,
                    key: format!("kubelet.config.{name}"),
                    origin: Origin::File("/etc/kubejoin/config.d/50-node.toml".into()),
                },
            );
        }
        let cluster = parse_cluster("kube-system/kubelet-config", KUBEADM_1_36).unwrap();
        let e = effective(
            &s,
            &node_profile("v1.36.2", &s),
            Some(&cluster),
            Host::default(),
        );
        assert_eq!(e.get("clusterDNS").unwrap().value, json!(["10.0.0.10"]));
        assert_eq!(
            e.get("maxPods").unwrap().source.to_string(),
            "kubelet.config.maxPods in /etc/kubejoin/config.d/50-node.toml"
        );
        // kubelet 1.36: config.yaml holds the layers below, the drop-in the node's fields.
        let config = e.render();
        assert!(!config.contains("maxPods"), "{config}");
        assert!(config.contains("clusterDNS:\n- 10.96.0.10\n"), "{config}");
        let drop_in = e.render_drop_in().unwrap();
        assert!(
            drop_in.ends_with(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 clusterDNS:\n- 10.0.0.10\nmaxPods: 50\n"
            ),
            "{drop_in}"
        );
        // kubelet 1.29: no drop-ins; config.yaml holds everything.
        let e = effective(
            &s,
            &node_profile("v1.29.0", &s),
            Some(&cluster),
            Host::default(),
        );
        assert_eq!(e.render_drop_in(), None);
        let config = e.render();
        assert!(config.contains("clusterDNS:\n- 10.0.0.10\n"), "{config}");
        assert!(config.contains("maxPods: 50\n"), "{config}");
        // No per-node fields: the drop-in is still written, empty, so that removing the
        // last field removes it from kubelet's configuration too.
        let none = KubeletSettings::default();
        let e = effective(
            &none,
            &node_profile("v1.36.2", &none),
            None,
            Host::default(),
        );
        assert!(
            e.render_drop_in()
                .unwrap()
                .ends_with("kind: KubeletConfiguration\n")
        );
    }

    #[test]
    fn a_users_table_merges_into_the_clusters_as_kubelet_merges_a_drop_in() {
        let cluster = parse_cluster(
            "kube-system/kubelet-config",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             evictionHard:\n  memory.available: 100Mi\n  nodefs.available: 10%\n\
             clusterDNS: [10.96.0.10, 10.96.0.11]\n",
        )
        .unwrap();
        let mut s = KubeletSettings::default();
        for (name, value) in [
            ("evictionHard", json!({"memory.available": "200Mi"})),
            ("clusterDNS", json!(["10.0.0.10"])),
        ] {
            s.config.insert(
                name.into(),
                UserField {
                    value,
                    key: format!("kubelet.config.{name}"),
                    origin: Origin::File("/etc/kubejoin/config.toml".into()),
                },
            );
        }
        for version in ["v1.29.0", "v1.36.2"] {
            let e = effective(
                &s,
                &node_profile(version, &s),
                Some(&cluster),
                Host::default(),
            );
            assert_eq!(
                e.get("evictionHard").unwrap().value,
                json!({"memory.available": "200Mi", "nodefs.available": "10%"}),
                "{version}"
            );
            assert_eq!(e.get("clusterDNS").unwrap().value, json!(["10.0.0.10"]));
        }
    }

    #[test]
    fn merge_patch_is_rfc_7386s() {
        // RFC 7386's appendix A, a few of its cases.
        for (target, patch, want) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ] {
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            assert_eq!(t, want, "{target} + {patch}");
        }
    }

    #[test]
    fn reservations_are_sized_to_the_host() {
        let s = KubeletSettings {
            reservations: Some(Origin::File("/etc/kubejoin/config.toml".into())),
            ..Default::default()
        };
        let host = Host {
            cpus: 2,
            memory_bytes: 8 << 30,
            ..Default::default()
        };
        let e = effective(&s, &node_profile("v1.36.2", &s), None, host);
        let f = e.get("kubeReserved").unwrap();
        assert_eq!(f.value, json!({"cpu": "70m", "memory": "1844Mi"}));
        assert_eq!(
            f.source.to_string(),
            "kubelet.reservations (GKE's formula) in /etc/kubejoin/config.toml"
        );
        assert!(
            e.render()
                .contains("kubeReserved:\n  cpu: 70m\n  memory: 1844Mi\n")
        );
    }

    #[test]
    fn resolv_conf_is_this_nodes() {
        let resolved = Host {
            systemd_resolved: true,
            ..Default::default()
        };
        assert_eq!(resolv_conf(None, resolved).unwrap().0, SYSTEMD_RESOLV_CONF);
        assert_eq!(
            resolv_conf(Some("/etc/resolv.conf"), resolved).unwrap().0,
            SYSTEMD_RESOLV_CONF
        );
        assert_eq!(resolv_conf(Some(SYSTEMD_RESOLV_CONF), resolved), None);
        let plain = Host::default();
        assert_eq!(resolv_conf(None, plain), None);
        assert_eq!(
            resolv_conf(Some(SYSTEMD_RESOLV_CONF), plain).unwrap().0,
            DEFAULT_RESOLV_CONF
        );
        let has_it = Host {
            cluster_file_exists: true,
            ..Default::default()
        };
        assert_eq!(resolv_conf(Some("/etc/k8s-resolv.conf"), has_it), None);
    }

    #[test]
    fn not_a_kubelet_configuration() {
        for text in [
            "[1, 2]",
            "apiVersion: v1\nkind: ConfigMap\n",
            "kind: KubeletConfiguration\n",
            ": : :",
        ] {
            assert!(
                parse_cluster("kube-system/kubelet-config", text).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn strings_are_quoted_where_yaml_would_read_something_else() {
        for (s, want) in [
            ("systemd", "systemd"),
            ("/etc/resolv.conf", "/etc/resolv.conf"),
            ("0s", "0s"),
            ("10.96.0.10", "10.96.0.10"),
            ("10.96.0", "\"10.96.0\""),
            ("0", "\"0\""),
            ("true", "\"true\""),
            ("No", "\"No\""),
            ("1e3", "\"1e3\""),
            ("0x1F", "\"0x1F\""),
            ("memory.available", "memory.available"),
            ("100Mi", "100Mi"),
            ("a b", "\"a b\""),
            ("", "\"\""),
            ("unix:///run/x.sock", "unix:///run/x.sock"),
            ("1:20", "\"1:20\""),
            ("a:", "\"a:\""),
        ] {
            assert_eq!(scalar_str(s), want, "{s}");
        }
    }
}
