//! `kubejoin cluster prepare`: the seed's control-plane objects, checked and, where
//! missing, created, each shown in a plan first; then a check that the bootstrap signer
//! runs, with a throwaway token. The checks ask the API server what it would allow
//! (SubjectAccessReview, and an anonymous read of cluster-info), so that RBAC granted by
//! objects of other names counts; what kubejoin creates carries kubeadm's names.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::kubelet_config as kc;
use super::{Api, ApiError, CLUSTER_INFO, CLUSTER_INFO_ROLE, RIGHTS, tokens};
use crate::cluster_info;
use crate::discovery::status_fix;
use crate::pin::CaPin;

/// What was found, and what a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// In place; nothing to do.
    Present,
    /// Missing: created unless --dry-run.
    Missing,
    Created,
    /// An existing object that differs from what kubejoin would create; left alone.
    Differs,
    /// Not in place after the run, or not checkable.
    Failed,
    /// Not checked (--dry-run).
    Unchecked,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Present => "ok",
            State::Missing => "missing",
            State::Created => "created",
            State::Differs => "differs",
            State::Failed => "FAILED",
            State::Unchecked => "unchecked",
        }
    }
}

/// One piece of the seed's control-plane half.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub name: &'static str,
    /// What it is for.
    pub what: String,
    pub found: State,
    pub outcome: State,
    /// The objects kubejoin creates for it, as `Kind namespace/name`.
    pub objects: Vec<String>,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub server: String,
    pub user: String,
    pub dry_run: bool,
    pub items: Vec<Item>,
}

impl Report {
    /// The items not in place (differing cluster-info is reported, not a failure).
    pub fn failed(&self) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| {
                i.outcome == State::Failed || (i.outcome == State::Missing && !self.dry_run)
            })
            .collect()
    }
}

pub struct Options {
    /// The server cluster-info names (default: the admin kubeconfig's).
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub dry_run: bool,
    /// How long to wait for the bootstrap signer to sign the probe token.
    pub signer_timeout: Duration,
}

/// How an existing cluster-info compares with the one kubejoin would write: `Ok(None)`
/// when it names the same server and CA, `Ok(Some(how))` when it differs but workers can
/// use it, `Err(why)` when workers cannot use it (as kubeadm reads it).
pub fn cluster_info_difference(
    existing: &Value,
    server: &str,
    ca_pem: &[u8],
) -> Result<Option<String>, String> {
    let info = cluster_info::read(existing)?;
    let mut diffs = Vec::new();
    if info.server.to_string() != server.trim_end_matches('/') {
        diffs.push(format!("it names server {}, not {server}", info.server));
    }
    let pins = |pem: &[u8]| -> Vec<String> {
        crate::x509::parse_pem_bundle(pem)
            .map(|c| c.iter().map(|c| CaPin::of(c).to_string()).collect())
            .unwrap_or_default()
    };
    if pins(&info.ca_pem) != pins(ca_pem) {
        diffs.push(format!(
            "its CA is {}, not the kubeconfig's {}",
            pins(&info.ca_pem).join(","),
            pins(ca_pem).join(",")
        ));
    }
    Ok((!diffs.is_empty()).then(|| diffs.join("; ")))
}

/// The anonymous read of cluster-info: the seed's Role and RoleBinding.
pub fn anonymous_read_objects() -> [Value; 2] {
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": { "name": CLUSTER_INFO_ROLE, "namespace": "kube-public" },
            "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"] }],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": CLUSTER_INFO_ROLE, "namespace": "kube-public" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CLUSTER_INFO_ROLE },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous" }],
        }),
    ]
}

pub fn cluster_role_binding(name: &str, role: &str, group: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group }],
    })
}

/// A right's objects: kubeadm's own ClusterRole where it has one, then the binding.
pub fn right_objects(r: &super::Right) -> Vec<Value> {
    let role = r.creates_role.then(|| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": { "name": r.cluster_role },
            "rules": [{ "apiGroups": [r.access.group], "resources": [r.access.resource], "verbs": [r.access.verb] }],
        })
    });
    role.into_iter()
        .chain([cluster_role_binding(r.binding, r.cluster_role, r.group)])
        .collect()
}

/// Where an object is created.
pub fn collection(object: &Value) -> String {
    let ns = object["metadata"]["namespace"].as_str();
    let (prefix, plural) = match object["kind"].as_str().unwrap_or("") {
        "ConfigMap" => ("/api/v1", "configmaps"),
        "Secret" => ("/api/v1", "secrets"),
        "Role" => ("/apis/rbac.authorization.k8s.io/v1", "roles"),
        "RoleBinding" => ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
        "ClusterRole" => ("/apis/rbac.authorization.k8s.io/v1", "clusterroles"),
        _ => ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    };
    match ns {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}"),
        None => format!("{prefix}/{plural}"),
    }
}

/// `Kind namespace/name`, as printed.
pub fn describe(object: &Value) -> String {
    let m = &object["metadata"];
    match m["namespace"].as_str() {
        Some(ns) => format!(
            "{} {ns}/{}",
            object["kind"].as_str().unwrap_or("?"),
            m["name"].as_str().unwrap_or("?")
        ),
        None => format!(
            "{} {}",
            object["kind"].as_str().unwrap_or("?"),
            m["name"].as_str().unwrap_or("?")
        ),
    }
}

/// The fix when the bootstrap signer does not sign.
pub const SIGNER_FIX: &str = "kube-controller-manager does not run the bootstrap signer: start it with --controllers=*,bootstrapsigner,tokencleaner ('*' leaves both off), and check that kube-controller-manager runs at all (its log, or `kubectl -n kube-system get leases`)";

/// Anonymous read of cluster-info, as a worker does it: 200 or 404 mean RBAC lets it
/// through (a 404 is answered only after authorization), 403 that it does not, 401 that
/// the API server refuses anonymous requests.
async fn anonymous_read(anonymous: &Api) -> Result<(State, String, Option<String>), ApiError> {
    let (status, _) = anonymous
        .call_status(reqwest::Method::GET, CLUSTER_INFO, None)
        .await?;
    Ok(match status {
        200 | 404 => (State::Present, "system:anonymous may get it".into(), None),
        403 => (
            State::Missing,
            "an anonymous read is forbidden (403)".into(),
            Some(status_fix(403)),
        ),
        401 => (
            State::Failed,
            "anonymous requests are refused (401)".into(),
            Some(status_fix(401)),
        ),
        other => (
            State::Failed,
            format!("an anonymous read answered {other}"),
            Some("see kube-apiserver's log".into()),
        ),
    })
}

/// The right of a bootstrapper or a node, as a SubjectAccessReview answers it.
async fn right(api: &Api, right: &super::Right) -> Result<(bool, String), ApiError> {
    let (user, groups): (&str, Vec<&str>) = if right.group == super::BOOTSTRAPPERS {
        (
            "system:bootstrap:kubejoin",
            vec![right.group, "system:authenticated"],
        )
    } else if right.group.starts_with(super::BOOTSTRAPPERS) {
        (
            "system:bootstrap:kubejoin",
            vec![right.group, super::BOOTSTRAPPERS, "system:authenticated"],
        )
    } else {
        (
            "system:node:kubejoin-probe",
            vec![right.group, "system:authenticated"],
        )
    };
    right.access.review_for(api, user, &groups).await
}

/// Checks, plans, applies (unless dry-run) and verifies; `on_plan` sees the plan before
/// anything changes.
pub async fn run(
    api: &Api,
    anonymous: &Api,
    user: &str,
    opts: &Options,
    on_plan: &mut dyn FnMut(&Report),
) -> Result<Report, ApiError> {
    let existing = api.get_opt(CLUSTER_INFO).await?;
    let mut items = vec![
        cluster_info_item(existing.as_ref(), opts),
        anonymous_read_item(anonymous).await?,
    ];
    for r in &RIGHTS {
        items.push(right_item(api, r).await?);
    }
    items.extend(kubelet_config_items(api).await?);
    items.extend(probe_items(existing.as_ref(), opts));
    let mut report = Report {
        server: api.base().to_string(),
        user: user.to_string(),
        dry_run: opts.dry_run,
        items,
    };
    on_plan(&report);
    if opts.dry_run {
        return Ok(report);
    }
    if create_missing(api, opts, &mut report).await? {
        verify_rights(api, anonymous, &mut report).await?;
    }
    for item in report.items.iter_mut() {
        if item.outcome == State::Created && grants(item.name) {
            item.fix = None;
        }
    }
    probe_signer_and_auth(api, opts, &mut report).await?;
    Ok(report)
}

/// cluster-info as it is, against the one kubejoin would write.
fn cluster_info_item(existing: Option<&Value>, opts: &Options) -> Item {
    let configmap = cluster_info::configmap(&opts.server, &opts.ca_pem);
    let ca = crate::x509::parse_pem_bundle(&opts.ca_pem)
        .ok()
        .and_then(|c| c.into_iter().next());
    let ca_text = ca
        .map(|c| {
            format!(
                "CA {} {}",
                c.subject_cn
                    .as_deref()
                    .map(|cn| format!("CN={cn}"))
                    .unwrap_or_default(),
                CaPin::of(&c)
            )
        })
        .unwrap_or_default();
    let (found, detail, fix) = match existing {
        None => (State::Missing, format!("server {}, {ca_text}", opts.server), None),
        Some(cm) => match cluster_info_difference(cm, &opts.server, &opts.ca_pem) {
            Ok(None) => (State::Present, format!("server {}, {ca_text}", opts.server), None),
            Err(why) => (
                State::Failed,
                format!("{why}; left as it is"),
                Some("delete it (kubectl -n kube-public delete configmap cluster-info) and run `kubejoin cluster prepare` again, which writes it in kubeadm's shape".into()),
            ),
            Ok(Some(d)) => (
                State::Differs,
                format!("{d}; left as it is"),
                Some("workers use what cluster-info says; if it is wrong, delete it (kubectl -n kube-public delete configmap cluster-info) and run `kubejoin cluster prepare` again".into()),
            ),
        },
    };
    let mut fix = fix;
    if fix.is_none() && is_loopback(&opts.server) {
        fix = Some(format!(
            "cluster-info names {}, a loopback address other machines cannot reach: pass --server with the address workers use",
            opts.server
        ));
    }
    Item {
        name: "cluster-info",
        what: "the ConfigMap kube-public/cluster-info: the server and CA workers learn".into(),
        found,
        outcome: found,
        objects: vec![describe(&configmap)],
        detail,
        fix,
    }
}

/// Whether anonymous users may read cluster-info.
async fn anonymous_read_item(anonymous: &Api) -> Result<Item, ApiError> {
    let (found, detail, fix) = anonymous_read(anonymous).await?;
    Ok(Item {
        name: "anonymous-read",
        what: "anonymous users may read cluster-info".into(),
        found,
        outcome: found,
        objects: anonymous_read_objects().iter().map(describe).collect(),
        detail,
        fix,
    })
}

/// One right of bootstrappers or nodes, as a SubjectAccessReview answers.
async fn right_item(api: &Api, r: &super::Right) -> Result<Item, ApiError> {
    let (allowed, reason) = right(api, r).await?;
    let state = if allowed {
        State::Present
    } else {
        State::Missing
    };
    Ok(Item {
        name: r.name,
        what: r.what.into(),
        found: state,
        outcome: state,
        objects: right_objects(r).iter().map(describe).collect(),
        detail: if allowed {
            reason
        } else {
            format!(
                "{} may not {} {}",
                r.group,
                r.access.verb,
                resource(&r.access)
            )
        },
        fix: (!allowed).then(|| {
            format!(
                "bind {} to ClusterRole {} ({})",
                r.group, r.cluster_role, r.binding
            )
        }),
    })
}

/// The two items: the ConfigMap and the right to read it.
async fn kubelet_config_items(api: &Api) -> Result<[Item; 2], ApiError> {
    let group = tokens::DEFAULT_GROUP;
    let found = kc::existing(api).await?;
    let name = found
        .as_ref()
        .map(|(n, _)| n.clone())
        .unwrap_or(kc::CONFIGMAP.to_string());
    let config = match &found {
        Some((name, cm)) => {
            let text = cm["data"]["kubelet"].as_str().unwrap_or_default();
            match crate::kubelet::config::parse_cluster(&format!("kube-system/{name}"), text) {
                Ok(c) => {
                    let dns = c.fields.get("clusterDNS").map(Value::to_string);
                    (
                        State::Present,
                        format!(
                            "kube-system/{name}: clusterDNS {}",
                            dns.unwrap_or("not set".into())
                        ),
                        None,
                    )
                }
                Err(why) => (
                    State::Failed,
                    format!("kube-system/{name} cannot be used: {why}; left as it is"),
                    Some(format!(
                        "fix its `kubelet` key, or delete it (kubectl -n kube-system delete configmap {name}) and run `kubejoin cluster prepare` again"
                    )),
                ),
            }
        }
        None => {
            let dns = kc::cluster_dns(api).await?;
            let detail = match &dns {
                Some(ip) => format!("clusterDNS {ip} (Service kube-system/kube-dns)"),
                None => "no clusterDNS: the cluster has no Service kube-system/kube-dns yet".into(),
            };
            (
                State::Missing,
                detail,
                dns.is_none().then(|| {
                    "install the cluster's DNS (CoreDNS, as Service kube-system/kube-dns), then add clusterDNS to kube-system/kubelet-config".to_string()
                }),
            )
        }
    };
    let (allowed, reason) = kc::token_may_read(api, &name).await?;
    let read_state = if allowed {
        State::Present
    } else {
        State::Missing
    };
    Ok([
        Item {
            name: "kubelet-config",
            what: "the cluster's kubelet configuration, which workers start from".into(),
            found: config.0,
            outcome: config.0,
            objects: vec![describe(&kc::configmap(None))],
            detail: config.1,
            fix: config.2,
        },
        Item {
            name: "kubelet-config-read",
            what: format!("bootstrap tokens of group {group} and nodes may read it"),
            found: read_state,
            outcome: read_state,
            objects: kc::read_objects(&name).iter().map(describe).collect(),
            detail: if allowed {
                reason
            } else {
                format!("{group} may not get configmaps/{name} in kube-system")
            },
            fix: (!allowed).then(|| {
                format!(
                    "bind {group} and system:nodes to a Role that may get it ({})",
                    kc::ROLE
                )
            }),
        },
    ])
}

/// The objects to create for a missing item.
async fn kubelet_config_objects(api: &Api, item: &str) -> Result<Vec<Value>, ApiError> {
    Ok(match item {
        "kubelet-config" => vec![kc::configmap(kc::cluster_dns(api).await?.as_deref())],
        _ => {
            let name = kc::existing(api)
                .await?
                .map(|(n, _)| n)
                .unwrap_or(kc::CONFIGMAP.to_string());
            kc::read_objects(&name).to_vec()
        }
    })
}

/// The signer and the authenticator, checked later with a probe token (never in a dry run).
fn probe_items(existing: Option<&Value>, opts: &Options) -> [Item; 2] {
    let signed_now = existing
        .map(|cm| cluster_info::signed_ids_of(cm).len())
        .unwrap_or(0);
    [
        Item {
            name: "bootstrap-signer",
            what: "kube-controller-manager's bootstrap signer signs cluster-info for each token"
                .into(),
            found: State::Unchecked,
            outcome: State::Unchecked,
            objects: Vec::new(),
            detail: if opts.dry_run {
                format!(
                    "not checked: --dry-run creates no probe token (cluster-info holds {signed_now} signature(s))"
                )
            } else {
                format!(
                    "a probe token, deleted after, waits up to {} s for its signature",
                    opts.signer_timeout.as_secs()
                )
            },
            fix: None,
        },
        Item {
            name: "bootstrap-token-auth",
            what: "kube-apiserver authenticates bootstrap tokens".into(),
            found: State::Unchecked,
            outcome: State::Unchecked,
            objects: Vec::new(),
            detail: if opts.dry_run {
                "not checked: --dry-run creates no probe token".into()
            } else {
                "the probe token asks the API server what it may do".into()
            },
            fix: None,
        },
    ]
}

/// Creates the objects of every missing item (an object that exists already is kept);
/// whether any of them grants a right.
async fn create_missing(api: &Api, opts: &Options, report: &mut Report) -> Result<bool, ApiError> {
    let mut rights_created = false;
    for item in report.items.iter_mut() {
        if item.found != State::Missing {
            continue;
        }
        let objects: Vec<Value> = match item.name {
            "cluster-info" => vec![cluster_info::configmap(&opts.server, &opts.ca_pem)],
            "anonymous-read" => anonymous_read_objects().to_vec(),
            "kubelet-config" | "kubelet-config-read" => {
                kubelet_config_objects(api, item.name).await?
            }
            name => RIGHTS
                .iter()
                .filter(|r| r.name == name)
                .flat_map(right_objects)
                .collect(),
        };
        let mut existed = Vec::new();
        for object in &objects {
            match api
                .call(reqwest::Method::POST, &collection(object), Some(object))
                .await
            {
                Ok(_) => {}
                Err(e) if e.status() == Some(409) => existed.push(describe(object)),
                Err(e) => return Err(e),
            }
        }
        item.outcome = State::Created;
        if !existed.is_empty() {
            item.detail = format!(
                "{}; {} existed already and were kept",
                item.detail,
                existed.join(", ")
            );
        }
        rights_created |= grants(item.name);
    }
    Ok(rights_created)
}

/// Verifies the rights just created: RBAC takes effect within a moment; one still denied
/// after 10 s means an existing object of that name grants something else.
async fn verify_rights(api: &Api, anonymous: &Api, report: &mut Report) -> Result<(), ApiError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pending = false;
        for item in report
            .items
            .iter_mut()
            .filter(|i| i.outcome == State::Created && grants(i.name))
        {
            let ok = if item.name == "anonymous-read" {
                anonymous_read(anonymous).await?.0 == State::Present
            } else if item.name == "kubelet-config-read" {
                kc::read_allowed(api).await?
            } else {
                let r = RIGHTS
                    .iter()
                    .find(|r| r.name == item.name)
                    .expect("a right");
                right(api, r).await?.0
            };
            if ok {
                item.fix = None;
                item.detail = format!("{}: now allowed", item.what);
            } else {
                pending = true;
            }
        }
        if !pending || Instant::now() >= deadline {
            for item in report
                .items
                .iter_mut()
                .filter(|i| i.outcome == State::Created && i.fix.is_some() && grants(i.name))
            {
                item.outcome = State::Failed;
                item.detail = format!(
                    "still not allowed after creating {}: an existing object of that name grants something else",
                    item.objects.join(", ")
                );
                item.fix = Some(format!(
                    "compare {} with what `kubejoin cluster prepare --dry-run --output json` shows; delete it and run prepare again",
                    item.objects.join(", ")
                ));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The signer and the authenticator, with one probe token.
async fn probe_signer_and_auth(
    api: &Api,
    opts: &Options,
    report: &mut Report,
) -> Result<(), ApiError> {
    let [signer, auth] = probe(api, opts).await?;
    for (name, (outcome, detail, fix)) in
        [("bootstrap-signer", signer), ("bootstrap-token-auth", auth)]
    {
        let item = report
            .items
            .iter_mut()
            .find(|i| i.name == name)
            .expect("the probe's items");
        item.found = outcome;
        item.outcome = outcome;
        item.detail = detail;
        item.fix = fix;
    }
    Ok(())
}

/// Whether an item grants a right (verified after it is created), rather than being an
/// object workers read.
fn grants(item: &str) -> bool {
    item != "cluster-info" && item != "kubelet-config"
}

fn resource(a: &super::Access) -> String {
    if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    }
}

fn is_loopback(server: &str) -> bool {
    server
        .parse::<crate::endpoint::Endpoint>()
        .map(|e| {
            let host = e.host_name();
            host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
        .unwrap_or(false)
}

type Probed = (State, String, Option<String>);

pub const TOKEN_AUTH_FIX: &str = "kube-apiserver does not authenticate bootstrap tokens: start it with --enable-bootstrap-token-auth=true";

/// Creates a throwaway token (no extra groups, expiring in 10 minutes), waits for its
/// signature, asks the API server as the token what it may do (a SelfSubjectAccessReview:
/// 401 means bootstrap tokens are not authenticated), and deletes it. Its secret is
/// never printed.
async fn probe(api: &Api, opts: &Options) -> Result<[Probed; 2], ApiError> {
    let token = tokens::generate();
    tokens::create(
        api,
        &token,
        &tokens::Spec {
            ttl: Some(Duration::from_secs(600)),
            description: "kubejoin cluster prepare: probes the bootstrap signer and authenticator; deleted after".into(),
            groups: Vec::new(),
            authentication: true,
            single_use: false,
        },
    )
    .await?;
    let signed = tokens::wait_signed(api, token.id(), opts.signer_timeout).await;
    let auth = match Api::new(api.base(), &opts.ca_pem, Some(token.expose())) {
        Ok(as_token) => Some(authenticated(&as_token).await),
        Err(_) => None,
    };
    let deleted = tokens::delete(api, token.id()).await;
    let mut signer = match signed? {
        Some(t) => (
            State::Present,
            format!("signed a probe token in {:.1} s", t.as_secs_f64()),
            None,
        ),
        None => (
            State::Failed,
            format!(
                "no jws-kubeconfig-{} in cluster-info {} s after creating its token",
                token.id(),
                opts.signer_timeout.as_secs()
            ),
            Some(SIGNER_FIX.into()),
        ),
    };
    let auth = match auth {
        Some(Ok(true)) => (
            State::Present,
            "the API server accepts the probe token".into(),
            None,
        ),
        Some(Ok(false)) => (
            State::Failed,
            "the API server refuses the probe token (401)".into(),
            Some(TOKEN_AUTH_FIX.into()),
        ),
        Some(Err(e)) => (
            State::Failed,
            format!("asking as the probe token: {e}"),
            Some(e.fix()),
        ),
        None => (
            State::Unchecked,
            "not checked: the kubeconfig's CA cannot be used".into(),
            None,
        ),
    };
    if let Err(e) = deleted {
        signer.1 = format!(
            "{}; the probe token {} could not be deleted ({e}); it expires in 10 minutes",
            signer.1,
            token.id()
        );
    }
    Ok([signer, auth])
}

/// Whether the API server authenticates the token: a SelfSubjectAccessReview answers
/// (whatever it allows) or is refused with 401. The authenticator reads token Secrets
/// from a cache: a new token may be refused for a moment.
async fn authenticated(as_token: &Api) -> Result<bool, ApiError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match super::RIGHTS[0].access.review_self(as_token).await {
            Ok(_) => return Ok(true),
            Err(e) if e.status() == Some(401) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) if e.status() == Some(401) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// The report as text: one line per item, its state and detail, then its fix.
pub fn render_text(report: &Report, plan: bool) -> String {
    let mut out = String::new();
    if plan {
        out.push_str(&format!(
            "plan for {} (as {}){}:\n",
            report.server,
            report.user,
            if report.dry_run {
                ", --dry-run: nothing is changed"
            } else {
                ""
            }
        ));
    } else {
        out.push_str("result:\n");
    }
    for i in &report.items {
        let state = if plan { i.found } else { i.outcome };
        let action = match (plan, state) {
            (true, State::Missing) if !report.dry_run => format!("create {}", i.objects.join(", ")),
            (true, State::Missing) => format!("would create {}", i.objects.join(", ")),
            (true, State::Unchecked) => "check".into(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<28} {:<9} {}\n",
            i.name,
            state.word(),
            if action.is_empty() {
                i.detail.clone()
            } else {
                format!("{action}: {}", i.detail)
            }
        ));
        if let Some(fix) = i.fix.as_ref().filter(|_| !plan || state != State::Missing) {
            // In place, with something to know: a note, not a fix of a failure.
            let word = if matches!(state, State::Present | State::Created) {
                "note"
            } else {
                "fix"
            };
            out.push_str(&format!("  {:<28} {:<9} {word}: {fix}\n", "", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = include_bytes!("../../tests/fixtures/real-apiserver/ca.crt");

    #[test]
    fn cluster_info_has_kubeadms_shape_and_reads_back() {
        let text = cluster_info::kubeconfig("https://10.0.0.1:6443", CA);
        let info = crate::kubeconfig::parse_cluster_info(&text).unwrap();
        assert_eq!(info.name, "");
        assert_eq!(info.server.to_string(), "https://10.0.0.1:6443");
        assert_eq!(info.ca_pem, CA);
        assert!(text.contains(
            "contexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n"
        ));
        let cm = cluster_info::configmap("https://10.0.0.1:6443", CA);
        assert_eq!(
            cluster_info_difference(&cm, "https://10.0.0.1:6443", CA),
            Ok(None)
        );
        let moved = cluster_info_difference(&cm, "https://lb.example:6443", CA)
            .unwrap()
            .unwrap();
        assert!(
            moved.contains("names server https://10.0.0.1:6443, not https://lb.example:6443"),
            "{moved}"
        );
        let other_ca = include_bytes!("../../tests/fixtures/pki/impostor-ca.crt");
        assert!(
            cluster_info_difference(&cm, "https://10.0.0.1:6443", other_ca)
                .unwrap()
                .unwrap()
                .contains("its CA is sha256:")
        );
        assert_eq!(
            cluster_info_difference(&json!({"data": {}}), "https://10.0.0.1:6443", CA),
            Err("it has no data.kubeconfig".into())
        );
        // The seed's own: `kubectl config set-cluster bootstrap` names the cluster and sets
        // no current context, so that kubeadm (and kubejoin) find no cluster in it.
        let seed = json!({"data": {"kubeconfig": "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://10.0.0.1:6443\n  name: bootstrap\ncontexts: null\ncurrent-context: \"\"\nkind: Config\n"}});
        assert!(
            cluster_info_difference(&seed, "https://10.0.0.1:6443", CA)
                .unwrap_err()
                .contains("not usable by workers")
        );
    }

    #[test]
    fn objects_go_where_kubectl_would_create_them() {
        let [role, binding] = anonymous_read_objects();
        assert_eq!(
            collection(&role),
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/roles"
        );
        assert_eq!(
            describe(&binding),
            "RoleBinding kube-public/kubeadm:bootstrap-signer-clusterinfo"
        );
        let crb = cluster_role_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "system:bootstrappers",
        );
        assert_eq!(
            collection(&crb),
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        );
        assert_eq!(
            collection(&cluster_info::configmap("https://h:1", CA)),
            "/api/v1/namespaces/kube-public/configmaps"
        );
        assert_eq!(
            describe(&crb),
            "ClusterRoleBinding kubeadm:kubelet-bootstrap"
        );
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("https://127.0.0.1:6443"));
        assert!(is_loopback("https://localhost:6443"));
        assert!(!is_loopback("https://10.0.0.1:6443"));
    }
}
