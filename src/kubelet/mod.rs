//! kubelet as kubejoin meets it: its version and the node's cgroups ([`inspect`]), the
//! flags and settings they call for ([`profile`]), whether the node is in ([`ready`]) and
//! Ready ([`node_status`]),
//! and why kubelet exited ([`fatal`], from its journal).

pub mod cni;
pub mod config;
pub mod fatal;
pub mod files;
pub mod node_ip;
pub mod node_status;
pub mod profile;
pub mod ready;
pub mod reserve;
pub mod serving;
pub mod version;

use std::path::Path;

/// The host's cgroups are the unified hierarchy: `/sys/fs/cgroup` is a cgroup2 mount
/// (it then has `cgroup.controllers` at its root).
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// kubelet's journal messages of one invocation of its unit (`journalctl` is journald's
/// reader; kubejoin only reads). Empty when the journal has none.
pub fn journal(unit: &str, invocation: Option<&str>) -> Vec<String> {
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(["--no-pager", "-q", "-o", "cat", "-n", "300"]);
    match invocation {
        Some(id) => cmd.arg(format!("_SYSTEMD_INVOCATION_ID={id}")),
        None => cmd.args(["-u", unit]),
    };
    cmd.stdin(std::process::Stdio::null());
    match cmd.output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}
