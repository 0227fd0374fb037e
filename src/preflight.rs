//! Preflight: what must hold on this host before a join, each check with a severity and
//! the fix. [`inspect`] reads the host; [`evaluate`] is pure, so every failure is tested
//! without a host. `kubejoin preflight` prints them; `kubejoin run` stops on errors.

use std::path::PathBuf;

use crate::config::KubeletSettings;
use crate::config::kubelet::valid_node_name;
use crate::failure::Failure;
use crate::kubelet::files::{CERT_DIR, KUBELET_KUBECONFIG};
use crate::kubelet::profile::{CRI_DOCKERD_SOCKET, Cri, Profile};
use crate::kubelet::version::Version;

mod check;
mod pod_network;

use check::check;
pub use check::{Check, Severity};

/// What preflight looks at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub euid: u32,
    /// `/proc/1/comm`.
    pub pid1: String,
    /// Whether systemd answered on the system bus, or why not.
    pub bus: Result<(), String>,
    pub kubelet_active: bool,
    /// The kubelet binary: `None` missing, `Some(false)` not executable.
    pub kubelet_binary: Option<bool>,
    /// The runtime's socket path and whether it accepted a connection.
    pub runtime_socket: Option<(PathBuf, bool)>,
    /// Active swaps (`/proc/swaps` file names).
    pub swaps: Vec<String>,
    /// Host preparation turns swap off (`[host] swap`): active swap is then no error,
    /// except zram swap unless `[host] swap_zram` (it belongs to its generator).
    pub swap_managed: bool,
    pub zram_managed: bool,
    /// Tools kubelet and kube-proxy need, and whether each is on PATH.
    pub tools: Vec<(&'static str, bool)>,
    pub port_10250_free: bool,
    pub hostname: String,
    /// kubelet already has a client certificate.
    pub joined: bool,
    /// `kubelet --version`, or why it could not be read.
    pub kubelet_version: Result<Version, String>,
    pub cgroup_v2: bool,
    /// kubelet needs cri-dockerd (docker, kubelet >= 1.24): whether its socket exists.
    pub cri_dockerd: Option<bool>,
    /// Forwarding, bridge netfilter and the CNI plugins.
    pub pod_network: pod_network::Facts,
}

/// The checks, in order. `ignore` names checks whose errors become warnings (`all`: every one).
pub fn evaluate(f: &Facts, kubelet: &KubeletSettings, ignore: &[String]) -> Vec<Check> {
    let mut checks = system_checks(f).to_vec();
    kubelet_checks(f, kubelet, &mut checks);
    runtime_check(f, kubelet, &mut checks);
    swap_check(f, &mut checks);
    node_checks(f, &mut checks);
    pod_network::checks(&f.pod_network, &mut checks);
    downgrade_ignored(&mut checks, ignore);
    checks
}

/// kubejoin's own needs: root, and systemd over D-Bus.
fn system_checks(f: &Facts) -> [Check; 2] {
    use Severity::*;
    [
        check(
            "Root",
            f.euid == 0,
            Error,
            format!("running as uid {}", f.euid),
            Some("run kubejoin as root (it writes under /etc and /var/lib and manages units)".into()),
        ),
        check(
            "Systemd",
            f.pid1 == "systemd" && f.bus.is_ok(),
            Error,
            match &f.bus {
                Ok(()) => format!("PID 1 is {:?}", f.pid1),
                Err(e) => format!("PID 1 is {:?}; the system bus: {e}", f.pid1),
            },
            Some("kubejoin starts kubelet through systemd over D-Bus: boot with systemd and start dbus.service".into()),
        ),
    ]
}

/// kubelet: its binary, its version, and what that version needs of this node.
fn kubelet_checks(f: &Facts, kubelet: &KubeletSettings, checks: &mut Vec<Check>) {
    use Severity::*;
    let name = kubelet.node_name(&f.hostname);
    let named = if kubelet.node_name.is_some() {
        format!("node name {name:?} ([kubelet] node_name)")
    } else {
        format!("hostname {:?}", f.hostname)
    };
    checks.push(check(
        "Hostname",
        valid_node_name(&name),
        Error,
        format!("{named} {} a valid node name", if valid_node_name(&name) { "is" } else { "is not" }),
        Some("the node registers under its hostname, which must be lower-case letters, digits, '-' and '.' (DNS-1123): set it with hostnamectl or cloud-init's hostname, or set [kubelet] node_name".into()),
    ));
    checks.push(
        check(
            "KubeletBinary",
            f.kubelet_binary == Some(true),
            Error,
            match f.kubelet_binary {
                None => format!("{} does not exist", kubelet.binary.display()),
                Some(false) => format!("{} is not executable", kubelet.binary.display()),
                Some(true) => format!("{} is executable", kubelet.binary.display()),
            },
            Some("install kubelet there (kubejoin's default is /usr/local/bin/kubelet), or set [kubelet] binary".into()),
        )
    );
    if f.kubelet_binary == Some(true) {
        checks.push(check(
            "KubeletVersion",
            f.kubelet_version.is_ok(),
            Error,
            match &f.kubelet_version {
                Ok(v) => format!("kubelet {v}"),
                Err(e) => e.clone(),
            },
            Some(format!(
                "kubejoin renders kubelet's flags for its version: make `{} --version` work \
                 (the right binary for this architecture, all its libraries)",
                kubelet.binary.display()
            )),
        ));
    }
    if let Some(present) = f.cri_dockerd {
        let version = f
            .kubelet_version
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default();
        checks.push(check(
            "CRIDockerd",
            present,
            Error,
            if present {
                format!("cri-dockerd's socket {CRI_DOCKERD_SOCKET} exists")
            } else {
                format!(
                    "kubelet {version} has no dockershim (removed in 1.24): with docker it needs cri-dockerd, \
                     and {CRI_DOCKERD_SOCKET} does not exist"
                )
            },
            Some(
                "install cri-dockerd (github.com/Mirantis/cri-dockerd, its cri-docker.socket enabled), or set \
                 [host] container_runtime = \"containerd\" (docker's containerd serves CRI too)"
                    .into(),
            ),
        ));
    }
    let minor = f.kubelet_version.as_ref().map(|v| v.minor).unwrap_or(0);
    if !f.cgroup_v2 && minor >= 31 {
        checks.push(check(
            "CgroupV1",
            false,
            if kubelet.fail_cgroup_v1 { Error } else { Warning },
            if kubelet.fail_cgroup_v1 {
                "this host uses cgroup v1 and [kubelet] fail_cgroup_v1 = true".into()
            } else {
                "this host uses cgroup v1, which Kubernetes is dropping (kubelet >= 1.35 refuses it unless \
                 told otherwise): kubejoin writes failCgroupV1: false so that kubelet runs"
                    .into()
            },
            Some(
                "boot with the unified cgroup hierarchy (cgroup v2, systemd.unified_cgroup_hierarchy=1); \
                 [kubelet] fail_cgroup_v1 = true makes this an error"
                    .into(),
            ),
        ));
    }
}

/// The container runtime's socket, when kubelet has one to reach.
fn runtime_check(f: &Facts, kubelet: &KubeletSettings, checks: &mut Vec<Check>) {
    use Severity::*;
    if let Some((socket, answering)) = &f.runtime_socket {
        checks.push(check(
            "ContainerRuntime",
            *answering,
            Warning,
            format!(
                "{} {}",
                socket.display(),
                if *answering {
                    "accepts connections"
                } else {
                    "does not accept connections"
                }
            ),
            Some(match &kubelet.runtime_unit {
                Some(Some(unit)) => format!(
                    "kubelet.service starts {unit} first; if it fails, see `journalctl -u {unit}`"
                ),
                Some(None) => {
                    "start the container runtime, or set [kubelet] container_runtime_endpoint"
                        .into()
                }
                None => {
                    "kubelet.service starts its runtime's unit first; if it fails, see its journal \
                         (`journalctl -u containerd`, or docker)"
                        .into()
                }
            }),
        ));
    }
}

/// Active swap: kubelet refuses it; host preparation turns off what it may.
fn swap_check(f: &Facts, checks: &mut Vec<Check>) {
    use Severity::*;
    let unmanaged: Vec<&str> = f
        .swaps
        .iter()
        .filter(|s| {
            !f.swap_managed || (!f.zram_managed && crate::host::is_zram(std::path::Path::new(s)))
        })
        .map(String::as_str)
        .collect();
    checks.push(check(
        "Swap",
        f.swaps.is_empty(),
        if unmanaged.is_empty() { Warning } else { Error },
        if f.swaps.is_empty() {
            "no swap is active".into()
        } else if unmanaged.is_empty() {
            format!("swap is active: {} (host preparation turns it off)", f.swaps.join(", "))
        } else if f.swap_managed {
            format!(
                "zram swap is active: {} (left to its generator; [host] swap_zram = true turns it off too)",
                unmanaged.join(", ")
            )
        } else {
            format!("swap is active: {}", f.swaps.join(", "))
        },
        Some("kubelet refuses to start with swap on: `swapoff -a` and comment out the swap lines in /etc/fstab".into()),
    ));
}

/// The node itself: tools kubelet uses, its port, an earlier join.
fn node_checks(f: &Facts, checks: &mut Vec<Check>) {
    use Severity::*;
    let missing: Vec<&str> = f
        .tools
        .iter()
        .filter(|(_, found)| !found)
        .map(|(t, _)| *t)
        .collect();
    checks.push(check(
        "Tools",
        missing.is_empty(),
        Warning,
        if missing.is_empty() {
            "iptables, mount and nsenter are installed".into()
        } else {
            format!("not found on PATH: {}", missing.join(", "))
        },
        Some("install them (Debian: apt-get install iptables mount util-linux); kubelet and kube-proxy use them".into()),
    ));
    checks.push(check(
        "Port-10250",
        f.port_10250_free || f.kubelet_active,
        Error,
        if f.port_10250_free || f.kubelet_active {
            "port 10250 is free (or kubelet holds it)".into()
        } else {
            "port 10250 is in use by another program".into()
        },
        Some("kubelet serves on 10250: find the program with `ss -ltnp 'sport = :10250'` and stop it".into()),
    ));

    checks.push(check(
        "ExistingJoin",
        !f.joined,
        Warning,
        if f.joined {
            format!("kubelet already has a client certificate ({KUBELET_KUBECONFIG}): this node is joined")
        } else {
            "this node is not joined yet".into()
        },
        Some(format!(
            "nothing to do; to join again, stop kubelet and remove {KUBELET_KUBECONFIG} and \
             {CERT_DIR}kubelet-client-*.pem (its client certificates) first"
        )),
    ));
}

/// Errors of the checks `ignore` names become warnings (`all`: every one).
fn downgrade_ignored(checks: &mut [Check], ignore: &[String]) {
    use Severity::*;
    let all = ignore.iter().any(|i| i.eq_ignore_ascii_case("all"));
    for c in checks.iter_mut() {
        if c.severity == Error && (all || ignore.iter().any(|i| i.eq_ignore_ascii_case(c.name))) {
            c.severity = Warning;
        }
    }
}

/// Failed checks whose cause can go away by itself (the system bus restarting): a join
/// they stop is worth another try. Every other error needs a change on this node first.
const CLEAR_BY_THEMSELVES: [&str; 1] = ["Systemd"];

/// The failure a run ends with when error checks fail: each named with its message and
/// fix; transient only when every one of them can clear by itself.
pub fn stop(checks: &[Check]) -> Option<Failure> {
    let errors = errors(checks);
    if errors.is_empty() {
        return None;
    }
    let message = format!(
        "preflight failed: {}",
        errors
            .iter()
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let fix = format!(
        "{} (or skip a check with --ignore-preflight-errors={})",
        errors
            .iter()
            .filter_map(|c| c.fix.clone())
            .collect::<Vec<_>>()
            .join("; "),
        errors.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
    );
    Some(
        if errors.iter().all(|c| CLEAR_BY_THEMSELVES.contains(&c.name)) {
            Failure::Transient { message, fix }
        } else {
            Failure::NeedsPerson { message, fix }
        },
    )
}

/// The failed checks that stop a join.
pub fn errors(checks: &[Check]) -> Vec<&Check> {
    checks
        .iter()
        .filter(|c| !c.ok && c.severity == Severity::Error)
        .collect()
}

fn parse_proc_swaps(text: &str) -> Vec<String> {
    crate::host::swap::parse_proc_swaps(text)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_else(|| {
            vec![
                "/usr/sbin".into(),
                "/usr/bin".into(),
                "/sbin".into(),
                "/bin".into(),
            ]
        })
        .iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")].iter())
        .any(|d| d.join(tool).is_file())
}

/// Reads the host. `bus` and `kubelet_active` come from the caller's D-Bus connection;
/// kubelet's version and profile from [`crate::kubelet`].
pub fn inspect(
    kubelet: &KubeletSettings,
    version: &Result<Version, String>,
    profile: Option<&Profile>,
    host: &crate::host::HostSettings,
    bus: Result<(), String>,
    kubelet_active: bool,
) -> Facts {
    let binary = crate::fsutil::executable(&kubelet.binary);
    let socket = profile.and_then(|p| match &p.cri {
        Cri::Remote(ep) => ep.strip_prefix("unix://").map(PathBuf::from),
        Cri::Dockershim => Some(PathBuf::from("/run/docker.sock")),
    });
    let runtime_socket = socket.map(|path| {
        let answering = std::os::unix::net::UnixStream::connect(&path).is_ok();
        (path, answering)
    });
    let cri_dockerd = profile
        .filter(|p| p.cri_dockerd)
        .map(|_| std::path::Path::new(CRI_DOCKERD_SOCKET.trim_start_matches("unix://")).exists());
    Facts {
        euid: nix::unistd::geteuid().as_raw(),
        pid1: std::fs::read_to_string("/proc/1/comm")
            .unwrap_or_default()
            .trim()
            .to_string(),
        bus,
        kubelet_active,
        kubelet_binary: binary,
        runtime_socket,
        swaps: std::fs::read_to_string("/proc/swaps")
            .map(|t| parse_proc_swaps(&t))
            .unwrap_or_default(),
        swap_managed: host.swap,
        zram_managed: host.swap_zram,
        tools: ["iptables", "mount", "nsenter"]
            .map(|t| (t, on_path(t)))
            .to_vec(),
        port_10250_free: std::net::TcpListener::bind("0.0.0.0:10250").is_ok(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
        joined: std::fs::read_to_string(KUBELET_KUBECONFIG)
            .is_ok_and(|k| k.contains("client-certificate")),
        kubelet_version: version.clone(),
        cgroup_v2: crate::kubelet::cgroup_v2(),
        cri_dockerd,
        pod_network: pod_network::inspect(profile, host.kernel),
    }
}

/// Checks as text, one per line.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match (c.ok, c.severity) {
            (true, _) => "ok",
            (false, Severity::Error) => "ERROR",
            (false, Severity::Warning) => "warning",
        };
        out.push_str(&format!("[{tag:>7}] {:<16} {}\n", c.name, c.message));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("          {:<16} fix: {fix}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_preflight_needs_a_person_unless_it_can_clear_by_itself() {
        let failed = |name: &'static str, severity: Severity| Check {
            name,
            ok: false,
            severity,
            message: format!("{name} failed"),
            fix: Some(format!("fix {name}")),
        };
        assert!(stop(&[failed("Swap", Severity::Warning)]).is_none());
        let person = stop(&[
            failed("KubeletBinary", Severity::Error),
            failed("Systemd", Severity::Error),
        ])
        .unwrap();
        assert_eq!(person.exit_code(), crate::failure::exit::NEEDS_PERSON);
        assert_eq!(
            person.to_string(),
            "preflight failed: KubeletBinary: KubeletBinary failed; Systemd: Systemd failed"
        );
        assert_eq!(
            person.fix().unwrap(),
            "fix KubeletBinary; fix Systemd (or skip a check with --ignore-preflight-errors=KubeletBinary,Systemd)"
        );
        let bus = stop(&[failed("Systemd", Severity::Error)]).unwrap();
        assert_eq!(bus.exit_code(), crate::failure::exit::TRANSIENT);
    }

    fn healthy() -> Facts {
        Facts {
            euid: 0,
            pid1: "systemd".into(),
            bus: Ok(()),
            kubelet_active: false,
            kubelet_binary: Some(true),
            runtime_socket: Some(("/run/containerd/containerd.sock".into(), true)),
            swaps: vec![],
            swap_managed: false,
            zram_managed: false,
            tools: vec![("iptables", true), ("mount", true), ("nsenter", true)],
            port_10250_free: true,
            hostname: "worker-1".into(),
            joined: false,
            kubelet_version: Ok(Version::parse("v1.20.2").unwrap()),
            cgroup_v2: false,
            cri_dockerd: None,
            pod_network: pod_network::healthy(),
        }
    }

    fn failing(f: &Facts, ignore: &[&str]) -> Vec<(&'static str, Severity)> {
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        evaluate(f, &KubeletSettings::default(), &ignore)
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| (c.name, c.severity))
            .collect()
    }

    #[test]
    fn a_healthy_host_passes() {
        assert!(failing(&healthy(), &[]).is_empty());
    }

    #[test]
    fn each_failure_has_its_severity_and_fix() {
        use Severity::*;
        type Breaks = Box<dyn Fn(&mut Facts)>;
        let cases: Vec<(Breaks, &str, Severity)> = vec![
            (Box::new(|f| f.euid = 1000), "Root", Error),
            (Box::new(|f| f.pid1 = "bash".into()), "Systemd", Error),
            (
                Box::new(|f| f.bus = Err("no socket".into())),
                "Systemd",
                Error,
            ),
            (
                Box::new(|f| f.kubelet_binary = None),
                "KubeletBinary",
                Error,
            ),
            (
                Box::new(|f| f.kubelet_binary = Some(false)),
                "KubeletBinary",
                Error,
            ),
            (
                Box::new(|f| f.runtime_socket = Some(("/x".into(), false))),
                "ContainerRuntime",
                Warning,
            ),
            (
                Box::new(|f| f.swaps = vec!["/dev/loop0".into()]),
                "Swap",
                Error,
            ),
            (Box::new(|f| f.tools[0].1 = false), "Tools", Warning),
            (Box::new(|f| f.port_10250_free = false), "Port-10250", Error),
            (
                Box::new(|f| f.pod_network.ip_forward = Some(false)),
                "IPForward",
                Warning,
            ),
            (
                Box::new(|f| f.hostname = "Worker_1".into()),
                "Hostname",
                Error,
            ),
            (Box::new(|f| f.joined = true), "ExistingJoin", Warning),
            (
                Box::new(|f| f.kubelet_version = Err("cannot run it".into())),
                "KubeletVersion",
                Error,
            ),
            (
                Box::new(|f| f.cri_dockerd = Some(false)),
                "CRIDockerd",
                Error,
            ),
            (
                Box::new(|f| f.kubelet_version = Ok(Version::parse("v1.36.2").unwrap())),
                "CgroupV1",
                Warning,
            ),
        ];
        for (break_it, name, severity) in cases {
            let mut f = healthy();
            break_it(&mut f);
            assert_eq!(failing(&f, &[]), [(name, severity)], "{name}");
            let checks = evaluate(&f, &KubeletSettings::default(), &[]);
            let c = checks.iter().find(|c| c.name == name).unwrap();
            assert!(c.fix.is_some(), "{name} names a fix");
        }
    }

    #[test]
    fn managed_swap_is_a_warning_but_zram_is_reported() {
        let mut f = healthy();
        f.swaps = vec!["/swapfile".into()];
        f.swap_managed = true;
        assert_eq!(failing(&f, &[]), [("Swap", Severity::Warning)]);
        f.swaps.push("/dev/zram0".into());
        assert_eq!(failing(&f, &[]), [("Swap", Severity::Error)]);
        let msg = evaluate(&f, &KubeletSettings::default(), &[])
            .into_iter()
            .find(|c| c.name == "Swap")
            .unwrap()
            .message;
        assert!(msg.contains("zram swap is active: /dev/zram0"), "{msg}");
        f.zram_managed = true;
        assert_eq!(failing(&f, &[]), [("Swap", Severity::Warning)]);
    }

    #[test]
    fn cgroup_v1_can_be_made_an_error() {
        let mut f = healthy();
        f.kubelet_version = Ok(Version::parse("v1.36.2").unwrap());
        let strict = KubeletSettings {
            fail_cgroup_v1: true,
            ..Default::default()
        };
        let checks = evaluate(&f, &strict, &[]);
        assert_eq!(errors(&checks)[0].name, "CgroupV1");
        f.cgroup_v2 = true;
        assert!(errors(&evaluate(&f, &strict, &[])).is_empty());
    }

    #[test]
    fn kubelet_holding_its_port_is_fine() {
        let mut f = healthy();
        f.port_10250_free = false;
        f.kubelet_active = true;
        assert!(failing(&f, &[]).is_empty());
    }

    #[test]
    fn ignored_errors_become_warnings() {
        let mut f = healthy();
        f.swaps = vec!["/swapfile".into()];
        f.hostname = "Bad_Name".into();
        assert_eq!(
            failing(&f, &["swap"]),
            [("Hostname", Severity::Error), ("Swap", Severity::Warning)]
        );
        assert_eq!(
            failing(&f, &["all"]),
            [("Hostname", Severity::Warning), ("Swap", Severity::Warning)]
        );
    }

    #[test]
    fn node_names() {
        for ok in ["worker-1", "a", "node.example.com", "10.0.0.1"] {
            assert!(valid_node_name(ok), "{ok}");
        }
        for bad in ["", "Worker", "a_b", "-a", "a-", "a..b"] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn proc_swaps() {
        let text = "Filename\tType\tSize\tUsed\tPriority\n/dev/loop0 partition 16380 0 -2\n/swap\\040file file 10 0 -3\n";
        assert_eq!(parse_proc_swaps(text), ["/dev/loop0", "/swap file"]);
    }
}
