//! The testbed: a private copy of this machine booted by the real systemd as PID 1 of new
//! PID, mount, network, UTS and IPC namespaces, on an overlay root whose upper layer is
//! a scratch directory, so every file the run writes is visible to the test and vanishes
//! with the testbed. The recipe is `shared/testbed.md`'s.
//!
//! ```ignore
//! let tb = Testbed::builder().with_docker(true).boot()?;
//! tb.exec(&["systemctl", "is-active", "docker"]);
//! ```
//!
//! Dropping the handle kills its PID 1 (and with it every process inside), detaches the
//! loop device of its swap and removes its directory, also when the test panics.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a host needs to run testbeds.
pub fn prerequisites() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("testbeds need root (namespaces, mounts, loop devices)".into());
    }
    for (tool, package) in [
        ("/usr/bin/unshare", "util-linux"),
        ("/usr/bin/nsenter", "util-linux"),
        ("/usr/sbin/losetup", "mount"),
        ("/usr/bin/systemd", "systemd"),
        ("/usr/bin/dbus-daemon", "dbus"),
        ("/usr/sbin/iptables", "iptables"),
        ("/usr/sbin/dockerd", "docker.io"),
        ("/usr/bin/cloud-init", "cloud-init"),
        ("/usr/sbin/ip", "iproute2"),
    ] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing: apt-get install {package}"));
        }
    }
    Ok(())
}

/// Whether this test can run. Outside CI a missing prerequisite skips the test with the
/// reason; under `CI=true` it fails it.
pub fn available() -> bool {
    match prerequisites() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("testbed prerequisite missing under CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED (testbed): {why}");
            false
        }
    }
}

/// A file to seed into the testbed's root before it boots.
#[derive(Clone)]
struct Seed {
    path: PathBuf,
    contents: Vec<u8>,
    mode: u32,
}

#[derive(Clone)]
pub struct Builder {
    files: Vec<Seed>,
    symlinks: Vec<(PathBuf, PathBuf)>,
    swap: Option<u64>,
    docker: bool,
    cloud_init: Option<String>,
    boot_timeout: Duration,
}

pub struct Testbed {
    id: String,
    dir: PathBuf,
    unshare: Option<Child>,
    pid1: i32,
    swap: Option<Swap>,
    layers_mounted: bool,
    cgroups: Option<Cgroups>,
    started: Option<Instant>,
    pub boot_time: Duration,
}

/// A loop-device swap of this testbed, made on the host (swap is the kernel's, not a
/// namespace's), with the lock that keeps swap tests from overlapping.
struct Swap {
    device: String,
    file: PathBuf,
    _lock: File,
}

impl Testbed {
    pub fn builder() -> Builder {
        Builder {
            files: Vec::new(),
            symlinks: Vec::new(),
            swap: None,
            docker: false,
            cloud_init: None,
            boot_timeout: Duration::from_secs(60),
        }
    }
}

fn scratch_root() -> PathBuf {
    // Integration tests get a target-local scratch directory; on the root filesystem,
    // so overlayfs can use it as an upper layer.
    option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("testbeds")
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

const INNER: &str = r#"#!/bin/sh
# Runs as PID 1 of the testbed's namespaces, then becomes systemd.
set -e
W="$1"; NAME="$2"   # W is a tmpfs: overlayfs refuses an upper layer inside its lower one
R="$W/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$W/upper,workdir=$W/work" "$R"
# A /tmp of its own, empty at boot as a machine's tmpfs /tmp: what other programs make in
# this machine's /tmp meanwhile is neither seen nor cleaned (whiteouts) by the testbed.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
# Fresh cgroup mounts, made in the testbed's cgroup namespace: their root is its own.
. "$W/../cgroup-mounts.sh"
mkdir -p "$R/oldroot"
cd "$R"
pivot_root . oldroot
umount -l /oldroot
rmdir /oldroot 2>/dev/null || true
ip link set lo up
hostname "$NAME"
export container=other
exec /usr/bin/systemd --system --unit=multi-user.target
"#;

impl Builder {
    /// A file in the testbed's root, written before boot (parents are created).
    pub fn with_file(
        mut self,
        path: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
        mode: u32,
    ) -> Self {
        self.files.push(Seed {
            path: path.as_ref().to_path_buf(),
            contents: contents.as_ref().to_vec(),
            mode,
        });
        self
    }

    /// A symbolic link in the testbed's root, e.g. to enable a unit before boot.
    pub fn with_symlink(mut self, path: impl AsRef<Path>, target: impl AsRef<Path>) -> Self {
        self.symlinks
            .push((path.as_ref().to_path_buf(), target.as_ref().to_path_buf()));
        self
    }

    /// A swap of `bytes` on a loop device, on before boot and gone after the handle drops.
    pub fn with_swap(mut self, bytes: u64) -> Self {
        self.swap = Some(bytes);
        self
    }

    /// Start docker (and containerd) at boot; without it they are masked.
    pub fn with_docker(mut self, docker: bool) -> Self {
        self.docker = docker;
        self
    }

    /// A NoCloud seed: cloud-init runs its four stages on this user-data at boot.
    pub fn with_cloud_init(mut self, user_data: impl Into<String>) -> Self {
        self.cloud_init = Some(user_data.into());
        self
    }

    /// The kubelet stand-in (`tests/support/kubelet-standin.py`) at `path`, e.g.
    /// `/usr/local/bin/kubelet`: it records its argv and environment, checks the bootstrap
    /// kubeconfig it is given, issues itself a node client certificate with the API server
    /// double's CA key (the signer's stand-in), serves its health endpoint and stays
    /// running. See [`Testbed::kubelet_invocation`].
    pub fn with_kubelet_standin(self, path: impl AsRef<Path>) -> Self {
        self.with_file(path, include_str!("kubelet-standin.py"), 0o755)
            .with_file(
                "/etc/kubelet-standin/ca.key",
                include_bytes!("../fixtures/real-apiserver/pki/ca.key"),
                0o600,
            )
    }

    pub fn boot_timeout(mut self, t: Duration) -> Self {
        self.boot_timeout = t;
        self
    }

    /// Starts the testbed and returns as soon as its PID 1 exists (its namespaces do),
    /// e.g. to serve on its loopback before units that need it start; then call
    /// [`Testbed::wait_booted`].
    pub fn boot_no_wait(self) -> Result<Testbed, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let started = Instant::now();
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let name = format!("testbed-{id}");
        let dir = scratch_root().join(&id);
        let _ = fs::remove_dir_all(&dir);
        let layers = dir.join("layers");
        fs::create_dir_all(&layers).map_err(|e| format!("{}: {e}", layers.display()))?;
        // From here on, Drop cleans up whatever was made.
        let mut tb = Testbed {
            id: id.clone(),
            dir: dir.clone(),
            unshare: None,
            pid1: 0,
            swap: None,
            layers_mounted: false,
            cgroups: None,
            started: None,
            boot_time: Duration::ZERO,
        };
        // The layers live on a tmpfs mounted here, on the host, so that the test reads the
        // upper layer directly; the testbed's mount namespace inherits it.
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=700", "tmpfs"])
            .arg(&layers))?;
        tb.layers_mounted = true;
        for d in ["upper", "work", "root"] {
            fs::create_dir_all(layers.join(d)).map_err(|e| e.to_string())?;
        }
        let upper = layers.join("upper");
        let mut seeds = vec![Seed {
            // systemd sets the hostname from this file at boot.
            path: "/etc/hostname".into(),
            contents: format!("{name}\n").into_bytes(),
            mode: 0o644,
        }];
        if self.cloud_init.is_some() {
            // cloud-init's locale module fails without the locales package, which a
            // worker image has and this machine does not.
            seeds.push(Seed {
                path: "/etc/cloud/cloud.cfg.d/99-testbed.cfg".into(),
                contents: b"# testbed: no locales package here\nlocale: false\n".to_vec(),
                mode: 0o644,
            });
        }
        seeds.extend(self.files.iter().cloned());
        // Host maintenance that has nothing to do with a node, and fails in a namespace.
        let mut masked = vec!["e2scrub_reap.service"];
        if !self.docker {
            masked.extend(["docker.service", "docker.socket", "containerd.service"]);
        }
        for unit in masked {
            let p = upper.join("etc/systemd/system").join(unit);
            fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
            symlink("/dev/null", &p).map_err(|e| format!("mask {unit}: {e}"))?;
        }
        if let Some(user_data) = &self.cloud_init {
            seeds.push(Seed {
                path: "/var/lib/cloud/seed/nocloud/user-data".into(),
                contents: user_data.clone().into_bytes(),
                mode: 0o600,
            });
            seeds.push(Seed {
                path: "/var/lib/cloud/seed/nocloud/meta-data".into(),
                contents: format!("instance-id: {name}\nlocal-hostname: {name}\n").into_bytes(),
                mode: 0o600,
            });
        }
        for seed in &seeds {
            let rel = seed.path.strip_prefix("/").unwrap_or(&seed.path);
            let p = upper.join(rel);
            fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
            fs::write(&p, &seed.contents).map_err(|e| format!("seed {}: {e}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(seed.mode))
                .map_err(|e| e.to_string())?;
        }
        for (path, target) in &self.symlinks {
            let p = upper.join(path.strip_prefix("/").unwrap_or(path));
            fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
            symlink(target, &p).map_err(|e| format!("symlink {}: {e}", p.display()))?;
        }
        if let Some(bytes) = self.swap {
            tb.swap = Some(make_swap(&dir, bytes)?);
        }
        let inner = dir.join("inner.sh");
        fs::write(&inner, INNER).map_err(|e| e.to_string())?;
        let cgroups = Cgroups::create(&id)?;
        fs::write(dir.join("cgroup-mounts.sh"), cgroups.mount_script())
            .map_err(|e| e.to_string())?;
        tb.cgroups = Some(cgroups);
        let join = tb.cgroups.as_ref().unwrap().join_script();

        let console = File::create(dir.join("console.log")).map_err(|e| e.to_string())?;
        // Join the testbed's cgroups, then unshare: the new cgroup namespace is rooted
        // there, so each testbed's systemd has a tree of its own.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "set -e; {join} exec /usr/bin/unshare --pid --fork --mount --net --uts --ipc --cgroup --propagation private \"$@\""
            ))
            .arg("testbed")
            .arg("/bin/sh")
            .arg(&inner)
            .arg(&layers)
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(console.try_clone().map_err(|e| e.to_string())?)
            .stderr(console)
            .spawn()
            .map_err(|e| format!("cannot start unshare: {e}"))?;
        let upid = child.id() as i32;
        tb.unshare = Some(child);
        tb.pid1 = wait_for_child(upid, Duration::from_secs(5))
            .ok_or_else(|| format!("the testbed's PID 1 did not appear\n{}", tb.console()))?;
        tb.started = Some(started);
        Ok(tb)
    }

    /// Boots and waits until systemd reports `running`.
    pub fn boot(self) -> Result<Testbed, String> {
        let timeout = self.boot_timeout;
        let mut tb = self.boot_no_wait()?;
        tb.wait_booted(timeout)?;
        Ok(tb)
    }
}

/// The lock every testbed with a swap holds while it lives: the kernel's swap list is
/// global, so tests that look at it take this lock too.
pub fn lock_swap() -> Result<File, String> {
    fs::create_dir_all(scratch_root()).map_err(|e| e.to_string())?;
    let lock_path = scratch_root().join("swap.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    Ok(lock)
}

fn make_swap(dir: &Path, bytes: u64) -> Result<Swap, String> {
    let lock = lock_swap()?;
    let file = dir.join("swap.img");
    let f = File::create(&file).map_err(|e| e.to_string())?;
    f.set_len(bytes).map_err(|e| e.to_string())?;
    drop(f);
    let out = run(Command::new("losetup").args(["-f", "--show"]).arg(&file))?;
    let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let swap = Swap {
        device: device.clone(),
        file,
        _lock: lock,
    };
    run(Command::new("mkswap").arg(&device))
        .and_then(|_| run(Command::new("swapon").arg(&device)))
        .inspect_err(|_| drop_swap(&swap))?;
    Ok(swap)
}

fn drop_swap(swap: &Swap) {
    let _ = Command::new("swapoff")
        .arg(&swap.device)
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("losetup").arg("-d").arg(&swap.device).status();
    let _ = fs::remove_file(&swap.file);
}

/// One cgroup hierarchy mounted on the host.
struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    point: PathBuf,
    /// `None` for cgroup2; the v1 mount options (`cpu`, `name=systemd`) otherwise.
    v1_options: Option<String>,
    /// This testbed's cgroup in it.
    cgroup: PathBuf,
}

/// The testbed's own cgroup in every hierarchy, below this process's cgroups, so that
/// each testbed's systemd sees its own subtree as the root and two testbeds never fight
/// over `/system.slice/...`.
struct Cgroups {
    hierarchies: Vec<Hierarchy>,
}

impl Cgroups {
    fn create(id: &str) -> Result<Cgroups, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let subsystems = fs::read_to_string("/proc/cgroups").unwrap_or_default();
        let known: Vec<&str> = subsystems
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut hierarchies = Vec::new();
        for line in mountinfo.lines() {
            // id parent dev root point options [optional...] - fstype source superoptions
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (point, fstype, superopts) = (
                fields[4],
                fields[dash + 1],
                fields.get(dash + 3).copied().unwrap_or(""),
            );
            let (v1_options, path) = match fstype {
                "cgroup2" => {
                    let path = own.lines().find_map(|l| l.strip_prefix("0::"));
                    (None, path)
                }
                "cgroup" => {
                    let mut set: Vec<&str> = superopts
                        .split(',')
                        .filter(|o| o.starts_with("name=") || known.contains(o))
                        .collect();
                    set.sort();
                    let path = own.lines().find_map(|l| {
                        let mut parts = l.splitn(3, ':');
                        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                        let mut mine: Vec<&str> = ctrls.split(',').collect();
                        mine.sort();
                        (mine == set).then_some(path)
                    });
                    (Some(set.join(",")), path)
                }
                _ => continue,
            };
            let Some(path) = path else { continue };
            let cgroup = Path::new(point)
                .join(path.trim_start_matches('/'))
                .join(format!("kubejoin-testbed-{id}"));
            hierarchies.push(Hierarchy {
                point: point.into(),
                v1_options,
                cgroup,
            });
        }
        let cgroups = Cgroups { hierarchies };
        for h in &cgroups.hierarchies {
            fs::create_dir_all(&h.cgroup).map_err(|e| format!("{}: {e}", h.cgroup.display()))?;
            // A v1 cpuset starts empty, and no process may join an empty one.
            for knob in ["cpuset.cpus", "cpuset.mems"] {
                let parent = h.cgroup.parent().unwrap().join(knob);
                if let Ok(value) = fs::read_to_string(&parent) {
                    let _ = fs::write(h.cgroup.join(knob), value.trim());
                }
            }
        }
        Ok(cgroups)
    }

    /// Shell that moves the shell itself into every testbed cgroup.
    fn join_script(&self) -> String {
        self.hierarchies
            .iter()
            .map(|h| format!("echo $$ > '{}/cgroup.procs';", h.cgroup.display()))
            .collect()
    }

    /// Shell, sourced inside the namespaces, that mounts every hierarchy under `$R`.
    fn mount_script(&self) -> String {
        let mut s = String::new();
        let root = Path::new("/sys/fs/cgroup");
        if self.hierarchies.iter().any(|h| h.point == root) {
            s.push_str("mount -t cgroup2 cgroup2 \"$R/sys/fs/cgroup\"\n");
            return s;
        }
        s.push_str("mount -t tmpfs -o mode=755 tmpfs \"$R/sys/fs/cgroup\"\n");
        for h in &self.hierarchies {
            let Ok(rel) = h.point.strip_prefix(root) else {
                continue;
            };
            let target = format!("\"$R/sys/fs/cgroup/{}\"", rel.display());
            s.push_str(&format!("mkdir -p {target}\n"));
            match &h.v1_options {
                None => s.push_str(&format!("mount -t cgroup2 cgroup2 {target}\n")),
                Some(opts) if opts.starts_with("name=") => {
                    s.push_str(&format!("mount -t cgroup -o none,{opts} cgroup {target}\n"))
                }
                Some(opts) => s.push_str(&format!("mount -t cgroup -o {opts} cgroup {target}\n")),
            }
        }
        s
    }

    /// Removes the testbed's cgroups, deepest first. Its processes are all dead by now,
    /// but a cgroup empties a moment after they are.
    fn remove(self) {
        fn subtree(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        subtree(&e.path(), out);
                    }
                }
            }
            out.push(dir.to_path_buf());
        }
        let mut dirs = Vec::new();
        for h in &self.hierarchies {
            subtree(&h.cgroup, &mut dirs);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in dirs {
            while fs::remove_dir(&d).is_err() && d.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The first child of `parent`, found in /proc.
fn wait_for_child(parent: i32, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(entries) = fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                if ppid == Some(parent) {
                    return Some(pid);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

impl Testbed {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// PID 1 of the testbed, as the host sees it.
    pub fn pid(&self) -> i32 {
        self.pid1
    }

    /// The host directory holding the overlay's layers.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn swap_device(&self) -> Option<&str> {
        self.swap.as_ref().map(|s| s.device.as_str())
    }

    fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Waits until systemd reports `running`; failed units make it an error.
    pub fn wait_booted(&mut self, timeout: Duration) -> Result<(), String> {
        let started = self.started.unwrap_or_else(Instant::now);
        self.wait_running(started + timeout)?;
        self.boot_time = started.elapsed();
        Ok(())
    }

    fn wait_running(&self, deadline: Instant) -> Result<(), String> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(format!(
                    "the testbed did not finish booting in time; jobs:\n{}\nconsole:\n{}",
                    self.exec_text(&["systemctl", "list-jobs", "--no-legend"]),
                    self.console()
                ));
            }
            let out = self
                .command(&[
                    "timeout",
                    &format!("{}", remaining.as_secs().max(1)),
                    "systemctl",
                    "is-system-running",
                    "--wait",
                ])
                .output()
                .map_err(|e| e.to_string())?;
            match String::from_utf8_lossy(&out.stdout).trim() {
                "running" => return Ok(()),
                "degraded" => {
                    let failed =
                        self.exec_text(&["systemctl", "--failed", "--no-legend", "--plain"]);
                    let mut logs = String::new();
                    for unit in failed.lines().filter_map(|l| l.split_whitespace().next()) {
                        logs.push_str(&self.exec_text(&[
                            "journalctl",
                            "--no-pager",
                            "-n",
                            "15",
                            "-u",
                            unit,
                        ]));
                    }
                    return Err(format!(
                        "the testbed booted degraded; failed units:\n{failed}\n{logs}"
                    ));
                }
                // Not up yet (no bus), or still starting: ask again.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A command that runs inside every namespace of the testbed.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/nsenter");
        c.arg("-t")
            .arg(self.pid1.to_string())
            .arg("-a")
            .arg("--")
            .args(argv);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a command inside the testbed and returns its output.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv).output().expect("nsenter runs")
    }

    /// Runs a command inside the testbed and fails the test, with its output, unless it
    /// succeeds.
    pub fn exec_ok(&self, argv: &[&str]) -> Output {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// stdout and stderr of a command inside the testbed, as text.
    pub fn exec_text(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `sh -c SCRIPT` inside the testbed.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["/bin/sh", "-c", script])
    }

    /// A file as the testbed sees it.
    pub fn read(&self, path: impl AsRef<Path>) -> std::io::Result<Vec<u8>> {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        fs::read(Path::new(&format!("/proc/{}/root", self.pid1)).join(rel))
    }

    /// Writes a file into the running testbed (parents created), as root with `mode`.
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>, mode: u32) {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        let p = Path::new(&format!("/proc/{}/root", self.pid1)).join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, contents).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `ActiveState SubState` of a unit, e.g. `active running`.
    pub fn unit_state(&self, unit: &str) -> String {
        let out = self.exec(&[
            "systemctl",
            "show",
            "--property=ActiveState,SubState",
            "--value",
            unit,
        ]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Everything the journal holds for a unit, every field of every entry.
    pub fn journal(&self, unit: &str) -> String {
        self.exec_text(&["journalctl", "--no-pager", "-o", "verbose", "-u", unit])
    }

    /// Every path the testbed created, changed or deleted: the overlay's upper layer.
    pub fn changed_files(&self) -> Vec<PathBuf> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if let Ok(rel) = p.strip_prefix(base) {
                    out.push(Path::new("/").join(rel));
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(base, &p, out);
                }
            }
        }
        let upper = self.dir.join("layers/upper");
        let mut out = Vec::new();
        walk(&upper, &upper, &mut out);
        out.sort();
        out
    }

    /// How the kubelet stand-in was last started: `argv`, `env`, `pid`, `started`, and
    /// `bootstrap` (`server`, `token_id`) or `error`.
    pub fn kubelet_invocation(&self) -> Option<serde_json::Value> {
        let bytes = self.read("/var/lib/kubelet-standin/invocation.json").ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// How many times the kubelet stand-in was started.
    pub fn kubelet_starts(&self) -> u32 {
        self.read("/var/lib/kubelet-standin/starts")
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// [`Testbed::changed_files`] without `/var/log`, where journald writes whatever the
    /// test does.
    pub fn changed_files_except_logs(&self) -> Vec<PathBuf> {
        self.changed_files()
            .into_iter()
            .filter(|p| !p.starts_with("/var/log"))
            .collect()
    }

    /// A TCP socket bound inside the testbed's network namespace (its own loopback),
    /// for servers the test runs in its own process, such as the API server double.
    pub fn bind_tcp(&self, addr: &str) -> std::io::Result<std::net::TcpListener> {
        let ns = File::open(format!("/proc/{}/ns/net", self.pid1))?;
        let addr = addr.to_string();
        // Namespaces are per thread: enter it on a thread of its own, bind, and leave
        // the socket (which stays in that namespace) to the caller.
        std::thread::spawn(move || {
            // On this thread only.
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            std::net::TcpListener::bind(addr)
        })
        .join()
        .expect("bind thread")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.pid1 > 0 {
            // systemd as PID 1 ignores SIGTERM; SIGKILL ends the namespace and all in it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid1),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut child) = self.unshare.take() {
            if self.pid1 == 0 {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if let Some(swap) = self.swap.take() {
            drop_swap(&swap);
        }
        if let Some(cgroups) = self.cgroups.take() {
            cgroups.remove();
        }
        // The overlay was mounted in the testbed's own mount namespace, which is gone;
        // the tmpfs under it is the host's.
        if self.layers_mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.join("layers"))
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
