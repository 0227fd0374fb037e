//! `kubejoin token create|list|delete`: bootstrap tokens as kubeadm makes them, a Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`. The token
//! comes from the OS's secure random source (the getrandom system call, through
//! rustls' ring provider) with no modulo bias; its secret is printed only in the output
//! the user asked for, never by `list`, in logs or in errors.
//!
//! A single-use token (`--single-use`) also gets a Role and a RoleBinding that let its own
//! user, `system:bootstrap:<id>`, get and delete its Secret and nothing else, both owned
//! by the Secret: the node deletes ("burns") its token once it is in
//! (`join::burn`), every copy of the token dies with it, and the garbage collector
//! removes the Role and RoleBinding however the token ends.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Api, ApiError};
use crate::cluster_info;
use crate::token::{BootstrapToken, ID_LEN, SECRET_LEN};

pub const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub use super::DEFAULT_GROUP;
const GROUP_PREFIX: &str = "system:bootstrappers:";
/// The label of a single-use token's Secret ("true"), Role and RoleBinding (its id): the
/// node burns only a token whose Secret carries it.
pub const SINGLE_USE_LABEL: &str = "kubejoin/single-use";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system";

/// A token from `random`, which fills a buffer with random bytes: each character by
/// rejection sampling (bytes >= 252 are drawn again), so every character is uniform.
pub fn token_from(random: &mut dyn FnMut(&mut [u8])) -> BootstrapToken {
    let mut chars = String::with_capacity(ID_LEN + 1 + SECRET_LEN);
    let limit = 256 - 256 % ALPHABET.len(); // 252
    let mut buf = [0u8; 32];
    while chars.len() < ID_LEN + 1 + SECRET_LEN {
        random(&mut buf);
        for b in buf {
            if usize::from(b) < limit && chars.len() < ID_LEN + 1 + SECRET_LEN {
                if chars.len() == ID_LEN {
                    chars.push('.');
                }
                chars.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
            }
        }
    }
    let token = chars.parse().expect("a token of the token alphabet");
    zeroize::Zeroize::zeroize(&mut chars);
    zeroize::Zeroize::zeroize(&mut buf);
    token
}

/// A new token from the OS's secure random source.
pub fn generate() -> BootstrapToken {
    let random = rustls::crypto::ring::default_provider().secure_random;
    token_from(&mut |buf| {
        random
            .fill(buf)
            .expect("the OS's random source (getrandom) works")
    })
}

/// `\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z`, Kubernetes' rule for a token's
/// extra groups.
pub fn valid_group(group: &str) -> bool {
    let Some(body) = group.strip_prefix(GROUP_PREFIX) else {
        return false;
    };
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=256).contains(&body.len())
        && body.bytes().all(|b| ok(b) || b == b':' || b == b'-')
        && body.bytes().last().is_some_and(ok)
}

/// What a token is for.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `None`: never expires.
    pub ttl: Option<Duration>,
    pub description: String,
    /// Extra groups (`auth-extra-groups`); every token is also in system:bootstrappers.
    pub groups: Vec<String>,
    /// Usable as a bearer token (kubelet's TLS bootstrap); every token kubejoin makes
    /// also signs cluster-info.
    pub authentication: bool,
    /// The node that joins with it deletes it (its Secret labelled, with a Role and
    /// RoleBinding of its own).
    pub single_use: bool,
}

/// The Secret's data, as kubeadm encodes it.
pub fn secret_data(
    token: &BootstrapToken,
    spec: &Spec,
    now: i64,
) -> BTreeMap<&'static str, String> {
    let mut data = BTreeMap::new();
    data.insert("token-id", token.id().to_string());
    data.insert("token-secret", token.secret().to_string());
    if !spec.description.is_empty() {
        data.insert("description", spec.description.clone());
    }
    if let Some(expiration) = expiration(spec, now) {
        data.insert("expiration", expiration);
    }
    data.insert("usage-bootstrap-signing", "true".into());
    if spec.authentication {
        data.insert("usage-bootstrap-authentication", "true".into());
    }
    if !spec.groups.is_empty() {
        data.insert("auth-extra-groups", spec.groups.join(","));
    }
    data
}

/// The Secret, its data base64-encoded.
pub fn secret_manifest(token: &BootstrapToken, spec: &Spec, now: i64) -> Value {
    let data: serde_json::Map<String, Value> = secret_data(token, spec, now)
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(STANDARD.encode(v))))
        .collect();
    let mut metadata = json!({ "name": secret_name(token.id()), "namespace": "kube-system" });
    if spec.single_use {
        metadata["labels"] = json!({ SINGLE_USE_LABEL: "true" });
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": SECRET_TYPE,
        "data": data,
    })
}

pub fn secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// The name of a single-use token's Role and RoleBinding.
pub fn single_use_name(id: &str) -> String {
    format!("kubejoin:bootstrap-token-{id}")
}

/// A single-use token's Role and RoleBinding: its user may get and delete its Secret, by
/// name, and nothing else; both are owned by the Secret (`secret_uid`), so that they go
/// with it.
pub fn single_use_rbac(id: &str, secret_uid: &str) -> (Value, Value) {
    let name = single_use_name(id);
    let metadata = json!({
        "name": name,
        "namespace": "kube-system",
        "labels": { SINGLE_USE_LABEL: id },
        "ownerReferences": [{
            "apiVersion": "v1",
            "kind": "Secret",
            "name": secret_name(id),
            "uid": secret_uid,
        }],
    });
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata,
        "rules": [{
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [secret_name(id)],
            "verbs": ["get", "delete"],
        }],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata,
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [{
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "User",
            "name": format!("system:bootstrap:{id}"),
        }],
    });
    (role, binding)
}

/// Whether a token is single-use, as `token list` shows it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SingleUse {
    Yes,
    No,
    /// Labelled single-use, but its RoleBinding is gone: the node cannot delete it.
    Broken,
}

impl SingleUse {
    /// From the Secret and the names of the cluster's single-use RoleBindings.
    pub fn of(secret: &Value, id: &str, bindings: &[String]) -> SingleUse {
        if secret["metadata"]["labels"][SINGLE_USE_LABEL] != "true" {
            SingleUse::No
        } else if bindings.contains(&single_use_name(id)) {
            SingleUse::Yes
        } else {
            SingleUse::Broken
        }
    }

    fn word(self) -> &'static str {
        match self {
            SingleUse::Yes => "yes",
            SingleUse::No => "no",
            SingleUse::Broken => "broken",
        }
    }
}

/// A token as `token list` shows it: never its secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`, or none: never expires.
    pub expires: Option<String>,
    pub expired: bool,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
    pub description: String,
    /// Whether cluster-info holds its signature.
    pub signed: bool,
    pub single_use: SingleUse,
}

/// A row from a token Secret (its `data` base64, as the API returns it), with the ids
/// cluster-info is signed for and the names of the single-use RoleBindings.
pub fn row(secret: &Value, now: i64, signed_ids: &[String], bindings: &[String]) -> Option<Row> {
    let data = secret["data"].as_object()?;
    let get = |k: &str| -> Option<String> {
        let v = data.get(k)?.as_str()?;
        String::from_utf8(STANDARD.decode(v).ok()?).ok()
    };
    let id = get("token-id")?;
    let expires = get("expiration").filter(|e| !e.is_empty());
    let expired = match &expires {
        None => false,
        Some(e) => crate::clock::parse_cert_time(e).is_none_or(|t| t <= now),
    };
    let usages = ["authentication", "signing"]
        .iter()
        .filter(|u| get(&format!("usage-bootstrap-{u}")).as_deref() == Some("true"))
        .map(|u| u.to_string())
        .collect();
    let groups = get("auth-extra-groups")
        .map(|g| g.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    Some(Row {
        signed: signed_ids.contains(&id),
        single_use: SingleUse::of(secret, &id, bindings),
        id,
        expires,
        expired,
        usages,
        groups,
        description: get("description").unwrap_or_default(),
    })
}

const TOKENS: &str = "/api/v1/namespaces/kube-system/secrets";

/// When a token of `spec` made at `now` expires, as its Secret says it.
fn expiration(spec: &Spec, now: i64) -> Option<String> {
    spec.ttl
        .map(|ttl| crate::clock::format_utc(now + ttl.as_secs() as i64))
}

/// Creates the token's Secret, and a single-use token's Role and RoleBinding; returns its
/// expiration. A single-use token whose Role or RoleBinding cannot be made is deleted
/// again: no token is handed out that its node could not burn.
pub async fn create(
    api: &Api,
    token: &BootstrapToken,
    spec: &Spec,
) -> Result<Option<String>, ApiError> {
    let now = crate::clock::unix_now();
    let secret = secret_manifest(token, spec, now);
    let created = api
        .call(reqwest::Method::POST, TOKENS, Some(&secret))
        .await?;
    if spec.single_use {
        let uid = created["metadata"]["uid"].as_str().unwrap_or_default();
        let (role, binding) = single_use_rbac(token.id(), uid);
        let made = async {
            api.call(reqwest::Method::POST, &format!("{RBAC}/roles"), Some(&role))
                .await?;
            api.call(
                reqwest::Method::POST,
                &format!("{RBAC}/rolebindings"),
                Some(&binding),
            )
            .await
        };
        if let Err(e) = made.await {
            // The Role, if made, goes with its owner.
            let _ = delete(api, token.id()).await;
            return Err(e);
        }
    }
    Ok(expiration(spec, now))
}

/// The `items` of a list (`GET path`).
async fn items(api: &Api, path: &str) -> Result<Vec<Value>, ApiError> {
    let mut list = api.call(reqwest::Method::GET, path, None).await?;
    Ok(match list["items"].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    })
}

/// Every bootstrap token of the cluster.
pub async fn list(api: &Api) -> Result<Vec<Row>, ApiError> {
    let secrets = items(
        api,
        &format!(
            "{TOKENS}?fieldSelector=type%3D{}",
            SECRET_TYPE.replace('/', "%2F")
        ),
    )
    .await?;
    let signed = match api.get_opt(super::CLUSTER_INFO).await? {
        Some(cm) => cluster_info::signed_ids_of(&cm),
        None => Vec::new(),
    };
    let bindings: Vec<String> = items(
        api,
        &format!(
            "{RBAC}/rolebindings?labelSelector={}",
            SINGLE_USE_LABEL.replace('/', "%2F")
        ),
    )
    .await?
    .iter()
    .filter_map(|b| b["metadata"]["name"].as_str().map(str::to_string))
    .collect();
    let now = crate::clock::unix_now();
    let mut rows: Vec<Row> = secrets
        .iter()
        .filter_map(|s| row(s, now, &signed, &bindings))
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// Deletes the token's Secret; a token that does not exist is an error (404).
pub async fn delete(api: &Api, id: &str) -> Result<(), ApiError> {
    api.call(
        reqwest::Method::DELETE,
        &format!("{TOKENS}/{}", secret_name(id)),
        None,
    )
    .await?;
    Ok(())
}

/// Waits up to `timeout` for cluster-info to hold the token's signature.
pub async fn wait_signed(
    api: &Api,
    id: &str,
    timeout: Duration,
) -> Result<Option<Duration>, ApiError> {
    let start = std::time::Instant::now();
    loop {
        if let Some(cm) = api.get_opt(super::CLUSTER_INFO).await?
            && cluster_info::signed_ids_of(&cm).iter().any(|k| k == id)
        {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() >= timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `token list` as text: one line per token, never its secret; each column as wide as its
/// widest cell.
pub fn render_list(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let expires = match (&r.expires, r.expired) {
                (None, _) => "never".to_string(),
                (Some(e), true) => format!("{e} (expired)"),
                (Some(e), false) => e.clone(),
            };
            vec![
                r.id.clone(),
                expires,
                r.usages.join(","),
                if r.signed { "yes" } else { "no" }.into(),
                r.single_use.word().into(),
                if r.groups.is_empty() {
                    "<none>".into()
                } else {
                    r.groups.join(",")
                },
                r.description.clone(),
            ]
        })
        .collect();
    crate::table::render(
        &[
            "TOKEN",
            "EXPIRES",
            "USAGES",
            "SIGNED",
            "SINGLE-USE",
            "EXTRA GROUPS",
            "DESCRIPTION",
        ],
        &cells,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Value {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/vectors/token-format.json"
        ))
        .unwrap()
    }

    #[test]
    fn random_tokens_are_valid_and_unbiased() {
        // A source that gives 252..=255 first: all rejected, never folded onto 0..=3.
        let mut calls = 0;
        let t = token_from(&mut |buf| {
            calls += 1;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = if calls == 1 {
                    252 + (i % 4) as u8
                } else {
                    i as u8
                };
            }
        });
        assert_eq!(calls, 2);
        assert_eq!(t.id(), "012345");
        assert_eq!(t.secret(), "6789abcdefghijkl");
        let a = generate();
        let b = generate();
        assert_ne!(a.expose().as_str(), b.expose().as_str());
        // Every character of 3600 tokens' ids: all 36 letters appear.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..600 {
            seen.extend(generate().id().chars());
        }
        assert_eq!(seen.len(), 36);
    }

    #[test]
    fn the_secret_matches_kubeadms_encoding() {
        let now = 3661; // 1970-01-01T01:01:01Z
        for c in vectors()["secret_encode"].as_array().unwrap() {
            let input = &c["input"];
            if input.get("expires").is_some() {
                continue; // kubejoin takes a TTL, not an absolute expiry
            }
            let token: BootstrapToken = c["token"].as_str().unwrap().parse().unwrap();
            let usages: Vec<&str> = input["usages"]
                .as_array()
                .map(|u| u.iter().map(|u| u.as_str().unwrap()).collect())
                .unwrap_or_default();
            let spec = Spec {
                ttl: input["ttl"]
                    .as_str()
                    .map(|t| crate::config::parse_duration(t).unwrap()),
                description: input["description"].as_str().unwrap_or("").into(),
                groups: input["groups"]
                    .as_array()
                    .map(|g| g.iter().map(|g| g.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
                authentication: usages.contains(&"authentication"),
                single_use: false,
            };
            let mut got: BTreeMap<String, String> = secret_data(&token, &spec, now)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if !usages.contains(&"signing") {
                // kubejoin's tokens always sign cluster-info.
                assert_eq!(
                    got.remove("usage-bootstrap-signing").as_deref(),
                    Some("true")
                );
            }
            let want: BTreeMap<String, String> =
                serde_json::from_value(c["expected_data"].clone()).unwrap();
            assert_eq!(got, want, "{}", c["name"]);
        }
        let token: BootstrapToken = "abcdef.abcdef0123456789".parse().unwrap();
        let spec = Spec {
            ttl: None,
            description: String::new(),
            groups: vec![DEFAULT_GROUP.into()],
            authentication: true,
            single_use: false,
        };
        let secret = secret_manifest(&token, &spec, 0);
        assert_eq!(secret["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(secret["type"], SECRET_TYPE);
        assert_eq!(
            secret["data"]["token-secret"],
            STANDARD.encode("abcdef0123456789")
        );
        let row = row(&secret, 0, &["abcdef".into()], &[]).unwrap();
        assert_eq!(
            row,
            Row {
                id: "abcdef".into(),
                expires: None,
                expired: false,
                usages: vec!["authentication".into(), "signing".into()],
                groups: vec![DEFAULT_GROUP.into()],
                description: String::new(),
                signed: true,
                single_use: SingleUse::No,
            }
        );
        assert!(!render_list(&[row]).contains("0123456789"));
    }

    #[test]
    fn group_names_follow_kubernetes() {
        for c in vectors()["extra_group_name"].as_array().unwrap() {
            assert_eq!(
                valid_group(c["input"].as_str().unwrap()),
                c["valid"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
        }
    }

    #[test]
    fn expiry_in_a_row() {
        let token: BootstrapToken = "abcdef.abcdef0123456789".parse().unwrap();
        let spec = Spec {
            ttl: Some(Duration::from_secs(60)),
            description: "d".into(),
            groups: Vec::new(),
            authentication: false,
            single_use: false,
        };
        let secret = secret_manifest(&token, &spec, 1000);
        assert!(!row(&secret, 1059, &[], &[]).unwrap().expired);
        let r = row(&secret, 1060, &[], &[]).unwrap();
        assert!(r.expired);
        assert_eq!(r.usages, ["signing"]);
        assert_eq!(r.expires.as_deref(), Some("1970-01-01T00:17:40Z"));
    }

    #[test]
    fn a_single_use_token_may_delete_its_own_secret_and_nothing_else() {
        let token: BootstrapToken = "abcdef.abcdef0123456789".parse().unwrap();
        let spec = Spec {
            ttl: Some(Duration::from_secs(3600)),
            description: String::new(),
            groups: vec![DEFAULT_GROUP.into()],
            authentication: true,
            single_use: true,
        };
        let secret = secret_manifest(&token, &spec, 0);
        assert_eq!(secret["metadata"]["labels"][SINGLE_USE_LABEL], "true");
        let (role, binding) = single_use_rbac("abcdef", "0b1c-uid");
        assert_eq!(role["metadata"]["name"], "kubejoin:bootstrap-token-abcdef");
        assert_eq!(role["metadata"]["namespace"], "kube-system");
        assert_eq!(
            role["rules"],
            json!([{
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": ["bootstrap-token-abcdef"],
                "verbs": ["get", "delete"],
            }])
        );
        assert_eq!(
            binding["subjects"],
            json!([{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:bootstrap:abcdef" }])
        );
        assert_eq!(
            binding["roleRef"]["name"],
            "kubejoin:bootstrap-token-abcdef"
        );
        for owned in [&role, &binding] {
            assert_eq!(
                owned["metadata"]["ownerReferences"],
                json!([{ "apiVersion": "v1", "kind": "Secret", "name": "bootstrap-token-abcdef", "uid": "0b1c-uid" }])
            );
        }
        let binding_names = ["kubejoin:bootstrap-token-abcdef".to_string()];
        assert_eq!(
            row(&secret, 0, &[], &binding_names).unwrap().single_use,
            SingleUse::Yes
        );
        // Labelled, but the node could not burn it: said so.
        let r = row(&secret, 0, &[], &[]).unwrap();
        assert_eq!(r.single_use, SingleUse::Broken);
        assert!(render_list(&[r]).contains(" broken "));
        // A RoleBinding of that name does not make an unlabelled token single-use.
        let plain = secret_manifest(
            &token,
            &Spec {
                single_use: false,
                ..spec
            },
            0,
        );
        assert_eq!(
            row(&plain, 0, &[], &binding_names).unwrap().single_use,
            SingleUse::No
        );
    }
}
