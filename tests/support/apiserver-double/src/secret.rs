//! Bootstrap-token Secrets as the control plane reads them: the bootstrap signer's
//! eligibility rule, the API server's bootstrap-token authenticator, and kubeadm's
//! encoding and decoding of the Secret. The double decides what to sign and whom to
//! authenticate with these, and every token-format vector checks them.

use std::collections::BTreeMap;

pub const NAME_PREFIX: &str = "bootstrap-token-";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const DEFAULT_GROUP: &str = "system:bootstrappers";
const GROUP_PREFIX: &str = "system:bootstrappers:";
const USAGE_PREFIX: &str = "usage-bootstrap-";
const KNOWN_USAGES: [&str; 2] = ["signing", "authentication"];

/// A `kube-system/bootstrap-token-<id>` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapSecret {
    pub name: String,
    pub secret_type: String,
    pub data: BTreeMap<String, String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl BootstrapSecret {
    /// The Secret `kubeadm token create` writes for `id.secret` with both usages.
    pub fn new(id: &str, secret: &str) -> Self {
        Self::new_in(id, secret, &[])
    }

    /// As [`BootstrapSecret::new`], with extra groups (`auth-extra-groups`).
    pub fn new_in(id: &str, secret: &str, groups: &[&str]) -> Self {
        let token = format!("{id}.{secret}");
        let input = EncodeInput {
            usages: vec!["signing".into(), "authentication".into()],
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        BootstrapSecret {
            name: secret_name(id),
            secret_type: SECRET_TYPE.into(),
            data: encode(&token, &input, 0).expect("valid input"),
            deleting: false,
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }
}

/// `bootstrap-token-<id>`, with no validation.
pub fn secret_name(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

fn valid_id(id: &str) -> bool {
    id.len() == 6
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn valid_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    (valid_id(id)
        && secret.len() == 16
        && secret
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then_some((id, secret))
}

/// The token id in a Secret name, when the name is exactly the prefix and a valid id.
pub fn parse_secret_name(name: &str) -> Option<&str> {
    name.strip_prefix(NAME_PREFIX).filter(|id| valid_id(id))
}

/// `\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z`
pub fn valid_extra_group(group: &str) -> bool {
    let Some(body) = group.strip_prefix(GROUP_PREFIX) else {
        return false;
    };
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=256).contains(&body.len())
        && body.bytes().all(|b| ok(b) || b == b':' || b == b'-')
        && body.bytes().last().is_some_and(ok)
}

/// The groups of a token: `system:bootstrappers` plus the valid extras, de-duplicated and
/// sorted. One invalid extra group makes the whole value invalid.
pub fn groups(auth_extra_groups: Option<&str>) -> Result<Vec<String>, String> {
    let mut out = vec![DEFAULT_GROUP.to_string()];
    if let Some(value) = auth_extra_groups.filter(|v| !v.is_empty()) {
        for g in value.split(',') {
            if !valid_extra_group(g) {
                return Err(format!("{g:?} is not a valid bootstrap group"));
            }
            out.push(g.to_string());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn valid_usages<S: AsRef<str>>(usages: &[S]) -> bool {
    usages.iter().all(|u| KNOWN_USAGES.contains(&u.as_ref()))
}

/// Seconds since the epoch of an RFC 3339 time (`Z` or `±hh:mm`, optional fraction).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (
                rest[1..3].parse::<i64>().ok()?,
                rest[4..6].parse::<i64>().ok()?,
            );
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian `(year, month, day)` of a day count since 1970-01-01
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as kubeadm writes expirations.
pub fn format_rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Absent or empty never expires; unparseable counts as expired; expired at or before now.
pub fn is_expired(expiration: Option<&str>, now: i64) -> bool {
    match expiration.filter(|e| !e.is_empty()) {
        None => false,
        Some(e) => parse_rfc3339(e).is_none_or(|t| t <= now),
    }
}

/// The token id and secret the bootstrap signer would sign cluster-info with, if any.
pub fn signing_key(s: &BootstrapSecret, now: i64) -> Option<(String, String)> {
    let name_id = parse_secret_name(&s.name)?;
    let id = s.get("token-id").filter(|v| !v.is_empty())?;
    let secret = s.get("token-secret").filter(|v| !v.is_empty())?;
    (name_id == id
        && !is_expired(s.get("expiration"), now)
        && s.get("usage-bootstrap-signing") == Some("true"))
    .then(|| (id.to_string(), secret.to_string()))
}

/// A user the bootstrap-token authenticator recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// The API server's bootstrap-token authenticator for a bearer token and the Secret named
/// by its id. `None` is "not authenticated", never an error.
pub fn authenticate(s: &BootstrapSecret, bearer: &str, now: i64) -> Option<User> {
    let (id, secret) = valid_token(bearer)?;
    if s.name != secret_name(id) || s.deleting || s.secret_type != SECRET_TYPE || s.data.is_empty()
    {
        return None;
    }
    // Constant time, as the API server compares.
    let stored = s.get("token-secret")?.as_bytes();
    if stored.len() != secret.len()
        || stored
            .iter()
            .zip(secret.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return None;
    }
    if s.get("token-id")? != id
        || is_expired(s.get("expiration"), now)
        || s.get("usage-bootstrap-authentication") != Some("true")
    {
        return None;
    }
    Some(User {
        name: format!("system:bootstrap:{id}"),
        groups: groups(s.get("auth-extra-groups")).ok()?,
    })
}

/// What `kubeadm token create` is told.
#[derive(Debug, Clone, Default)]
pub struct EncodeInput {
    pub description: Option<String>,
    /// A Go duration added to now (`2h`, `24h0m0s`); `expires` wins over it.
    pub ttl: Option<String>,
    pub expires: Option<String>,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

/// kubeadm's token-to-Secret-data mapping.
pub fn encode(
    token: &str,
    input: &EncodeInput,
    now: i64,
) -> Result<BTreeMap<String, String>, String> {
    let (id, secret) = valid_token(token).ok_or("invalid token")?;
    let mut data = BTreeMap::from([
        ("token-id".to_string(), id.to_string()),
        ("token-secret".to_string(), secret.to_string()),
    ]);
    if let Some(d) = &input.description {
        data.insert("description".into(), d.clone());
    }
    let expiration = match (&input.expires, &input.ttl) {
        (Some(e), _) => Some(parse_rfc3339(e).ok_or("invalid expires")?),
        (None, Some(ttl)) => Some(now + parse_go_duration(ttl).ok_or("invalid ttl")?),
        (None, None) => None,
    };
    if let Some(t) = expiration {
        data.insert("expiration".into(), format_rfc3339(t));
    }
    for usage in &input.usages {
        data.insert(format!("{USAGE_PREFIX}{usage}"), "true".into());
    }
    if !input.groups.is_empty() {
        data.insert("auth-extra-groups".into(), input.groups.join(","));
    }
    Ok(data)
}

/// A token read back from its Secret by kubeadm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    pub token: String,
    pub description: Option<String>,
    pub expires: Option<i64>,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

pub fn decode(name: &str, data: &BTreeMap<String, String>) -> Result<Decoded, String> {
    let id = data.get("token-id").ok_or("no token-id")?;
    if name != secret_name(id) {
        return Err(format!("Secret name {name:?} does not match token-id"));
    }
    let secret = data.get("token-secret").ok_or("no token-secret")?;
    let token = format!("{id}.{secret}");
    valid_token(&token).ok_or("invalid token")?;
    let expires = match data.get("expiration").filter(|e| !e.is_empty()) {
        Some(e) => Some(parse_rfc3339(e).ok_or("invalid expiration")?),
        None => None,
    };
    let mut usages: Vec<String> = data
        .iter()
        .filter(|(k, v)| k.starts_with(USAGE_PREFIX) && v.as_str() == "true")
        .map(|(k, _)| k[USAGE_PREFIX.len()..].to_string())
        .collect();
    usages.sort();
    let groups = match data.get("auth-extra-groups").filter(|g| !g.is_empty()) {
        Some(g) => g.split(',').map(str::to_string).collect(),
        None => Vec::new(),
    };
    Ok(Decoded {
        token,
        description: data.get("description").cloned(),
        expires,
        usages,
        groups,
    })
}

/// Go's `time.ParseDuration` for the units kubeadm's TTLs use (h, m, s, ms).
fn parse_go_duration(s: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        let value: i64 = rest.get(..n)?.parse().ok()?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        total += match &rest[..u] {
            "h" => value * 3600,
            "m" => value * 60,
            "s" => value,
            "ms" => value / 1000,
            _ => return None,
        };
        rest = &rest[u..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_slice(
            &std::fs::read(crate::fixtures_dir().join("vectors/token-format.json")).unwrap(),
        )
        .unwrap()
    }

    fn cases(section: &str) -> Vec<Value> {
        let v = vectors()[section].as_array().unwrap().clone();
        assert!(!v.is_empty(), "{section}");
        v
    }

    fn map(v: &Value) -> BTreeMap<String, String> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }

    const NOW: i64 = 1_795_930_050;

    /// `now+1h` / `now-1h` placeholders become real timestamps.
    fn resolve(v: &str) -> String {
        match v {
            "now+1h" => format_rfc3339(NOW + 3600),
            "now-1h" => format_rfc3339(NOW - 3600),
            other => other.to_string(),
        }
    }

    #[test]
    fn names() {
        for c in cases("secret_name") {
            assert_eq!(secret_name(c["token_id"].as_str().unwrap()), c["expected"]);
        }
        for c in cases("join_id_and_secret") {
            let joined = format!(
                "{}.{}",
                c["token_id"].as_str().unwrap(),
                c["token_secret"].as_str().unwrap()
            );
            assert_eq!(joined, c["expected"].as_str().unwrap());
        }
        for c in cases("secret_name_parse") {
            let got = parse_secret_name(c["name"].as_str().unwrap());
            assert_eq!(got.is_some(), c["valid"].as_bool().unwrap(), "{c}");
            if let Some(id) = got {
                assert_eq!(id, c["token_id"].as_str().unwrap());
            }
        }
    }

    #[test]
    fn extra_groups_and_usages() {
        for c in cases("extra_group_name") {
            assert_eq!(
                valid_extra_group(c["input"].as_str().unwrap()),
                c["valid"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
        }
        for c in cases("auth_extra_groups") {
            let got = groups(c["auth_extra_groups"].as_str());
            assert_eq!(
                got.is_err(),
                c["expected_error"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
            if let Ok(g) = got {
                assert_eq!(serde_json::json!(g), c["expected_groups"], "{}", c["name"]);
            }
        }
        for c in cases("usages") {
            let usages: Vec<&str> = c["usages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap())
                .collect();
            assert_eq!(
                valid_usages(&usages),
                c["valid"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
        }
    }

    #[test]
    fn expiration() {
        for c in cases("expiration") {
            let value = match c.get("expiration_offset_seconds_from_now") {
                Some(off) => Some(format_rfc3339(NOW + off.as_i64().unwrap())),
                None => c["expiration"].as_str().map(str::to_string),
            };
            assert_eq!(
                is_expired(value.as_deref(), NOW),
                c["expired"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
        }
        assert_eq!(parse_rfc3339("1970-01-01T01:01:01Z"), Some(3661));
        assert_eq!(parse_rfc3339("1970-01-01T02:01:01.5+01:00"), Some(3661));
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None);
        assert_eq!(format_rfc3339(NOW), "2026-11-29T05:27:30Z");
    }

    #[test]
    fn signing_eligibility() {
        for c in cases("signing_eligibility") {
            let mut data = map(&c["data"]);
            if let Some(e) = data.get_mut("expiration") {
                *e = resolve(e);
            }
            let s = BootstrapSecret {
                name: c["secret_name"].as_str().unwrap().into(),
                secret_type: c["secret_type"].as_str().unwrap().into(),
                data,
                deleting: false,
            };
            assert_eq!(
                signing_key(&s, NOW).is_some(),
                c["eligible"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
        }
    }

    #[test]
    fn authentication() {
        for c in cases("authentication") {
            let sec = &c["secret"];
            let s = BootstrapSecret {
                name: sec["name"].as_str().unwrap().into(),
                secret_type: sec["type"].as_str().unwrap().into(),
                data: map(&sec["data"]),
                deleting: sec["deletion_timestamp_set"].as_bool().unwrap(),
            };
            let got = authenticate(&s, c["bearer_token"].as_str().unwrap(), NOW);
            assert_eq!(
                got.is_some(),
                c["expected_authenticated"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
            if let Some(user) = got {
                assert_eq!(user.name, c["expected_user"]["name"].as_str().unwrap());
                assert_eq!(serde_json::json!(user.groups), c["expected_user"]["groups"]);
            }
        }
    }

    #[test]
    fn kubeadm_encode_and_decode() {
        for c in cases("secret_encode") {
            let now = parse_rfc3339(c["now"].as_str().unwrap()).unwrap();
            let i = &c["input"];
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            let input = EncodeInput {
                description: i["description"].as_str().map(str::to_string),
                ttl: i["ttl"].as_str().map(str::to_string),
                expires: i["expires"].as_str().map(str::to_string),
                usages: strings(&i["usages"]),
                groups: strings(&i["groups"]),
            };
            let data = encode(c["token"].as_str().unwrap(), &input, now).unwrap();
            let expected = c
                .get("expected_data")
                .unwrap_or(&c["expected_secret"]["data"]);
            assert_eq!(data, map(expected), "{}", c["name"]);
            if let Some(secret) = c.get("expected_secret") {
                let id = &data["token-id"];
                assert_eq!(secret_name(id), secret["name"].as_str().unwrap());
                assert_eq!(SECRET_TYPE, secret["type"].as_str().unwrap());
            }
        }
        for c in cases("secret_decode") {
            let got = decode(c["secret_name"].as_str().unwrap(), &map(&c["data"]));
            assert_eq!(
                got.is_err(),
                c["expected_error"].as_bool().unwrap(),
                "{}",
                c["name"]
            );
            if let Ok(d) = got {
                let e = &c["expected"];
                assert_eq!(d.token, e["token"].as_str().unwrap(), "{}", c["name"]);
                assert_eq!(
                    d.description.as_deref(),
                    e["description"].as_str(),
                    "{}",
                    c["name"]
                );
                assert_eq!(
                    d.expires,
                    e["expires"].as_str().map(|s| parse_rfc3339(s).unwrap()),
                    "{}",
                    c["name"]
                );
                let list = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                        .unwrap_or_default()
                };
                assert_eq!(d.usages, list(&e["usages"]), "{}", c["name"]);
                assert_eq!(d.groups, list(&e["groups"]), "{}", c["name"]);
            }
        }
    }

    #[test]
    fn the_real_clusters_secrets_sign_and_authenticate_as_captured() {
        use base64::Engine;
        let read = |rel: &str| -> Value {
            serde_json::from_slice(&std::fs::read(crate::fixtures_dir().join(rel)).unwrap())
                .unwrap()
        };
        let stored = read("real-apiserver/token-secrets-as-stored.json");
        let tokens = read("real-apiserver/tokens.json");
        let items = stored["items"].as_array().unwrap();
        assert!(!items.is_empty());
        for item in items {
            let data = item["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap())
                        .unwrap();
                    (k.clone(), String::from_utf8(raw).unwrap())
                })
                .collect::<BTreeMap<_, _>>();
            let s = BootstrapSecret {
                name: item["metadata"]["name"].as_str().unwrap().into(),
                secret_type: item["type"].as_str().unwrap().into(),
                data,
                deleting: false,
            };
            let id = parse_secret_name(&s.name).unwrap();
            let t = tokens
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["token_id"] == id)
                .unwrap();
            let created = parse_rfc3339(t["created"].as_str().unwrap()).unwrap();
            // What the bootstrap signer did with it (captures 01-07).
            assert_eq!(
                signing_key(&s, created + 1).is_some(),
                t["usage_bootstrap_signing"].as_bool().unwrap(),
                "{id}"
            );
            // And the authenticator (captures 11, 16, 21): user and extra groups.
            let user = authenticate(&s, t["token"].as_str().unwrap(), created + 1).unwrap();
            assert_eq!(user.name, format!("system:bootstrap:{id}"));
            assert_eq!(
                user.groups,
                [
                    "system:bootstrappers",
                    "system:bootstrappers:ingress",
                    "system:bootstrappers:worker"
                ]
            );
            let expiry = parse_rfc3339(t["expiration"].as_str().unwrap()).unwrap();
            assert!(authenticate(&s, t["token"].as_str().unwrap(), expiry).is_none());
        }
    }
}
