//! Where the container runtime looks for CNI plugins and their configuration (pure). A
//! network plugin's DaemonSet writes a configuration into the conf dir, but every pod also
//! needs the `loopback` plugin in the runtime's bin dir, and the plugins the configuration
//! names: with them elsewhere pods stay ContainerCreating (`failed to find plugin
//! "loopback" in path [/opt/cni/bin]`). Debian's `containernetworking-plugins` installs to
//! `/usr/lib/cni`, where containerd only looks when its configuration says so; containerd
//! 2.x moved the key to its `io.containerd.cri.v1.runtime` plugin (`bin_dirs` from 2.1).

use std::path::PathBuf;

/// containerd's, cri-dockerd's and the dockershim's default bin dir.
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// Where Debian's `containernetworking-plugins` puts them.
pub const DEBIAN_BIN_DIR: &str = "/usr/lib/cni";
/// The plugin every pod needs, whatever its network: the runtime sets up each sandbox's
/// `lo` with it.
pub const LOOPBACK: &str = "loopback";

/// Where a runtime looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Who looks: `containerd`, `cri-dockerd`, `the dockershim`.
    pub runtime: &'static str,
    /// The bin dirs, in the runtime's order.
    pub bin: Vec<PathBuf>,
    pub conf: PathBuf,
    /// Where the bin dirs are set (`bin_dir in /etc/containerd/config.toml`), or that they
    /// are the runtime's default.
    pub source: String,
}

/// containerd's dirs from its configuration's text (`None`: no file), as
/// [`crate::host::containerd::cni_dirs`] reads it, with containerd's defaults for what it
/// leaves out.
pub fn containerd(config_path: &str, config: Option<&str>) -> Dirs {
    let conf_default = || crate::kubelet::node_status::CNI_CONF_DIR.into();
    let (bin, conf, source) = match config.map(crate::host::containerd::cni_dirs) {
        None => (
            None,
            conf_default(),
            format!("containerd's default: no {config_path}"),
        ),
        Some(None) => (
            None,
            conf_default(),
            format!("containerd's default: {config_path} does not parse"),
        ),
        Some(Some(set)) => {
            let source = match &set.bin {
                Some((_, key)) => format!("{key} in {config_path}"),
                None => format!("containerd's default: {config_path} sets no bin_dir"),
            };
            (
                set.bin.map(|(dirs, _)| dirs),
                set.conf.map(PathBuf::from).unwrap_or_else(conf_default),
                source,
            )
        }
    };
    Dirs {
        runtime: "containerd",
        bin: bin.map_or_else(
            || vec![DEFAULT_BIN_DIR.into()],
            |d| d.into_iter().map(PathBuf::from).collect(),
        ),
        conf,
        source,
    }
}

/// cri-dockerd's and the dockershim's: their defaults (`--cni-bin-dir`, which kubejoin
/// does not set).
pub fn docker(cri_dockerd: bool) -> Dirs {
    Dirs {
        runtime: if cri_dockerd {
            "cri-dockerd"
        } else {
            "the dockershim"
        },
        bin: vec![DEFAULT_BIN_DIR.into()],
        conf: crate::kubelet::node_status::CNI_CONF_DIR.into(),
        source: "its default".into(),
    }
}

/// What preflight found in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub dirs: Dirs,
    /// `loopback` is in one of the bin dirs.
    pub loopback: bool,
    /// `loopback` is in Debian's directory (where the runtime may not look).
    pub debian_plugins: bool,
    pub conf_exists: bool,
}

/// Reads the bin dirs and the conf dir.
pub fn inspect(dirs: Dirs) -> Found {
    let executable = |p: PathBuf| crate::fsutil::executable(&p) == Some(true);
    Found {
        loopback: dirs.bin.iter().any(|d| executable(d.join(LOOPBACK))),
        debian_plugins: executable(PathBuf::from(DEBIAN_BIN_DIR).join(LOOPBACK)),
        conf_exists: dirs.conf.is_dir(),
        dirs,
    }
}

/// Each bin dir, joined for a sentence.
pub fn bin_list(dirs: &Dirs) -> String {
    dirs.bin
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "/etc/containerd/config.toml";

    #[test]
    fn where_each_containerd_looks() {
        // Debian 12's containerd 1.6 package: its own config points at Debian's plugins.
        let debian = containerd(
            CONFIG,
            Some(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"/etc/cni/net.d\"\n",
            ),
        );
        assert_eq!(debian.bin, vec![PathBuf::from("/usr/lib/cni")]);
        assert_eq!(debian.source, "bin_dir in /etc/containerd/config.toml");
        // `containerd config default > config.toml` of 1.6: the default spelled out.
        let v2 = containerd(
            CONFIG,
            Some(
                "version = 2\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"x\"\n",
            ),
        );
        assert_eq!(v2.bin, vec![PathBuf::from(DEFAULT_BIN_DIR)]);
        assert!(v2.source.contains("sets no bin_dir"), "{}", v2.source);
        // containerd 2.1's list, and 2.0's single key in the new plugin.
        let v3 = containerd(
            CONFIG,
            Some(
                "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.cni]\n  bin_dirs = ['/opt/cni/bin', '/usr/lib/cni']\n  conf_dir = '/etc/cni/other'\n",
            ),
        );
        assert_eq!(
            v3.bin,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(v3.conf, PathBuf::from("/etc/cni/other"));
        assert_eq!(bin_list(&v3), "/opt/cni/bin, /usr/lib/cni");
        let v3_0 = containerd(
            CONFIG,
            Some(
                "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.cni]\n  bin_dir = '/usr/lib/cni'\n",
            ),
        );
        assert_eq!(v3_0.bin, vec![PathBuf::from("/usr/lib/cni")]);
        // 2.x's key in a version 2 file is not read by 1.x, and the reverse.
        let moved = containerd(
            CONFIG,
            Some(
                "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n",
            ),
        );
        assert_eq!(moved.bin, vec![PathBuf::from(DEFAULT_BIN_DIR)]);
        // Version 1 (no version key): plugins.cri.
        let v1 = containerd(
            CONFIG,
            Some("[plugins.cri.cni]\n  bin_dir = \"/usr/lib/cni\"\n"),
        );
        assert_eq!(v1.bin, vec![PathBuf::from("/usr/lib/cni")]);
        // No file, or one that does not parse: the defaults, and why.
        let none = containerd(CONFIG, None);
        assert_eq!(none.bin, vec![PathBuf::from(DEFAULT_BIN_DIR)]);
        assert_eq!(none.conf, PathBuf::from("/etc/cni/net.d"));
        assert!(none.source.contains("no /etc/containerd/config.toml"));
        assert!(
            containerd(CONFIG, Some("[[["))
                .source
                .contains("does not parse")
        );
        assert_eq!(docker(true).runtime, "cri-dockerd");
        assert_eq!(docker(false).bin, vec![PathBuf::from(DEFAULT_BIN_DIR)]);
    }
}
