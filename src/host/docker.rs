//! docker as the seed runs it: `--bridge=none --iptables=false --ip-masq=false`.
//!
//! The settings go into `/etc/docker/daemon.json`, which package upgrades keep, unless
//! docker's command line already gives them: docker refuses to start when a setting is
//! both a flag and in daemon.json. The command line is the unit's `ExecStart=` with
//! `$VARS` from its `EnvironmentFile=`s expanded (Debian's unit passes `$DOCKER_OPTS`
//! from `/etc/default/docker`; upstream's does not). Pure functions.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub const UNIT: &str = "docker.service";
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// The three settings, as daemon.json keys and values.
pub fn wanted() -> [(&'static str, Value); 3] {
    [
        ("bridge", Value::from("none")),
        ("iptables", Value::from(false)),
        ("ip-masq", Value::from(false)),
    ]
}

/// `KEY=value` lines of an environment file (quotes removed, comments skipped).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), unquoted.to_string())
        })
        .collect()
}

/// `ExecStart=` words with systemd's variable expansion: `$VAR` alone splits into words,
/// `${VAR}` stays one word; unknown variables are empty.
pub fn expand(argv: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for word in argv {
        if let Some(name) = word.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            out.extend(
                env.get(name)
                    .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        } else if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            if let Some(v) = env.get(name) {
                out.push(v.clone());
            }
        } else {
            out.push(word.clone());
        }
    }
    out
}

/// The three settings as dockerd's flags give them, as daemon.json values.
pub fn flag_settings(args: &[String]) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a, None),
        };
        match name {
            "--bridge" | "-b" => {
                let v = inline.or_else(|| {
                    i += 1;
                    args.get(i).cloned()
                });
                if let Some(v) = v {
                    out.insert("bridge", Value::from(v));
                }
            }
            "--exec-opt" => {
                let v = inline.or_else(|| {
                    i += 1;
                    args.get(i).cloned()
                });
                if let Some(v) = v {
                    let opts = out
                        .entry("exec-opts")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(a) = opts {
                        a.push(Value::from(v));
                    }
                }
            }
            "--iptables" | "--ip-masq" => {
                let v = inline.map(|v| v != "false").unwrap_or(true);
                let key = if name == "--iptables" {
                    "iptables"
                } else {
                    "ip-masq"
                };
                out.insert(key, Value::from(v));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// A setting docker's command line gives with another value than the seed's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "docker's command line sets {key} to {value}, not {wanted}; kubejoin cannot override a flag without a conflict"
)]
pub struct Conflict {
    pub key: &'static str,
    pub value: String,
    pub wanted: String,
}

const CGROUP_DRIVER_OPT: &str = "native.cgroupdriver=";

/// `exec-opts` with `native.cgroupdriver=<driver>` in place of any other driver, the
/// other options kept in order.
fn with_cgroup_driver(opts: Option<&Value>, driver: &str) -> Value {
    let mut out: Vec<Value> = opts
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|o| !o.as_str().is_some_and(|o| o.starts_with(CGROUP_DRIVER_OPT)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    out.push(Value::from(format!("{CGROUP_DRIVER_OPT}{driver}")));
    Value::Array(out)
}

/// The daemon.json that puts the three settings and kubelet's cgroup driver
/// (`exec-opts: ["native.cgroupdriver=..."]`) in effect, keeping every other setting, or
/// `None` when the current one already does.
pub fn plan_daemon_json(
    flags: &BTreeMap<&'static str, Value>,
    current: Option<&Map<String, Value>>,
    cgroup_driver: &str,
) -> Result<Option<Map<String, Value>>, Conflict> {
    let mut json = current.cloned().unwrap_or_default();
    match flags.get("exec-opts") {
        // docker refuses exec-opts both as flags and in daemon.json: the flags must say it.
        Some(opts) => {
            let wanted = format!("{CGROUP_DRIVER_OPT}{cgroup_driver}");
            if !opts
                .as_array()
                .is_some_and(|a| a.iter().any(|o| o.as_str() == Some(&wanted)))
            {
                return Err(Conflict {
                    key: "exec-opts",
                    value: opts.to_string(),
                    wanted: format!("[{wanted:?}] (kubelet's cgroup driver)"),
                });
            }
        }
        None => {
            let opts = with_cgroup_driver(json.get("exec-opts"), cgroup_driver);
            json.insert("exec-opts".into(), opts);
        }
    }
    for (key, value) in wanted() {
        match flags.get(key) {
            Some(v) if *v == value => {
                // Given as a flag already: it must not be in daemon.json too.
                json.remove(key);
            }
            Some(v) => {
                return Err(Conflict {
                    key,
                    value: v.to_string(),
                    wanted: value.to_string(),
                });
            }
            None => {
                json.insert(key.to_string(), value);
            }
        }
    }
    Ok((Some(&json) != current).then_some(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn debian_unit_with_docker_opts() {
        let argv = s(&["/usr/sbin/dockerd", "-H", "fd://", "$DOCKER_OPTS"]);
        let env = parse_env_file("# comment\nDOCKER_OPTS=\"--bridge=none --dns 8.8.8.8\"\n");
        let args = expand(&argv, &env);
        assert_eq!(
            args,
            s(&[
                "/usr/sbin/dockerd",
                "-H",
                "fd://",
                "--bridge=none",
                "--dns",
                "8.8.8.8"
            ])
        );
        let flags = flag_settings(&args);
        assert_eq!(flags.get("bridge"), Some(&Value::from("none")));
        let json = plan_daemon_json(&flags, None, "systemd").unwrap().unwrap();
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"exec-opts":["native.cgroupdriver=systemd"],"iptables":false,"ip-masq":false}"#
        );
    }

    #[test]
    fn keeps_other_settings_and_is_idempotent() {
        let current: Map<String, Value> =
            serde_json::from_str(r#"{"log-driver":"journald","bridge":"docker0"}"#).unwrap();
        let json = plan_daemon_json(&BTreeMap::new(), Some(&current), "systemd")
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"log-driver":"journald","bridge":"none","exec-opts":["native.cgroupdriver=systemd"],"iptables":false,"ip-masq":false}"#
        );
        assert_eq!(
            plan_daemon_json(&BTreeMap::new(), Some(&json), "systemd").unwrap(),
            None
        );
    }

    #[test]
    fn a_flag_with_another_value_is_a_conflict() {
        let flags = flag_settings(&s(&["dockerd", "--iptables"]));
        let e = plan_daemon_json(&flags, None, "systemd").unwrap_err();
        assert_eq!(e.key, "iptables");
        let flags = flag_settings(&s(&["dockerd", "-b", "br0"]));
        assert_eq!(
            plan_daemon_json(&flags, None, "systemd").unwrap_err().key,
            "bridge"
        );
    }

    #[test]
    fn a_flag_with_the_right_value_leaves_daemon_json_without_it() {
        let flags = flag_settings(&s(&["dockerd", "--iptables=false"]));
        let current: Map<String, Value> = serde_json::from_str(r#"{"iptables":false}"#).unwrap();
        let json = plan_daemon_json(&flags, Some(&current), "systemd")
            .unwrap()
            .unwrap();
        assert!(!json.contains_key("iptables"));
    }

    #[test]
    fn the_cgroup_driver_is_merged_into_exec_opts() {
        let current: Map<String, Value> = serde_json::from_str(
            r#"{"exec-opts":["native.cgroupdriver=cgroupfs","isolation=default"]}"#,
        )
        .unwrap();
        let json = plan_daemon_json(&BTreeMap::new(), Some(&current), "systemd")
            .unwrap()
            .unwrap();
        assert_eq!(
            json["exec-opts"],
            serde_json::json!(["isolation=default", "native.cgroupdriver=systemd"])
        );
        // Given on docker's command line: right, left there; wrong, a conflict.
        let flags = flag_settings(&s(&[
            "dockerd",
            "--exec-opt",
            "native.cgroupdriver=systemd",
        ]));
        let json = plan_daemon_json(&flags, None, "systemd").unwrap().unwrap();
        assert!(!json.contains_key("exec-opts"));
        let flags = flag_settings(&s(&["dockerd", "--exec-opt=native.cgroupdriver=cgroupfs"]));
        assert_eq!(
            plan_daemon_json(&flags, None, "systemd").unwrap_err().key,
            "exec-opts"
        );
    }

    #[test]
    fn braced_variables_stay_one_word() {
        let env = parse_env_file("A='x y'\n");
        assert_eq!(
            expand(&s(&["${A}", "$A", "$B"]), &env),
            s(&["x y", "x", "y"])
        );
    }
}
