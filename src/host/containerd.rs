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

/// A configuration's version, 1 where it names none (as containerd reads it).
fn config_version(doc: &DocumentMut) -> i64 {
    doc.get("version").and_then(Item::as_integer).unwrap_or(1)
}

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

/// Where the sandbox image is set: the table and the key (containerd 2.x pins it in its
/// images plugin; 1.x has one CRI plugin).
fn sandbox_path(version: i64) -> (&'static [&'static str], &'static str) {
    if version >= 3 {
        (&["io.containerd.cri.v1.images", "pinned_images"], "sandbox")
    } else {
        (&["io.containerd.grpc.v1.cri"], "sandbox_image")
    }
}

/// The table of the registry settings (`config_path`, and 1.x's deprecated `mirrors`).
fn registry_path(version: i64) -> &'static [&'static str] {
    if version >= 3 {
        &["io.containerd.cri.v1.images", "registry"]
    } else {
        &["io.containerd.grpc.v1.cri", "registry"]
    }
}

/// containerd 2.x's default `config_path`; 1.x has none.
const V3_DEFAULT_CONFIG_PATH: &str = "/etc/containerd/certs.d:/etc/docker/certs.d";

/// What kubejoin wants of containerd's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants<'a> {
    /// runc's cgroup driver is systemd's (kubelet's is).
    pub systemd_cgroup: bool,
    /// `[host] sandbox_image`.
    pub sandbox_image: Option<&'a str>,
    /// `[registries]` are set: the CRI plugin reads hosts.toml files (`config_path`).
    pub registries: bool,
}

impl Wants<'_> {
    pub fn cgroup(systemd_cgroup: bool) -> Wants<'static> {
        Wants {
            systemd_cgroup,
            sandbox_image: None,
            registries: false,
        }
    }
}

/// The config with CRI enabled, runc a working runtime (`runtime_type`) with
/// `SystemdCgroup` set as kubelet's cgroup driver needs, and the sandbox image and the
/// registries' directory where they are wanted, or `None` when it already is so. A
/// missing file starts as `version = 2`.
pub fn plan_config(current: Option<&str>, wants: &Wants) -> Result<Option<String>, String> {
    let text = current.unwrap_or("version = 2\n");
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let version = config_version(&doc);
    if version < 2 {
        return Err(format!(
            "config version {version} is too old to edit; regenerate it with `containerd config default`"
        ));
    }
    let (plugin, path) = cri_paths(version);

    // CRI must not be disabled (docker's containerd packages disable it).
    if let Some(disabled) = doc.get_mut("disabled_plugins").and_then(Item::as_array_mut) {
        let before = disabled.len();
        disabled.retain(|v| {
            v.as_str()
                .is_none_or(|p| p != "cri" && p != plugin && p != "io.containerd.cri.v1.images")
        });
        if disabled.len() != before {
            // The line changed anyway; keep the remaining list tidy.
            disabled.fmt();
        }
    }

    // Tables are created in order, so that each new header goes after the last.
    // New headers go at the end, in the order they are made.
    let mut next = 1 << 30;
    let (runc_options, indent) = table_at(&mut doc, &mut next, path, 2, |depth, t| {
        if depth == 1 && t.get("runtime_type").is_none() {
            // Without it, containerd drops its default runc runtime once this table
            // exists, and every sandbox fails with "container.Runtime.Name must be set".
            t.insert("runtime_type", value(RUNC_V2));
        }
    })?;
    set(
        runc_options,
        "SystemdCgroup",
        value(wants.systemd_cgroup),
        &indent,
    );

    if let Some(image) = wants.sandbox_image {
        let (table, key) = sandbox_path(version);
        let (table, indent) = table_at(&mut doc, &mut next, table, 1, |_, _| {})?;
        set(table, key, value(image), &indent);
    }
    if wants.registries {
        let registry = registry_path(version)
            .iter()
            .try_fold(doc.get("plugins"), |item, key| Some(item?.get(key)))
            .flatten();
        if registry
            .and_then(|r| r.get("mirrors"))
            .and_then(Item::as_table_like)
            .is_some_and(|m| !m.is_empty())
        {
            return Err(format!(
                "[plugins.\"{plugin}\".registry.mirrors] is set, and containerd reads hosts.toml \
                 files (which [registries] are written as) only without it: move those mirrors \
                 to [registries] in kubejoin's configuration and remove them here"
            ));
        }
        let unset = match registry
            .and_then(|r| r.get("config_path"))
            .and_then(Item::as_str)
        {
            None => version < 3,
            Some(p) => p.trim().is_empty(),
        };
        if unset {
            let (table, indent) =
                table_at(&mut doc, &mut next, registry_path(version), 1, |_, _| {})?;
            set(
                table,
                "config_path",
                value(super::registry::CERTS_DIR),
                &indent,
            );
        }
    }
    let out = doc.to_string();
    Ok((out != text || current.is_none()).then_some(out))
}

/// The directory the CRI plugin reads registries' hosts.toml from: the first of its
/// `config_path`, or `None` when it reads none.
pub fn certs_dir(text: &str) -> Option<String> {
    let doc: DocumentMut = text.parse().ok()?;
    let version = config_version(&doc);
    let mut item = doc.get("plugins");
    for key in registry_path(version) {
        item = item.and_then(|i| i.get(key));
    }
    let path = match item
        .and_then(|i| i.get("config_path"))
        .and_then(Item::as_str)
    {
        Some(p) => p,
        None if version >= 3 => V3_DEFAULT_CONFIG_PATH,
        None => return None,
    };
    path.split(':')
        .map(str::trim)
        .find(|p| !p.is_empty())
        .map(str::to_string)
}

/// The table at `plugins.<path>`, made where missing: new tables get headers at the end
/// of the file, in the order they are made (`next`), so that the existing text is not
/// split; all but the last `headers` tables on the way stay implicit (an implicit table
/// shows its header once it has a key).
/// `each(depth, table)` sees every table on the way (depth 0 is the last). Also returns
/// the indentation of the last table's keys (that of its first key, or its header's and
/// two spaces), for a key added to it.
fn table_at<'d>(
    doc: &'d mut DocumentMut,
    next: &mut isize,
    path: &[&str],
    headers: usize,
    mut each: impl FnMut(usize, &mut dyn toml_edit::TableLike),
) -> Result<(&'d mut dyn toml_edit::TableLike, String), String> {
    let mut table = doc
        .entry("plugins")
        .or_insert_with(|| Item::Table(implicit_table()))
        .as_table_like_mut()
        .ok_or("plugins is not a table")?;
    let mut indent = String::new();
    for (i, key) in path.iter().enumerate() {
        let depth = path.len() - 1 - i;
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(depth >= headers);
            if depth < headers {
                t.set_position(Some(*next));
                *next += 1;
            }
            Item::Table(t)
        });
        if let (0, Some(t)) = (depth, item.as_table_mut()) {
            indent = key_indent(t);
        }
        table = item
            .as_table_like_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
        each(depth, table);
    }
    Ok((table, indent))
}

/// The indentation of a table's keys: its first key's, else its header's and two spaces
/// (none for a table without text of its own yet).
fn key_indent(t: &Table) -> String {
    let line_start = |prefix: Option<&toml_edit::RawString>| {
        prefix
            .and_then(|p| p.as_str())
            .map(|p| p.rsplit('\n').next().unwrap_or_default().to_string())
            .filter(|p| p.chars().all(|c| c == ' ' || c == '\t'))
    };
    let first_value = t.iter().find(|(_, v)| v.is_value()).map(|(k, _)| k);
    if let Some((key, _)) = first_value.and_then(|k| t.get_key_value(k)) {
        return line_start(key.leaf_decor().prefix()).unwrap_or_default();
    }
    match line_start(t.decor().prefix()) {
        Some(header) if !header.is_empty() => format!("{header}  "),
        _ => String::new(),
    }
}

/// Sets `key`, keeping the comments and indentation of a value that is replaced; a new
/// key is indented by `indent`.
fn set(table: &mut dyn toml_edit::TableLike, key: &str, new: Item, indent: &str) {
    match table.get_mut(key) {
        Some(item)
            if item.type_name() == new.type_name()
                && item.as_bool() == new.as_bool()
                && item.as_str() == new.as_str() => {}
        Some(item) => {
            let decor = item.as_value().map(|v| v.decor().clone());
            *item = new;
            if let (Some(decor), Some(v)) = (decor, item.as_value_mut()) {
                *v.decor_mut() = decor;
            }
        }
        None => {
            table.insert(key, new);
            if !indent.is_empty()
                && let Some(mut k) = table.key_mut(key)
            {
                k.leaf_decor_mut().set_prefix(indent);
            }
        }
    }
}

/// Where the CRI plugin looks for CNI plugins and their configuration, as a configuration
/// sets them; `None` for what it leaves to containerd's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniDirs {
    /// The bin dirs and the key that set them: `bin_dirs` (2.1's list, config version 3
    /// only) or `bin_dir`.
    pub bin: Option<(Vec<String>, &'static str)>,
    pub conf: Option<String>,
}

/// The CNI directories `text` sets (version 1's `plugins.cri`, version 2's
/// `plugins."io.containerd.grpc.v1.cri"`, version 3's `plugins."io.containerd.cri.v1.runtime"`);
/// `None` when it is not TOML.
pub fn cni_dirs(text: &str) -> Option<CniDirs> {
    let doc: DocumentMut = text.parse().ok()?;
    let version = config_version(&doc);
    let plugin = if version < 2 {
        "cri"
    } else {
        cri_paths(version).0
    };
    let cni = doc
        .get("plugins")
        .and_then(|p| p.get(plugin))
        .and_then(|p| p.get("cni"));
    let string = |key: &str| {
        cni.and_then(|c| c.get(key))
            .and_then(Item::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let list = cni
        .and_then(|c| c.get("bin_dirs"))
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty() && version >= 3);
    Some(CniDirs {
        bin: match list {
            Some(d) => Some((d, "bin_dirs")),
            None => string("bin_dir").map(|d| (vec![d], "bin_dir")),
        },
        conf: string("conf_dir"),
    })
}

/// runc's cgroup driver as containerd's configuration sets it: `Some(true)` for systemd's,
/// `Some(false)` for cgroupfs (also when the file or the key is absent: containerd's
/// default), `None` when the file is not TOML kubejoin can read.
pub fn systemd_cgroup(current: Option<&str>) -> Option<bool> {
    let Some(text) = current else {
        return Some(false);
    };
    let doc: DocumentMut = text.parse().ok()?;
    let version = config_version(&doc);
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
        let out = plan_config(Some(DEBIAN), &Wants::cgroup(true))
            .unwrap()
            .unwrap();
        assert!(out.starts_with(DEBIAN), "{out}");
        assert_eq!(
            &out[DEBIAN.len()..],
            "\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n"
        );
        assert_eq!(
            plan_config(Some(&out), &Wants::cgroup(true)).unwrap(),
            None,
            "idempotent"
        );
    }

    #[test]
    fn comments_and_other_settings_stay_byte_for_byte() {
        let text = "# ops: tuned for our nodes\nversion = 2\nroot = \"/data/containerd\"   # big disk\ndisabled_plugins = [\"cri\", \"io.containerd.snapshotter.v1.btrfs\"]\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  # keep this\n  SystemdCgroup = false\n  BinaryName = \"/usr/local/bin/runc\"\n";
        let out = plan_config(Some(text), &Wants::cgroup(true))
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            "# ops: tuned for our nodes\nversion = 2\nroot = \"/data/containerd\"   # big disk\ndisabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\"]\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  # keep this\n  SystemdCgroup = true\n  BinaryName = \"/usr/local/bin/runc\"\n"
        );
        // A runc table that names its runtime type keeps it.
        let own = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n";
        assert_eq!(plan_config(Some(own), &Wants::cgroup(true)).unwrap(), None);
    }

    #[test]
    fn the_cgroup_driver_containerd_runs_with() {
        assert_eq!(systemd_cgroup(None), Some(false));
        assert_eq!(systemd_cgroup(Some(DEBIAN)), Some(false));
        let aligned = plan_config(Some(DEBIAN), &Wants::cgroup(true))
            .unwrap()
            .unwrap();
        assert_eq!(systemd_cgroup(Some(&aligned)), Some(true));
        let v3 = plan_config(Some("version = 3\n"), &Wants::cgroup(true))
            .unwrap()
            .unwrap();
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
        let out = plan_config(None, &Wants::cgroup(true)).unwrap().unwrap();
        assert_eq!(
            out,
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n"
        );
        let v3 = plan_config(Some("version = 3\n"), &Wants::cgroup(false))
            .unwrap()
            .unwrap();
        assert!(v3.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]\nSystemdCgroup = false\n"), "{v3}");
        assert!(plan_config(Some("version = 1\n"), &Wants::cgroup(true)).is_err());
        assert!(plan_config(Some("version = \n"), &Wants::cgroup(true)).is_err());
    }
}

#[cfg(test)]
mod images_and_registries {
    use super::*;

    fn wants(image: &str) -> Wants<'_> {
        Wants {
            systemd_cgroup: true,
            sandbox_image: Some(image),
            registries: true,
        }
    }

    const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n";

    #[test]
    fn containerd_1_gets_the_sandbox_image_and_reads_hosts_toml() {
        let out = plan_config(Some(DEBIAN), &wants("corp/pause:1"))
            .unwrap()
            .unwrap();
        // The key goes into the existing table, indented as its header.
        assert!(
            out.starts_with("version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"corp/pause:1\"\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n"),
            "{out}"
        );
        assert!(
            out.ends_with("[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n"),
            "{out}"
        );
        assert_eq!(certs_dir(&out).as_deref(), Some("/etc/containerd/certs.d"));
        assert_eq!(
            plan_config(Some(&out), &wants("corp/pause:1")).unwrap(),
            None
        );
        // Another image replaces the value in place.
        let other = plan_config(Some(&out), &wants("corp/pause:2"))
            .unwrap()
            .unwrap();
        assert_eq!(other, out.replace("corp/pause:1", "corp/pause:2"));
        // Without registries nothing about them is written.
        let plain = plan_config(Some(DEBIAN), &Wants::cgroup(true))
            .unwrap()
            .unwrap();
        assert!(
            !plain.contains("registry") && !plain.contains("sandbox"),
            "{plain}"
        );
        assert_eq!(certs_dir(&plain), None);
        // A config_path of the user's own is kept.
        let own = format!(
            "{DEBIAN}  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = \"/etc/containerd/registries:/etc/docker/certs.d\"\n"
        );
        let out = plan_config(Some(&own), &wants("corp/pause:1"))
            .unwrap()
            .unwrap();
        assert!(!out.contains("/etc/containerd/certs.d"), "{out}");
        assert_eq!(
            certs_dir(&out).as_deref(),
            Some("/etc/containerd/registries")
        );
    }

    #[test]
    fn containerd_1_mirrors_of_the_old_kind_are_refused() {
        let old = format!(
            "{DEBIAN}[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror\"]\n"
        );
        let e = plan_config(Some(&old), &wants("corp/pause:1")).unwrap_err();
        assert!(e.contains("registry.mirrors] is set"), "{e}");
        assert!(plan_config(Some(&old), &Wants::cgroup(true)).is_ok());
    }

    #[test]
    fn containerd_2_pins_the_sandbox_image_in_its_images_plugin() {
        let out = plan_config(Some("version = 3\n"), &wants("corp/pause:1"))
            .unwrap()
            .unwrap();
        assert!(
            out.ends_with("\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"corp/pause:1\"\n"),
            "{out}"
        );
        // 2.x reads /etc/containerd/certs.d by default.
        assert!(!out.contains("config_path"), "{out}");
        assert_eq!(certs_dir(&out).as_deref(), Some("/etc/containerd/certs.d"));
        // `containerd config default` of 2.x: an empty config_path and its own pause.
        let default = "version = 3\n[plugins]\n  [plugins.'io.containerd.cri.v1.images']\n    snapshotter = 'overlayfs'\n\n    [plugins.'io.containerd.cri.v1.images'.pinned_images]\n      sandbox = 'registry.k8s.io/pause:3.10'\n\n    [plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = ''\n";
        let out = plan_config(Some(default), &wants("corp/pause:1"))
            .unwrap()
            .unwrap();
        assert!(
            out.starts_with("version = 3\n[plugins]\n  [plugins.'io.containerd.cri.v1.images']\n    snapshotter = 'overlayfs'\n\n    [plugins.'io.containerd.cri.v1.images'.pinned_images]\n      sandbox = \"corp/pause:1\"\n\n    [plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = \"/etc/containerd/certs.d\"\n"),
            "{out}"
        );
        assert_eq!(
            plan_config(Some(&out), &wants("corp/pause:1")).unwrap(),
            None
        );
    }
}
