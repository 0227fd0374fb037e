//! containerd, which kubelet talks to: its CRI plugin enabled and runc's cgroup driver
//! matching kubelet's (`SystemdCgroup = true` for `cgroupDriver: systemd`, the mismatch
//! behind many "kubelet never comes up" reports). `/etc/containerd/config.toml` is edited
//! in place with a format-preserving TOML editor: every other byte, comments included,
//! stays as it was. Pure functions.

use toml_edit::{DocumentMut, Item, Table, value};

pub const UNIT: &str = "containerd.service";
pub const CONFIG: &str = "/etc/containerd/config.toml";
/// Its CRI socket, kubelet's default runtime endpoint.
pub const SOCKET: &str = "unix:///run/containerd/containerd.sock";
/// [`SOCKET`] as a path.
pub fn socket_path() -> &'static str {
    SOCKET.trim_start_matches("unix://")
}

/// runc's shim, containerd's default runtime type.
pub const RUNC_V2: &str = "io.containerd.runc.v2";

/// The CRI plugin's id in config version 2 (containerd 1.x) and 3 (containerd 2.x), and
/// where runc's options live under it.
fn cri_paths(version: i64) -> (&'static str, &'static [&'static str]) {
    if version >= 3 {
        (
            "io.containerd.cri.v1.runtime",
            &[
                "io.containerd.cri.v1.runtime",
                "containerd",
                "runtimes",
                "runc",
                "options",
            ],
        )
    } else {
        (
            "io.containerd.grpc.v1.cri",
            &[
                "io.containerd.grpc.v1.cri",
                "containerd",
                "runtimes",
                "runc",
                "options",
            ],
        )
    }
}

/// The config with CRI enabled, runc a working runtime (`runtime_type`) and `SystemdCgroup`
/// set as kubelet's cgroup driver needs, or `None` when it already is. A missing file starts as `version = 2`.
pub fn plan_config(current: Option<&str>, systemd_cgroup: bool) -> Result<Option<String>, String> {
    let text = current.unwrap_or("version = 2\n");
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let version = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
    if version < 2 {
        return Err(format!(
            "config version {version} is too old to edit; regenerate it with `containerd config default`"
        ));
    }
    let (plugin, path) = cri_paths(version);

    // CRI must not be disabled (docker's containerd packages disable it).
    if let Some(disabled) = doc.get_mut("disabled_plugins").and_then(Item::as_array_mut) {
        let before = disabled.len();
        disabled.retain(|v| v.as_str().is_none_or(|p| p != "cri" && p != plugin));
        if disabled.len() != before {
            // The line changed anyway; keep the remaining list tidy.
            disabled.fmt();
        }
    }

    let plugins = doc
        .entry("plugins")
        .or_insert_with(|| Item::Table(implicit_table()))
        .as_table_like_mut()
        .ok_or("plugins is not a table")?;
    // New tables get headers at the end of the file, in order (runc, then its options),
    // so that the existing text is not split; the tables above them stay implicit.
    let mut table = plugins;
    for (i, key) in path.iter().enumerate() {
        let depth = path.len() - 1 - i; // 0: options, 1: runc
        table = table
            .entry(key)
            .or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(depth > 1);
                if depth <= 1 {
                    t.set_position(Some((1 << 30) - depth as isize));
                }
                Item::Table(t)
            })
            .as_table_like_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
        if depth == 1 && table.get("runtime_type").is_none() {
            // Without it, containerd drops its default runc runtime once this table
            // exists, and every sandbox fails with "container.Runtime.Name must be set".
            table.insert("runtime_type", value(RUNC_V2));
        }
    }
    match table.get_mut("SystemdCgroup") {
        Some(item) if item.as_bool() == Some(systemd_cgroup) => {}
        Some(item) => {
            // Replace the value only: the key's comments and indentation stay.
            let decor = item.as_value().map(|v| v.decor().clone());
            *item = value(systemd_cgroup);
            if let (Some(decor), Some(v)) = (decor, item.as_value_mut()) {
                *v.decor_mut() = decor;
            }
        }
        None => {
            table.insert("SystemdCgroup", value(systemd_cgroup));
        }
    }
    let out = doc.to_string();
    Ok((out != text || current.is_none()).then_some(out))
}

/// runc's cgroup driver as containerd's configuration sets it: `Some(true)` for systemd's,
/// `Some(false)` for cgroupfs (also when the file or the key is absent: containerd's
/// default), `None` when the file is not TOML kubejoin can read.
pub fn systemd_cgroup(current: Option<&str>) -> Option<bool> {
    let Some(text) = current else {
        return Some(false);
    };
    let doc: DocumentMut = text.parse().ok()?;
    let version = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
    let (_, path) = cri_paths(version.max(2));
    let mut item = doc.get("plugins");
    for key in path {
        item = item.and_then(|i| i.get(key));
    }
    Some(
        item.and_then(|i| i.get("SystemdCgroup"))
            .and_then(Item::as_bool)
            .unwrap_or(false),
    )
}

/// With `[host] container_runtime = "none"` kubejoin leaves containerd alone: a join must
/// not go on when its runc and kubelet would use different cgroup drivers (pods would
/// restart in a loop, sometimes only after a reboot). `Err` says why and what to do.
pub fn drivers_agree(current: Option<&str>, systemd_cgroup_wanted: bool) -> Result<(), String> {
    let name = |systemd: bool| if systemd { "systemd" } else { "cgroupfs" };
    match systemd_cgroup(current) {
        Some(have) if have != systemd_cgroup_wanted => Err(format!(
            "kubelet would use cgroup driver {}, but containerd's runc uses {} (SystemdCgroup = {have} in {CONFIG}{}): pods would restart in a loop",
            name(systemd_cgroup_wanted),
            name(have),
            if current.is_none() {
                ", absent: containerd's default"
            } else {
                ""
            },
        )),
        _ => Ok(()),
    }
}

fn implicit_table() -> Table {
    let mut t = Table::new();
    t.set_implicit(true);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

    #[test]
    fn debians_config_gains_systemd_cgroup_and_keeps_the_rest() {
        let out = plan_config(Some(DEBIAN), true).unwrap().unwrap();
        assert!(out.starts_with(DEBIAN), "{out}");
        assert_eq!(
            &out[DEBIAN.len()..],
            "\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n"
        );
        assert_eq!(plan_config(Some(&out), true).unwrap(), None, "idempotent");
    }

    #[test]
    fn comments_and_other_settings_stay_byte_for_byte() {
        let text = "# ops: tuned for our nodes\nversion = 2\nroot = \"/data/containerd\"   # big disk\ndisabled_plugins = [\"cri\", \"io.containerd.snapshotter.v1.btrfs\"]\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  # keep this\n  SystemdCgroup = false\n  BinaryName = \"/usr/local/bin/runc\"\n";
        let out = plan_config(Some(text), true).unwrap().unwrap();
        assert_eq!(
            out,
            "# ops: tuned for our nodes\nversion = 2\nroot = \"/data/containerd\"   # big disk\ndisabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\"]\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  # keep this\n  SystemdCgroup = true\n  BinaryName = \"/usr/local/bin/runc\"\n"
        );
        // A runc table that names its runtime type keeps it.
        let own = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n";
        assert_eq!(plan_config(Some(own), true).unwrap(), None);
    }

    #[test]
    fn the_cgroup_driver_containerd_runs_with() {
        assert_eq!(systemd_cgroup(None), Some(false));
        assert_eq!(systemd_cgroup(Some(DEBIAN)), Some(false));
        let aligned = plan_config(Some(DEBIAN), true).unwrap().unwrap();
        assert_eq!(systemd_cgroup(Some(&aligned)), Some(true));
        let v3 = plan_config(Some("version = 3\n"), true).unwrap().unwrap();
        assert_eq!(systemd_cgroup(Some(&v3)), Some(true));
        assert_eq!(systemd_cgroup(Some("version = [")), None);
        let e = drivers_agree(Some(DEBIAN), true).unwrap_err();
        assert!(
            e.contains(
                "kubelet would use cgroup driver systemd, but containerd's runc uses cgroupfs"
            ),
            "{e}"
        );
        assert!(
            drivers_agree(None, true)
                .unwrap_err()
                .contains("absent: containerd's default")
        );
        assert!(drivers_agree(Some(&aligned), true).is_ok());
        assert!(drivers_agree(Some(DEBIAN), false).is_ok());
        assert!(
            drivers_agree(Some("version = ["), true).is_ok(),
            "unreadable: not judged here"
        );
    }

    #[test]
    fn no_file_and_version_3() {
        let out = plan_config(None, true).unwrap().unwrap();
        assert_eq!(
            out,
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n"
        );
        let v3 = plan_config(Some("version = 3\n"), false).unwrap().unwrap();
        assert!(v3.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]\nSystemdCgroup = false\n"), "{v3}");
        assert!(plan_config(Some("version = 1\n"), true).is_err());
        assert!(plan_config(Some("version = \n"), true).is_err());
    }
}
