//! Worker VMs with their own kernel (after `shared/vm.md`): the Debian images of
//! `scripts/vm-images.sh` booted by qemu, each on qcow2 overlays of its own, with a NoCloud
//! seed disk (label `cidata`) holding its user-data and the files cloud-init installs.
//! qemu runs in a network namespace of the test's own ([`Netns`]): the guest's user-mode
//! network reaches that namespace's loopback as 10.0.2.2, where the control plane listens,
//! and nothing else. The test reaches into the guest through qemu-guest-agent on a
//! virtio-serial port (a unix socket here), never over the network. qemu is started with
//! `-no-reboot`: a guest's reboot (or a power cut by sysrq `b`) ends qemu, and the test
//! boots the same disks again, as the machine's firmware would.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;

use super::cluster::{Place, in_netns_of, run};

/// Where `scripts/vm-images.sh` puts its images.
pub fn cache() -> PathBuf {
    std::env::var_os("KUBEJOIN_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kubejoin-vm"))
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Why the VM tests cannot run here, if they cannot: outside CI they are skipped with
/// the reason; under `CI=true` they fail (CI installs and builds what they need).
fn missing(what: String) -> bool {
    if under_ci() {
        panic!("{what} under CI");
    }
    eprintln!("SKIPPED (vm): {what}");
    false
}

/// Whether VMs can run: root, qemu, genisoimage, debugfs.
pub fn available() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return missing("not root".into());
    }
    for tool in [
        "qemu-system-x86_64",
        "qemu-img",
        "genisoimage",
        "debugfs",
        "e2fsck",
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return missing(format!(
                "{tool} is missing: run scripts/vm-images.sh, which installs it"
            ));
        }
    }
    true
}

/// The cached image of `release` (`bookworm`, `trixie`), or `None` (skipped, saying why).
pub fn image(release: &str) -> Option<PathBuf> {
    let dir = cache().join(release);
    ["vmlinuz", "initrd.img", "root.img", "swap.img"]
        .iter()
        .all(|f| dir.join(f).exists())
        .then_some(dir.clone())
        .or_else(|| {
            missing(format!(
                "no {release} image in {}: build it with scripts/vm-images.sh",
                dir.display()
            ));
            None
        })
}

/// The .deb that `packaging/build.sh` made (the newest), or `None` (skipped, saying why).
pub fn deb() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let newest = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.or_else(|| {
        missing(format!(
            "no .deb in {}: build it with packaging/build.sh",
            dir.display()
        ));
        None
    })
}

/// The accelerator to use: KVM where a guest kernel really runs under it, else TCG
/// (software emulation). Decided once, by booting the image's kernel with no root file
/// system: it panics and (`panic=-1`, `-no-reboot`) ends qemu within seconds where the
/// accelerator works; on this project's machine KVM hangs at the kernel's start.
pub fn accel(kernel: &Path) -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| {
        if !Path::new("/dev/kvm").exists() {
            return "tcg";
        }
        let mut child = match Command::new("qemu-system-x86_64")
            .args([
                "-accel", "kvm", "-cpu", "host", "-m", "256", "-display", "none",
            ])
            .args([
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-nic",
                "none",
                "-no-reboot",
                "-kernel",
            ])
            .arg(kernel)
            .args(["-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => return "tcg",
        };
        let started = Instant::now();
        let works = loop {
            match child.try_wait() {
                Ok(Some(_)) => break true,
                Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break false;
                }
            }
        };
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        let accel = if works && out.contains("Kernel panic") {
            "kvm"
        } else {
            "tcg"
        };
        eprintln!(
            "vm: accelerator {accel} (a KVM guest kernel {})",
            if accel == "kvm" {
                "runs"
            } else {
                "does not run here"
            }
        );
        accel
    })
}

/// A network namespace of the test's own, its loopback up, held by a sleeping process:
/// where the control plane listens and where qemu runs.
pub struct Netns {
    holder: Child,
    dir: PathBuf,
}

impl Netns {
    pub fn new(dir: &Path) -> Netns {
        fs::create_dir_all(dir).unwrap();
        let mut c = Command::new("unshare");
        c.args([
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec sleep infinity",
        ]);
        super::dies_with_parent(&mut c);
        let holder = c.spawn().expect("unshare --net");
        let ns = Netns {
            holder,
            dir: dir.to_path_buf(),
        };
        // Until the loopback is up.
        let up = super::testbed::wait_for(Duration::from_secs(10), || {
            in_netns_of(ns.pid(), "ip")
                .args(["-o", "link", "show", "lo", "up"])
                .output()
                .ok()
                .filter(|o| !o.stdout.is_empty())
                .map(|_| ())
        });
        assert!(up.is_some(), "the namespace's loopback did not come up");
        ns
    }
}

impl Place for Netns {
    fn pid(&self) -> i32 {
        self.holder.id() as i32
    }
    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `kubejoin token create --output cloud-init`'s user-data (`printed`) with its `packages:`
/// line replaced by the `runcmd` items `items` (lines of a YAML list, each ending in a
/// newline), put before its own: these VMs reach no package archive, so the items install
/// from the seed disk what the package would.
pub fn without_packages(printed: &str, items: &str) -> String {
    let packages = "packages:\n  - kubejoin\nruncmd:\n";
    assert!(printed.contains(packages), "{printed}");
    printed.replace(packages, &format!("runcmd:\n{items}"))
}

/// `kubejoin token create --output cloud-init`'s user-data (`printed`) with the `runcmd`
/// items `items` (lines of a YAML list, each ending in a newline) put before its own.
pub fn runcmd_first(printed: &str, items: &str) -> String {
    assert!(printed.contains("\nruncmd:\n"), "{printed}");
    printed.replacen("\nruncmd:\n", &format!("\nruncmd:\n{items}"), 1)
}

/// A directory served over HTTP on `port` of a namespace's loopback (the guests' 10.0.2.2),
/// as long as the value lives: a package repository, as a fleet's mirror serves it.
pub struct Served {
    server: Child,
}

impl Served {
    pub fn new(ns: &Netns, dir: &Path, port: u16) -> Served {
        let log = fs::File::create(dir.with_extension("http.log")).unwrap();
        let mut c = in_netns_of(ns.holder.id() as i32, "python3");
        c.args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        super::dies_with_parent(&mut c);
        Served {
            server: c.spawn().expect("python3 -m http.server"),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// `DIR/cni.tar`: this machine's CNI plugins (Debian's containernetworking-plugins, in
/// /usr/lib/cni), for a seed disk: what a network plugin's DaemonSet brings to a node.
pub fn cni_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("cni.tar");
    let out = Command::new("tar")
        .args(["-C", "/usr/lib/cni", "-cf"])
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", super::text(&out));
    tar
}

/// A NoCloud seed disk: `user-data`, `meta-data` (instance id and hostname) and `files`
/// (name, source), as an ISO 9660 image labelled `cidata`.
pub fn seed_disk(dir: &Path, user_data: &str, hostname: &str, files: &[(&str, &Path)]) -> PathBuf {
    let content = dir.join("seed");
    fs::create_dir_all(&content).unwrap();
    fs::write(content.join("user-data"), user_data).unwrap();
    fs::write(
        content.join("meta-data"),
        format!("instance-id: {hostname}\nlocal-hostname: {hostname}\n"),
    )
    .unwrap();
    for (name, source) in files {
        let to = content.join(name);
        let _ = fs::remove_file(&to);
        fs::hard_link(source, &to)
            .or_else(|_| fs::copy(source, &to).map(|_| ()))
            .unwrap();
    }
    let iso = dir.join("seed.iso");
    let out = Command::new("genisoimage")
        .args(["-quiet", "-output"])
        .arg(&iso)
        .args(["-volid", "cidata", "-joliet", "-joliet-long", "-rock"])
        .arg(&content)
        .output()
        .unwrap();
    assert!(out.status.success(), "genisoimage: {}", super::text(&out));
    iso
}

/// A worker VM: its overlays, its seed, and qemu when it runs.
pub struct Vm {
    pub name: String,
    pub dir: PathBuf,
    image: PathBuf,
    seed: PathBuf,
    netns_pid: u32,
    qemu: Option<Child>,
    boots: u32,
    booted_at: Option<Instant>,
    /// The tap device (in the namespace) and MAC address of its network card on a
    /// segment, in place of qemu's user-mode network.
    tap: Option<(String, String)>,
}

impl Vm {
    /// A VM of `image` (a directory of `scripts/vm-images.sh`) with fresh overlays.
    pub fn create(name: &str, dir: &Path, image: &Path, seed: &Path, netns: &Netns) -> Vm {
        fs::create_dir_all(dir).unwrap();
        for (disk, base) in [("root.qcow2", "root.img"), ("swap.qcow2", "swap.img")] {
            let _ = fs::remove_file(dir.join(disk));
            run(Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(image.join(base))
                .arg(dir.join(disk)));
        }
        Vm {
            name: name.into(),
            dir: dir.to_path_buf(),
            image: image.to_path_buf(),
            seed: seed.to_path_buf(),
            netns_pid: netns.holder.id(),
            qemu: None,
            boots: 0,
            booted_at: None,
            tap: None,
        }
    }

    /// Plugs the VM's network card into the tap device `tap` of its namespace (see
    /// `podnet::Segment::tap`), with MAC address `mac`, in place of qemu's user-mode
    /// network: from the next boot.
    pub fn on_tap(&mut self, tap: &str, mac: &str) {
        self.tap = Some((tap.into(), mac.into()));
    }

    fn agent_socket(&self) -> PathBuf {
        self.dir.join("qga.sock")
    }

    /// Powers the VM on; `cmdline` is added to the kernel's command line (e.g.
    /// `systemd.setenv=...`). The disks keep what the last boot wrote, as a real disk.
    pub fn boot(&mut self, cmdline: &str) {
        assert!(self.qemu.is_none(), "{} is already running", self.name);
        self.boots += 1;
        let accel = accel(&self.image.join("vmlinuz"));
        let drive = |file: &Path, extra: &str| {
            // cache=writeback (qemu's default) honours the guest's flushes; never
            // cache=unsafe, which would make every power cut lose flushed data too.
            format!("file={},if=virtio,cache=writeback{extra}", file.display())
        };
        let mut c = in_netns_of(self.netns_pid as i32, "qemu-system-x86_64");
        c.args(["-name", &self.name, "-accel", accel])
            .args(["-cpu", if accel == "kvm" { "host" } else { "max" }])
            .args([
                "-m", "2048", "-smp", "2", "-display", "none", "-monitor", "none",
            ])
            .arg("-serial")
            .arg(format!(
                "file:{}",
                self.dir
                    .join(format!("console-{}.log", self.boots))
                    .display()
            ))
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(self.image.join("vmlinuz"))
            .arg("-initrd")
            .arg(self.image.join("initrd.img"))
            .arg("-append")
            .arg(format!(
                "root=LABEL=root rw console=ttyS0 panic=-1 {cmdline}"
            ))
            .arg("-drive")
            .arg(drive(&self.dir.join("root.qcow2"), ",format=qcow2"))
            .arg("-drive")
            .arg(drive(&self.dir.join("swap.qcow2"), ",format=qcow2"))
            .arg("-drive")
            .arg(drive(&self.seed, ",format=raw,readonly=on"))
            .args(match &self.tap {
                None => [
                    "-netdev".into(),
                    "user,id=n0".into(),
                    "-device".into(),
                    "virtio-net-pci,netdev=n0".into(),
                ],
                Some((tap, mac)) => [
                    "-netdev".to_string(),
                    format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
                    "-device".into(),
                    format!("virtio-net-pci,netdev=n0,mac={mac}"),
                ],
            })
            .arg("-chardev")
            .arg(format!(
                "socket,id=qga0,path={},server=on,wait=off",
                self.agent_socket().display()
            ))
            .args(["-device", "virtio-serial"])
            .args([
                "-device",
                "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
            ])
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.dir.join(format!("qemu-{}.log", self.boots))).unwrap())
            .stderr(Stdio::inherit());
        super::dies_with_parent(&mut c);
        self.qemu = Some(c.spawn().expect("qemu-system-x86_64"));
        self.booted_at = Some(Instant::now());
    }

    /// When qemu was last started.
    pub fn booted_at(&self) -> Instant {
        self.booted_at.expect("booted")
    }

    pub fn running(&mut self) -> bool {
        match self.qemu.as_mut().map(|q| q.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.qemu = None;
                false
            }
            None => false,
        }
    }

    /// Waits until qemu ends (the guest rebooted, powered off or was reset).
    pub fn wait_stopped(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            let q = self.qemu.as_mut()?;
            if let Ok(Some(status)) = q.try_wait() {
                self.qemu = None;
                return Some(status);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Cuts the power from outside: qemu killed, the guest's page cache lost.
    pub fn power_cut(&mut self) {
        if let Some(mut q) = self.qemu.take() {
            let _ = q.kill();
            let _ = q.wait();
        }
    }

    /// The last `lines` of the serial console of every boot.
    pub fn console(&self, lines: usize) -> String {
        let mut all = String::new();
        for boot in 1..=self.boots {
            let text = fs::read_to_string(self.dir.join(format!("console-{boot}.log")))
                .unwrap_or_default();
            let l: Vec<&str> = text.lines().collect();
            all.push_str(&format!("--- console, boot {boot}:\n"));
            all.push_str(&l[l.len().saturating_sub(lines)..].join("\n"));
            all.push('\n');
        }
        all
    }

    /// One request to the guest agent and its answer's `return`.
    fn agent(
        &self,
        request: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let mut s = UnixStream::connect(self.agent_socket()).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        // guest-sync first: it discards anything a former connection left unread.
        let id = u32::from_le_bytes(super::random_bytes()) & 0x7fff_ffff;
        let sync = serde_json::json!({"execute": "guest-sync", "arguments": {"id": id}});
        writeln!(s, "{sync}").map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("guest agent: {e}"))?;
            if line.is_empty() {
                return Err("guest agent: connection closed".into());
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim())
                && v["return"] == id
            {
                break;
            }
        }
        writeln!(s, "{request}").map_err(|e| e.to_string())?;
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("guest agent: {e}"))?;
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).map_err(|e| format!("guest agent: {e}: {line}"))?;
        if let Some(e) = v.get("error") {
            return Err(format!("guest agent: {e}"));
        }
        Ok(v["return"].clone())
    }

    /// Runs `script` with `sh -c` in the guest: its exit status and output (stdout then
    /// stderr), or why the agent did not answer.
    pub fn try_sh(&self, script: &str, timeout: Duration) -> Result<(i64, String), String> {
        let started = Instant::now();
        let pid = self.agent(
            serde_json::json!({"execute": "guest-exec", "arguments": {
                "path": "/bin/sh", "arg": ["-c", script], "capture-output": true}}),
            Duration::from_secs(10),
        )?["pid"]
            .as_i64()
            .ok_or("guest-exec gave no pid")?;
        loop {
            let st = self.agent(
                serde_json::json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}),
                Duration::from_secs(10),
            )?;
            if st["exited"] == true {
                let decode = |k: &str| {
                    st[k]
                        .as_str()
                        .map(|d| {
                            String::from_utf8_lossy(
                                &base64::engine::general_purpose::STANDARD
                                    .decode(d)
                                    .unwrap_or_default(),
                            )
                            .into_owned()
                        })
                        .unwrap_or_default()
                };
                let code = st["exitcode"].as_i64().unwrap_or(-1);
                return Ok((
                    code,
                    format!("{}{}", decode("out-data"), decode("err-data")),
                ));
            }
            if started.elapsed() > timeout {
                return Err(format!("`{script}` did not finish within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`Vm::try_sh`] that must succeed: its output.
    pub fn sh(&self, script: &str) -> String {
        match self.try_sh(script, Duration::from_secs(120)) {
            Ok((0, out)) => out,
            Ok((code, out)) => panic!("{}: `{script}` exited {code}:\n{out}", self.name),
            Err(e) => panic!("{}: `{script}`: {e}\n{}", self.name, self.console(30)),
        }
    }

    /// Waits until the guest agent answers (the guest is up to multi-user's early units).
    pub fn wait_agent(&mut self, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if !self.running() {
                return Err(format!("{}: qemu ended\n{}", self.name, self.console(40)));
            }
            if self.try_sh("true", Duration::from_secs(10)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "{}: no guest agent within {timeout:?}\n{}",
                    self.name,
                    self.console(40)
                ));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// With the VM off: every bootstrap-token-shaped string (`[a-z0-9]{6}.[a-z0-9]{16}`,
    /// not inside a longer run of those characters) on its disks. The overlays hold every
    /// block the guest ever wrote (qcow2 keeps a cluster's data as the guest wrote it,
    /// deleted files' blocks too); the seed disk holds its user-data.
    pub fn token_shaped_on_disks(&self) -> BTreeSet<String> {
        assert!(self.qemu.is_none(), "{} must be off", self.name);
        let mut found = BTreeSet::new();
        for disk in [
            self.dir.join("root.qcow2"),
            self.dir.join("swap.qcow2"),
            self.seed.clone(),
        ] {
            let out = Command::new("grep")
                .args([
                    "-aoE",
                    "(^|[^a-z0-9])[a-z0-9]{6}[.][a-z0-9]{16}([^a-z0-9]|$)",
                ])
                .arg(&disk)
                .env("LC_ALL", "C")
                .output()
                .unwrap();
            // 1: no match.
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "grep {}: {}",
                disk.display(),
                super::text(&out)
            );
            for hit in out.stdout.split(|b| *b == b'\n') {
                let token: String = String::from_utf8_lossy(hit)
                    .trim_matches(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
                    .to_string();
                if token.len() == 23 {
                    found.insert(token);
                }
            }
        }
        found
    }

    /// With the VM off: each file of `paths` as the next boot will find it (the overlay
    /// flattened, its ext4 journal replayed by e2fsck as a mount would), `None` where it
    /// does not exist.
    pub fn files_on_disk(&self, paths: &[&str]) -> BTreeMap<String, Option<Vec<u8>>> {
        assert!(self.qemu.is_none(), "{} must be off", self.name);
        let raw = self.dir.join("inspect.raw");
        run(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(self.dir.join("root.qcow2"))
            .arg(&raw));
        let fsck = Command::new("e2fsck")
            .arg("-fy")
            .arg(&raw)
            .output()
            .unwrap();
        // 0: clean, 1: errors corrected (a replayed journal counts).
        assert!(
            matches!(fsck.status.code(), Some(0 | 1)),
            "e2fsck: {}",
            super::text(&fsck)
        );
        let files = read_ext4(&raw, paths);
        let _ = fs::remove_file(&raw);
        files
    }
}

/// Files of an ext4 image, read with debugfs (`None`: not there).
pub fn read_ext4(image: &Path, paths: &[&str]) -> BTreeMap<String, Option<Vec<u8>>> {
    paths
        .iter()
        .map(|p| {
            let out = Command::new("debugfs")
                .arg("-R")
                .arg(format!("cat \"{p}\""))
                .arg(image)
                .output()
                .unwrap();
            let missing = String::from_utf8_lossy(&out.stderr).contains("not found");
            (p.to_string(), (!missing).then_some(out.stdout))
        })
        .collect()
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.power_cut();
    }
}
