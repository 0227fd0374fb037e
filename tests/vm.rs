//! Proven on real machines: worker VMs with their own kernel (Debian 12 and 13 from
//! `scripts/vm-images.sh`: cgroup v2 only, systemd, cloud-init, containerd, a swap device
//! in fstab) boot from a NoCloud seed whose user-data is what `kubejoin token create
//! --output cloud-init --repo http://10.0.2.2:8080 --repo-key ...` printed: cloud-init
//! installs kubejoin from a signed repository (`packaging/repo.sh`, a test key) served on
//! the test's namespace, through its own `apt:` and `packages:`. One `runcmd` item is
//! added first, for what a worker image would carry: kubelet and the images (a sandbox
//! image under containerd's default names, and the test pod's), from the seed disk. The cluster is a real
//! v1.36.2 control plane made ready by `kubejoin cluster prepare`, in a network namespace
//! of the test's own, where the guests reach it as 10.0.2.2 (qemu's user-mode network).
//!
//! CI runs the sample below (two VMs at a time): a Debian 12 worker joins on first boot,
//! keeps a pod running, burns its single-use token (the copy cloud-init keeps is refused,
//! and so is every token-shaped string on its disks), and reboots with its token gone from
//! the cluster; a Debian 13
//! worker has its power cut (sysrq `b`, no sync) at a fail point of `kubejoin run`, boots
//! again and converges. `scripts/vm-matrix.sh` runs the whole power-cut matrix (every
//! fail point, and random moments of the first boot), which the README records.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::cluster::{self, ControlPlane, Setup};
use support::vm::{self, Netns, Vm};

const KUBE: &str = "v1.36.2";

/// The Kubernetes of the control plane and of the guests' kubelet: v1.36.2, or the one
/// `KUBEJOIN_VM_KUBE` names (scripts/vm-kubelet.sh).
fn kube() -> String {
    std::env::var("KUBEJOIN_VM_KUBE").unwrap_or_else(|_| KUBE.into())
}
const SERVER: &str = "https://10.0.2.2:6443";
const POD_IMAGE: &str = "kubejoin.test/sleeper:1";
/// The pod's image, and the sandbox image under the names containerd 1.6 (bookworm) and
/// 1.7 (trixie) ask for by default, so no configuration beyond kubejoin's is needed.
const IMAGES: [&str; 5] = [
    POD_IMAGE,
    "registry.k8s.io/pause:3.6",
    "registry.k8s.io/pause:3.8",
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/pause:3.10",
];
/// Guests are slow under TCG: a first boot and its join take minutes.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// What the VMs share: the namespace, the control plane, kubelet and the images.
struct World {
    ns: Netns,
    cp: ControlPlane,
    dir: PathBuf,
    kubelet: PathBuf,
    images: PathBuf,
    /// With workloads: the CNI plugins (a tar of this machine's /usr/lib/cni), carried on
    /// every seed for the test's network plugin.
    cni: Option<PathBuf>,
    /// The signed repository of `packaging/repo.sh` (test key) the guests install kubejoin
    /// from, served at http://10.0.2.2:8080.
    repo: PathBuf,
    _served: vm::Served,
}

/// Where the guests find the repository.
const REPO_URL: &str = "http://10.0.2.2:8080";

impl World {
    /// A bare control plane, made ready by `kubejoin cluster prepare` with cluster-info
    /// naming the address the guests use.
    fn new(name: &str) -> Option<World> {
        Self::with(name, false)
    }

    /// [`World::new`], and with `workloads` a scheduler and pod CIDRs for the Nodes, and
    /// the CNI plugins on every seed.
    fn with(name: &str, workloads: bool) -> Option<World> {
        if !vm::available() {
            return None;
        }
        let kube = kube();
        let bin = cluster::binaries(&kube)?;
        // The packages `packaging/repo.sh` puts in the repository.
        vm::deb()?;
        let dir = std::env::temp_dir().join(format!("kubejoin-vm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ns = Netns::new(&dir);
        let cp = ControlPlane::start_with(
            &ns,
            &kube,
            &bin,
            Setup {
                seed: false,
                workloads,
                ..Setup::default()
            },
        );
        let out = cp.kubejoin(&ns, &["cluster", "prepare", "--server", SERVER]);
        assert!(
            out.status.success(),
            "cluster prepare: {}",
            support::text(&out)
        );
        let images = support::images::sleeper(&dir.join("image"), &IMAGES);
        // kubejoin's package, from a signed repository as fleets install it.
        let repo = dir.join("repo");
        let out = cluster::run(
            std::process::Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/repo.sh"))
                .arg("--test-key")
                .arg(&repo),
        );
        assert!(
            out.status.success(),
            "packaging/repo.sh: {}",
            support::text(&out)
        );
        let _served = vm::Served::new(&ns, &repo, 8080);
        let cni = workloads.then(|| vm::cni_tar(&dir));
        Some(World {
            ns,
            cp,
            kubelet: bin.join("kubelet"),
            images,
            dir,
            cni,
            repo,
            _served,
        })
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.cp.kubectl_out(&self.ns, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new worker: a token of its own from `kubejoin token create --output cloud-init`,
    /// that user-data with the package installed from the seed disk, and the VM.
    fn worker(&self, release: &str, hostname: &str) -> Option<(Vm, String)> {
        self.worker_in(release, hostname, &[])
    }

    /// [`World::worker`], its token in extra groups.
    fn worker_in(&self, release: &str, hostname: &str, groups: &[&str]) -> Option<(Vm, String)> {
        let image = vm::image(release)?;
        let key = self.repo.join("kubejoin-archive-keyring.asc");
        let key = key.to_str().unwrap();
        let mut args = vec![
            "token",
            "create",
            "--output",
            "cloud-init",
            "--description",
            hostname,
            "--repo",
            REPO_URL,
            "--repo-key",
            key,
        ];
        let groups = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", groups.as_str()]);
        }
        let out = self.cp.kubejoin(&self.ns, &args);
        assert!(
            out.status.success(),
            "token create: {}",
            support::text(&out)
        );
        let printed = String::from_utf8(out.stdout).unwrap();
        let token_id = printed
            .lines()
            .filter_map(|l| l.trim().strip_prefix("content: "))
            .find_map(|t| t.split_once('.').filter(|(id, _)| id.len() == 6))
            .map(|(id, _)| id)
            .expect("the token in the user-data")
            .to_string();
        let dir = self.dir.join(hostname);
        let mut files = vec![
            ("kubelet", self.kubelet.as_path()),
            ("images.tar", &self.images),
        ];
        if let Some(cni) = &self.cni {
            files.push(("cni.tar", cni));
        }
        let seed = vm::seed_disk(&dir, &user_data(&printed), hostname, &files);
        Some((
            Vm::create(hostname, &dir, &image, &seed, &self.ns),
            token_id,
        ))
    }

    /// Waits until the Node is registered and kubejoin.service is done: the time from
    /// qemu's start.
    fn wait_joined(&self, vm: &mut Vm, hostname: &str) -> Result<Duration, String> {
        let started = Instant::now();
        let mut registered = None;
        let mut rounds = 0u32;
        loop {
            rounds += 1;
            // A failure kubejoin.service does not retry (exit 2: the configuration or a
            // check a person must fix) ends the wait at once, with what kubejoin said.
            if registered.is_none()
                && rounds.is_multiple_of(10)
                && let Ok((_, state)) = vm.try_sh(
                    "systemctl show -p ActiveState,ExecMainStatus --value kubejoin.service",
                    Duration::from_secs(20),
                )
                && {
                    let values: Vec<&str> = state.split_whitespace().collect();
                    values.contains(&"failed") && values.contains(&"2")
                }
            {
                return Err(format!(
                    "kubejoin.service failed with a failure it does not retry:\n{}",
                    journal(vm, "kubejoin", 40)
                ));
            }
            if registered.is_none()
                && !self
                    .kubectl(&["get", "node", hostname, "-o", "name"])
                    .is_empty()
            {
                registered = Some(vm.booted_at().elapsed());
            }
            if let Some(at) = registered
                && let Ok((_, state)) = vm.try_sh(
                    "systemctl is-active kubejoin.service",
                    Duration::from_secs(20),
                )
            {
                match state.trim() {
                    "active" => return Ok(at),
                    "failed" => {
                        return Err(format!(
                            "kubejoin.service failed:\n{}",
                            journal(vm, "kubejoin", 40)
                        ));
                    }
                    _ => {}
                }
            }
            if !vm.running() {
                return Err(format!(
                    "the VM stopped before the join ended\n{}",
                    vm.console(40)
                ));
            }
            if started.elapsed() > JOIN_TIMEOUT {
                let journals = vm
                    .try_sh(
                        "journalctl --no-pager -o short-monotonic -u kubejoin -u kubelet -u cloud-final | tail -n 60",
                        Duration::from_secs(30),
                    )
                    .map(|(_, o)| o)
                    .unwrap_or_else(|e| e);
                return Err(format!(
                    "no join within {JOIN_TIMEOUT:?}\n{journals}\n{}",
                    vm.console(30)
                ));
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    }

    /// Everything a joined worker must show: cgroup v2 with one cgroup driver, kubelet and
    /// kubejoin active, swap off, the Node registered, exactly one CSR for this token,
    /// approved and issued, and no cgroup error in kubelet's or containerd's journal.
    fn joined_right(&self, vm: &Vm, hostname: &str, token_id: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut expect = |what: &str, ok: bool, detail: String| {
            if !ok {
                problems.push(format!("{what}: {detail}"));
            }
        };
        let fs_type = vm.sh("stat -fc %T /sys/fs/cgroup");
        expect("cgroup v2", fs_type.trim() == "cgroup2fs", fs_type);
        let active = vm.sh("systemctl is-active kubelet.service kubejoin.service || true");
        expect(
            "kubelet and kubejoin active",
            active.split_whitespace().eq(["active", "active"]),
            active.clone(),
        );
        let swaps = vm.sh("swapon --noheadings --show");
        expect("swap off", swaps.trim().is_empty(), swaps);
        let driver = vm.sh("grep -x 'cgroupDriver: systemd' /var/lib/kubelet/config.yaml || true");
        expect(
            "kubelet's cgroup driver systemd",
            !driver.is_empty(),
            driver,
        );
        let runc = vm.sh("containerd config dump | grep SystemdCgroup");
        expect(
            "containerd's runc on systemd's cgroup driver",
            runc.contains("SystemdCgroup = true") && !runc.contains("SystemdCgroup = false"),
            runc,
        );
        let node = self.kubectl(&["get", "node", hostname, "-o", "name"]);
        expect(
            "Node registered",
            node.trim() == format!("node/{hostname}"),
            node,
        );
        let csrs = self.csrs(token_id);
        expect(
            "one CSR, approved and issued",
            csrs.len() == 1 && csrs[0].1,
            format!("{csrs:?}"),
        );
        let errors = cgroup_errors(vm);
        expect("no cgroup error in the journals", errors.is_empty(), errors);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The CSRs requested with this token: (name, approved and issued).
    fn csrs(&self, token_id: &str) -> Vec<(String, bool)> {
        let out = self.cp.kubectl_json(&self.ns, &["get", "csr"]);
        out["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["spec"]["username"] == format!("system:bootstrap:{token_id}"))
            .map(|c| {
                let approved = c["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|x| x["type"] == "Approved"));
                let issued = c["status"]["certificate"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty());
                (
                    c["metadata"]["name"].as_str().unwrap_or("?").to_string(),
                    approved && issued,
                )
            })
            .collect()
    }

    /// The worker's token (single-use, as `token create --output cloud-init` makes it) was
    /// burned by the node once it was in: kubejoin said so, its Secret, Role and
    /// RoleBinding are gone, and the copy cloud-init keeps of the user-data holds a token
    /// the API server refuses. Returns that token.
    fn single_use_token_burned(&self, vm: &Vm, token_id: &str) -> Result<String, String> {
        let said = journal(vm, "kubejoin", 200);
        if !said.contains(&format!(
            "bootstrap token {token_id} deleted on the cluster (single-use)"
        )) {
            return Err(format!(
                "kubejoin did not say it burned token {token_id}:\n{said}"
            ));
        }
        let cached = vm.sh("cat /var/lib/cloud/instance/user-data.txt");
        let Some(token) = cached
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.'))
            .find(|w| w.len() == 23 && w.starts_with(&format!("{token_id}.")))
            .map(str::to_string)
        else {
            return Err(format!(
                "no token {token_id} in cloud-init's cached user-data"
            ));
        };
        if !self.cp.refuses_token_within_30s(&self.ns, &token) {
            return Err("the token of cloud-init's cached user-data still works".into());
        }
        let named = format!("kubejoin:bootstrap-token-{token_id}");
        let gone = support::testbed::wait_for(Duration::from_secs(60), || {
            self.kubectl(&[
                "-n",
                "kube-system",
                "get",
                "role,rolebinding,secret",
                "-o",
                "name",
            ])
            .lines()
            .all(|l| !l.ends_with(&named) && !l.ends_with(&format!("bootstrap-token-{token_id}")))
            .then_some(())
        });
        if gone.is_none() {
            return Err(format!(
                "the token's Secret, Role or RoleBinding {named} is still there"
            ));
        }
        Ok(token)
    }

    /// With the VM off: every bootstrap-token-shaped string on its disks (the burned token
    /// among them, or the scan is blind) is refused by the API server.
    fn no_live_token_on_disk(&self, vm: &Vm, burned: &str) -> Result<String, String> {
        let found = vm.token_shaped_on_disks();
        if !found.contains(burned) {
            return Err(format!(
                "the disk scan did not find the token cloud-init cached ({} token-shaped strings)",
                found.len()
            ));
        }
        let live: Vec<&String> = found
            .iter()
            .filter(|t| !self.cp.refuses_token_within_30s(&self.ns, t))
            .collect();
        if !live.is_empty() {
            return Err(format!(
                "{} token(s) on the VM's disks still work: ids {:?}",
                live.len(),
                live.iter().map(|t| &t[..6]).collect::<Vec<_>>()
            ));
        }
        Ok(format!(
            "{} token-shaped strings on the VM's disks, all refused by the API server",
            found.len()
        ))
    }

    /// A hostNetwork static pod reaches Running and is still running, never restarted,
    /// 70 s later (a cgroup driver mismatch kills it after about a minute).
    fn pod_keeps_running(&self, vm: &Vm, hostname: &str) -> Result<(), String> {
        vm.sh(&format!(
            "cat > /etc/kubernetes/manifests/sleeper.yaml <<'EOF'\n{}EOF",
            support::images::static_pod(POD_IMAGE)
        ));
        let pod = format!("sleeper-{hostname}");
        let state = || {
            self.cp.pod_field(
                &self.ns,
                &pod,
                "{.status.phase} {.status.containerStatuses[0].restartCount}",
            )
        };
        let running = support::testbed::wait_for(Duration::from_secs(600), || {
            (state() == "Running 0").then_some(())
        });
        if running.is_none() {
            return Err(format!(
                "the static pod did not run: {}\n{}",
                state(),
                journal(vm, "kubelet", 30)
            ));
        }
        std::thread::sleep(Duration::from_secs(70));
        let later = state();
        if later != "Running 0" {
            return Err(format!(
                "the static pod did not keep running (phase, restarts): {later}\n{}",
                journal(vm, "kubelet", 30)
            ));
        }
        Ok(())
    }
}

impl World {
    /// Once the Node `hostname` is registered: a pod the cluster creates for it (the
    /// scheduler places it, by a nodeSelector), and the test's network plugin in the guest
    /// as soon as the Node has a pod CIDR (the CNI plugins from the seed in /usr/lib/cni and
    /// /opt/cni/bin, where Debian's and upstream's containerd look, and the conflist of
    /// `podnet`). Returns, from power-on, when the Node turned Ready and when the pod ran.
    fn first_pod(&self, vm: &Vm, hostname: &str) -> Result<(Duration, Duration), String> {
        let pod = format!("first-{hostname}");
        let out = self.cp.run_pod_on(&self.ns, &pod, POD_IMAGE, hostname, &[]);
        if !out.status.success() {
            return Err(format!("kubectl run: {}", support::text(&out)));
        }
        let cidr = support::testbed::wait_for(Duration::from_secs(300), || {
            let c = self.cp.node_field(&self.ns, hostname, "{.spec.podCIDR}");
            (!c.is_empty()).then_some(c)
        })
        .ok_or("the Node got no pod CIDR")?;
        vm.sh(&format!(
            "set -e; mkdir -p /run/seed /usr/lib/cni /opt/cni/bin; mount -o ro LABEL=cidata /run/seed
             tar -C /usr/lib/cni -xf /run/seed/cni.tar; tar -C /opt/cni/bin -xf /run/seed/cni.tar; umount /run/seed
             {}",
            support::podnet::install_script(&cidr)
        ));
        let ready = support::testbed::wait_for(Duration::from_secs(600), || {
            (self.cp.node_ready(&self.ns, hostname) == "True").then(|| vm.booted_at().elapsed())
        })
        .ok_or_else(|| {
            format!(
                "the Node did not turn Ready\n{}",
                journal(vm, "kubelet", 30)
            )
        })?;
        let running = support::testbed::wait_for(Duration::from_secs(600), || {
            (self.cp.pod_field(&self.ns, &pod, "{.status.phase}") == "Running")
                .then(|| vm.booted_at().elapsed())
        })
        .ok_or_else(|| {
            format!(
                "the pod did not run: {}\n{}",
                self.kubectl(&["describe", "pod", &pod]),
                journal(vm, "kubelet", 30)
            )
        })?;
        Ok((ready, running))
    }
}

/// `kubejoin token create --output cloud-init --repo ...`'s user-data as printed (kubejoin
/// from the signed repository, through cloud-init's `apt:` and `packages:`), with a
/// `runcmd` item first for what a worker image would carry: kubelet and the images, from
/// the seed disk. Synced, so that a power cut later does not lose kubelet.
fn user_data(printed: &str) -> String {
    assert!(
        printed.contains(&format!("{REPO_URL}/apt stable main")),
        "{printed}"
    );
    vm::runcmd_first(
        printed,
        "  # What the worker image would carry: kubelet and the images, from the seed disk.\n  - [sh, -c, \"set -e; mkdir -p /run/seed; mount -o ro LABEL=cidata /run/seed; install -m 0755 /run/seed/kubelet /usr/local/bin/kubelet; ctr -n k8s.io images import /run/seed/images.tar; umount /run/seed; sync\"]\n",
    )
}

fn journal(vm: &Vm, unit: &str, lines: usize) -> String {
    vm.try_sh(
        &format!("journalctl --no-pager -o short-monotonic -u {unit} | tail -n {lines}"),
        Duration::from_secs(30),
    )
    .map(|(_, o)| format!("--- {unit}:\n{o}"))
    .unwrap_or_else(|e| e)
}

/// Error lines about cgroups in kubelet's and containerd's journals.
fn cgroup_errors(vm: &Vm) -> String {
    vm.sh(
        // journalctl's own notes (a journal file a power cut left truncated, which it
        // skips) go to its standard error: not the units' lines.
        "journalctl --no-pager -o cat -u kubelet -u containerd 2>/dev/null | grep -i cgroup | grep -E '^E[0-9]{4} |level=error' || true",
    )
}

/// Every file kubejoin writes on a containerd worker with swap in fstab, from its own list
/// (`kubejoin::footprint`): not the run lock (under /run, gone at boot), docker's file, the
/// swap units' masks (links) or the static pods' directory; each edited file's backup too.
fn written() -> Vec<String> {
    let static_pods = kubejoin::kubelet::files::STATIC_POD_PATH;
    let mut paths = Vec::new();
    for w in kubejoin::footprint::written() {
        if w.path.starts_with("/run/")
            || w.path.contains('<')
            || w.path.contains("docker")
            || w.path == static_pods
        {
            continue;
        }
        if w.backup {
            paths.push(format!("{}{}", w.path, kubejoin::ledger::BACKUP_SUFFIX));
        }
        paths.push(w.path);
    }
    paths
}

/// The files of [`written`] in a running guest.
fn files_in_guest(vm: &Vm) -> BTreeMap<String, Option<Vec<u8>>> {
    use base64::Engine;
    written()
        .into_iter()
        .map(|p| {
            let content = vm
                .try_sh(&format!("base64 -w0 {p}"), Duration::from_secs(30))
                .ok()
                .filter(|(code, _)| *code == 0)
                .map(|(_, b)| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .unwrap_or_default()
                });
            (p.to_string(), content)
        })
        .collect()
}

/// After a power cut: every file kubejoin writes is absent, as it was before the join,
/// as the converged join has it, or (its own JSON records) whole JSON, or (the bootstrap
/// kubeconfig, which the converged join has removed) a whole kubeconfig with its token;
/// the torn ones.
fn torn(
    cut: &BTreeMap<String, Option<Vec<u8>>>,
    before: &BTreeMap<String, Option<Vec<u8>>>,
    after: &BTreeMap<String, Option<Vec<u8>>>,
) -> Vec<String> {
    cut.iter()
        .filter_map(|(path, now)| {
            let Some(now) = now else { return None };
            let json =
                path.ends_with(".json") && serde_json::from_slice::<serde_json::Value>(now).is_ok();
            let bootstrap = path == kubejoin::kubelet::files::BOOTSTRAP_KUBECONFIG
                && std::str::from_utf8(now)
                    .ok()
                    .and_then(|t| serde_saphyr::from_str::<serde_json::Value>(t).ok())
                    .is_some_and(|k| k["users"][0]["user"]["token"].is_string());
            let whole = before.get(path) == Some(&Some(now.clone()))
                || after.get(path) == Some(&Some(now.clone()))
                || json
                || bootstrap;
            (!whole).then(|| {
                format!(
                    "{path}: {} bytes, neither as before nor as after the join{}",
                    now.len(),
                    if now.iter().all(|b| *b == 0) {
                        " (all zeros)"
                    } else {
                        ""
                    }
                )
            })
        })
        .collect()
}

/// A Debian 12 worker: first boot to Node registered, a pod that keeps running; then its
/// token is deleted on the cluster and the guest reboots itself: swap stays off, kubelet
/// comes back by itself, kubejoin changes nothing and says so, no second CSR.
fn first_boot_and_reboot(w: &World, release: &str) -> Result<String, String> {
    let hostname = format!("{release}-first-boot");
    let Some((mut vm, token_id)) = w.worker(release, &hostname) else {
        return Ok("skipped".into());
    };
    vm.boot("");
    let registered = w.wait_joined(&mut vm, &hostname)?;
    w.joined_right(&vm, &hostname, &token_id)?;
    let share = vm.sh(
        "journalctl --no-pager -o cat -u kubejoin | grep -i 'own cost\\|cpu' | tail -n 1 || true",
    );
    let phases = vm.sh("kubejoin status | grep '^phases:' || true");
    w.pod_keeps_running(&vm, &hostname)?;
    let cert = vm.sh("readlink -f /var/lib/kubelet/pki/kubelet-client-current.pem; sha256sum $(readlink -f /var/lib/kubelet/pki/kubelet-client-current.pem)");

    let burned = w.single_use_token_burned(&vm, &token_id)?;
    let _ = vm.try_sh(
        "systemd-run --on-active=1 systemctl reboot",
        Duration::from_secs(20),
    );
    if vm.wait_stopped(Duration::from_secs(300)).is_none() {
        return Err(format!("the guest did not reboot\n{}", vm.console(30)));
    }
    let scanned = w.no_live_token_on_disk(&vm, &burned)?;
    vm.boot("");
    vm.wait_agent(Duration::from_secs(600))?;
    let kubelet_up = support::testbed::wait_for(Duration::from_secs(600), || {
        vm.try_sh(
            "systemctl is-active kubelet.service kubejoin.service",
            Duration::from_secs(20),
        )
        .ok()
        .filter(|(code, _)| *code == 0)
        .map(|_| ())
    });
    if kubelet_up.is_none() {
        return Err(format!(
            "after the reboot kubelet and kubejoin are not both active: {}\n{}\n{}",
            vm.sh("systemctl is-active kubelet.service kubejoin.service || true"),
            journal(&vm, "kubejoin", 30),
            journal(&vm, "kubelet", 20)
        ));
    }
    let kubelet_at =
        vm.sh("systemctl show -p ActiveEnterTimestampMonotonic --value kubelet.service");
    // READY=1 comes just before the report is printed: wait for the line.
    let said = || vm.sh("journalctl --no-pager -b -o cat -u kubejoin.service");
    let _ = support::testbed::wait_for(Duration::from_secs(60), || {
        said().contains("already-joined").then_some(())
    });
    let kubejoin_said = said();
    if !kubejoin_said.contains("outcome:       already-joined") {
        return Err(format!(
            "kubejoin at boot did not say the node is already joined:\n{kubejoin_said}"
        ));
    }
    w.joined_right(&vm, &hostname, &token_id)?;
    let cert_again = vm.sh("readlink -f /var/lib/kubelet/pki/kubelet-client-current.pem; sha256sum $(readlink -f /var/lib/kubelet/pki/kubelet-client-current.pem)");
    if cert != cert_again {
        return Err(format!(
            "the client certificate changed across the reboot:\n{cert}\n{cert_again}"
        ));
    }
    let node_ok = w.kubectl(&["get", "node", &hostname, "-o", "jsonpath={.metadata.name}"]);
    if node_ok != hostname {
        return Err(format!("the Node is gone after the reboot: {node_ok:?}"));
    }
    let kubelet_s = kubelet_at.trim().parse::<u64>().unwrap_or(0) as f64 / 1e6;
    Ok(format!(
        "{release}: first boot to Node registered {:.0} s; {}; {}; single-use token burned: {scanned}; reboot (token gone): kubelet active {kubelet_s:.0} s after the kernel started, kubejoin: already joined, same certificate, one CSR",
        registered.as_secs_f64(),
        share.trim(),
        phases.trim()
    ))
}

/// Where a first boot loses its power.
enum Cut {
    /// At a fail point of `kubejoin run` (sysrq `b` from inside: no sync).
    At(String),
    /// This long after power-on, from outside (qemu killed).
    After(Duration),
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Cut::At(point) => write!(f, "at {point}"),
            Cut::After(d) => write!(f, "{} s into the first boot", d.as_secs()),
        }
    }
}

/// A worker whose power is cut during its first boot, then booted again: every file
/// kubejoin writes is absent or whole on the disk the next boot finds, the join
/// converges, one Node and one CSR; with `pod`, a static pod keeps running there.
fn power_cut(w: &World, release: &str, cut: &Cut, n: usize, pod: bool) -> Result<String, String> {
    let hostname = format!("{release}-cut-{n}");
    let Some((mut vm, token_id)) = w.worker(release, &hostname) else {
        return Ok("skipped".into());
    };
    let written = written();
    let paths: Vec<&str> = written.iter().map(String::as_str).collect();
    let before = vm::read_ext4(&vm::image(release).unwrap().join("root.img"), &paths);
    match cut {
        Cut::At(point) => {
            vm.boot(&format!(
                "systemd.setenv=KUBEJOIN_TEST_FAILPOINT={point} systemd.setenv=KUBEJOIN_TEST_FAILPOINT_ACTION=power-cut"
            ));
            if vm.wait_stopped(JOIN_TIMEOUT).is_none() {
                return Err(format!(
                    "no power cut {cut} within {JOIN_TIMEOUT:?}\n{}",
                    journal(&vm, "kubejoin", 30)
                ));
            }
        }
        Cut::After(after) => {
            vm.boot("");
            std::thread::sleep(*after);
            vm.power_cut();
        }
    }
    let on_disk = vm.files_on_disk(&paths);
    vm.boot("");
    let at = |e: String| format!("{release}: power cut {cut}: {e}");
    w.wait_joined(&mut vm, &hostname).map_err(at)?;
    w.joined_right(&vm, &hostname, &token_id).map_err(at)?;
    let torn = torn(&on_disk, &before, &files_in_guest(&vm));
    if !torn.is_empty() {
        return Err(format!(
            "torn files after a power cut {cut}:\n{}",
            torn.join("\n")
        ));
    }
    if pod {
        w.pod_keeps_running(&vm, &hostname).map_err(at)?;
    }
    let present = on_disk.values().filter(|v| v.is_some()).count();
    Ok(format!(
        "{release}: power cut {cut}: {present} of kubejoin's {} files on disk, none torn; converged, one CSR{}",
        written.len(),
        if pod { ", a pod keeps running" } else { "" }
    ))
}

/// CI's sample, two VMs at a time.
#[test]
fn workers_join_on_first_boot_survive_a_reboot_and_a_power_cut() {
    let Some(w) = World::new("sample") else {
        return;
    };
    let results = std::thread::scope(|s| {
        let w = &w;
        let said = &|r: Result<String, String>| {
            match &r {
                Ok(figures) => eprintln!("vm: {figures}"),
                Err(e) => eprintln!("vm: FAILED: {e}"),
            }
            r
        };
        let a = s.spawn(move || said(first_boot_and_reboot(w, "bookworm")));
        let b = s.spawn(move || {
            let point = "recorded:/var/lib/kubelet/config.yaml";
            said(power_cut(w, "trixie", &Cut::At(point.into()), 1, true))
        });
        [a.join().unwrap(), b.join().unwrap()]
    });
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let _ = std::fs::remove_dir_all(&w.dir);
}

/// One line on standard error for a VM's check, `TAG ok: ...` or `TAG FAILED: ...` (the
/// lines the scripts keep), and its outcome for [`support::two_at_a_time`].
fn told(tag: &str, r: Result<String, String>) -> Result<(), String> {
    match &r {
        Ok(line) => eprintln!("{tag} ok: {line}"),
        Err(e) => eprintln!("{tag} FAILED: {e}"),
    }
    r.map(|_| ())
}

/// First boot and reboot on each release of `KUBEJOIN_VM_RELEASES` (default both), with
/// the Kubernetes of `KUBEJOIN_VM_KUBE`, two VMs at a time (`scripts/vm-kubelet.sh`).
#[test]
#[ignore = "a first boot per release, with the kubelet KUBEJOIN_VM_KUBE names: scripts/vm-kubelet.sh"]
fn first_boot_and_reboot_with_each_release() {
    let Some(w) = World::new("kubelet") else {
        return;
    };
    let releases = std::env::var("KUBEJOIN_VM_RELEASES").unwrap_or("bookworm trixie".into());
    let releases: Vec<&str> = releases.split_whitespace().collect();
    let failures = support::two_at_a_time(
        &releases,
        |release| format!("{release} with Kubernetes {}", kube()),
        |release| {
            told(
                &format!("vm-kubelet: {}", kube()),
                first_boot_and_reboot(&w, release),
            )
        },
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let _ = std::fs::remove_dir_all(&w.dir);
}

/// The whole power-cut matrix (`scripts/vm-matrix.sh`): for each release of
/// `KUBEJOIN_VM_RELEASES` (default both), a reference first boot that names every fail
/// point `kubejoin run` passes, then a power cut at each (or at those of
/// `KUBEJOIN_VM_POINTS`, by number), and `KUBEJOIN_VM_RANDOM` (default 4) cuts at random
/// moments of the first boot, two VMs at a time. One line per cut on standard error.
#[test]
#[ignore = "the whole matrix takes hours under TCG: scripts/vm-matrix.sh"]
fn power_cut_matrix() {
    let Some(w) = World::new("matrix") else {
        return;
    };
    let releases = std::env::var("KUBEJOIN_VM_RELEASES").unwrap_or("bookworm trixie".into());
    let random: usize = std::env::var("KUBEJOIN_VM_RANDOM")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let mut failures = Vec::new();
    for release in releases.split_whitespace() {
        let hostname = format!("{release}-reference");
        let (mut vm, token_id) = w.worker(release, &hostname).expect("the image");
        vm.boot("systemd.setenv=KUBEJOIN_TEST_FAILPOINT=list");
        let registered = w.wait_joined(&mut vm, &hostname).unwrap();
        w.joined_right(&vm, &hostname, &token_id).unwrap();
        let points =
            support::fail_points(&vm.sh("journalctl --no-pager -o cat -u kubejoin.service"));
        drop(vm);
        eprintln!(
            "vm-matrix: {release}: reference join, Node registered {:.0} s after power-on; {} fail points: {}",
            registered.as_secs_f64(),
            points.len(),
            points.join(" ")
        );
        let chosen: Vec<(usize, String)> = match std::env::var("KUBEJOIN_VM_POINTS") {
            Ok(list) => list
                .split([',', ' '])
                .filter_map(|n| n.parse::<usize>().ok())
                .filter_map(|n| points.get(n).map(|p| (n, p.clone())))
                .collect(),
            Err(_) => points.iter().cloned().enumerate().collect(),
        };
        let mut cuts: Vec<(usize, Cut)> =
            chosen.into_iter().map(|(n, p)| (n, Cut::At(p))).collect();
        let span = registered.as_secs().max(60);
        for i in 0..random as u64 {
            // Spread over the first boot, from power-on to the Node's registration.
            let start = i * span / random as u64;
            let after =
                start + u64::from_le_bytes(support::random_bytes()) % (span / random as u64 + 1);
            cuts.push((1000 + i as usize, Cut::After(Duration::from_secs(after))));
        }
        let results = support::two_at_a_time(
            &cuts,
            |(n, c)| format!("{release} #{n} {c}"),
            |(n, c)| told("vm-matrix:", power_cut(&w, release, c, *n, false)),
        );
        eprintln!(
            "vm-matrix: {release}: {} cuts, {} converged with no torn file",
            cuts.len(),
            cuts.len() - results.len()
        );
        failures.extend(results);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What a power cut is checked against is kubejoin's own list of what it writes.
#[test]
fn the_files_a_power_cut_is_checked_on_are_kubejoins_own_list() {
    let mut got = written();
    got.sort();
    let mut want = [
        "/var/lib/kubelet/bootstrap-kubeconfig",
        "/var/lib/kubelet/config.yaml",
        "/var/lib/kubelet/config.json",
        "/etc/kubernetes/kubelet.conf.d/50-kubejoin.conf",
        "/etc/systemd/logind.conf.d/90-kubejoin.conf",
        "/etc/kubernetes/pki/ca.crt",
        "/etc/systemd/system/kubelet.service",
        "/etc/containerd/config.toml",
        "/etc/containerd/config.toml.kubejoin-orig",
        "/etc/fstab",
        "/etc/fstab.kubejoin-orig",
        "/etc/modules-load.d/kubejoin.conf",
        "/etc/sysctl.d/90-kubejoin.conf",
        "/var/lib/kubejoin/changes.json",
        "/var/lib/kubejoin/state.json",
    ];
    want.sort();
    assert_eq!(got, want);
}

/// kubeadm's objects on the cluster, made by kubeadm itself (`kubeadm init phase`): the
/// kubeadm-config and kubelet-config ConfigMaps and the RBAC that lets tokens of group
/// `system:bootstrappers:kubeadm:default-node-token` read them and join.
fn kubeadm_objects(w: &World, kubeadm: &std::path::Path) {
    let config = w.dir.join("kubeadm.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.2.2\n  bindPort: 6443\nnodeRegistration:\n  name: control-plane\n  criSocket: unix:///run/containerd/containerd.sock\n---\n\
             apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: {KUBE}\ncontrolPlaneEndpoint: 10.0.2.2:6443\n\
             networking:\n  serviceSubnet: 10.96.0.0/12\n  dnsDomain: cluster.local\n---\n\
             apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
        ),
    )
    .unwrap();
    let admin = w.cp.admin_conf();
    for phase in [
        &["upload-config", "kubeadm"][..],
        &["upload-config", "kubelet"],
        &["bootstrap-token", "--skip-token-print"],
    ] {
        let out = cluster::run(
            cluster::in_netns_of(cluster::Place::pid(&w.ns), kubeadm)
                .args(["init", "phase"])
                .args(phase)
                .arg(format!("--config={}", config.display()))
                .arg(format!("--kubeconfig={}", admin.display())),
        );
        assert!(
            out.status.success(),
            "kubeadm init phase {phase:?}: {}",
            support::text(&out)
        );
    }
    // kubeadm's bootstrap-token phase rewrites cluster-info with the admin kubeconfig's
    // server (this machine's loopback, which no guest reaches), and rebinds
    // kubeadm:kubelet-bootstrap and kubeadm:node-autoapprove-bootstrap to its own token
    // group only: as an operator would, delete cluster-info and let `kubejoin cluster
    // prepare` write it again with the workers' address; prepare then says, and fails on,
    // the two bindings that no longer serve every bootstrap token (both workers' tokens
    // carry kubeadm's group below).
    let server = w.kubectl(&[
        "-n",
        "kube-public",
        "get",
        "configmap",
        "cluster-info",
        "-o",
        "jsonpath={.data.kubeconfig}",
    ]);
    eprintln!(
        "vm: cluster-info after kubeadm's phases names: {}",
        server
            .lines()
            .find(|l| l.contains("server:"))
            .unwrap_or("?")
            .trim()
    );
    w.kubectl(&["-n", "kube-public", "delete", "configmap", "cluster-info"]);
    let out =
        w.cp.kubejoin(&w.ns, &["cluster", "prepare", "--server", SERVER]);
    let said = support::text(&out);
    assert!(
        out.status.code() == Some(2)
            && said.contains("cluster-info                 created")
            && said.contains("bootstrappers-create-csr     FAILED"),
        "cluster prepare after kubeadm's phases: {said}"
    );
}

/// kubeadm's token group: the group its RBAC serves.
const KUBEADM_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The user-data a kubeadm user writes for the same VM, following kubeadm's install guide:
/// kubelet's unit and kubeadm's drop-in, the kernel prerequisites, swap off, containerd's
/// runc on systemd's cgroup driver, then `kubeadm join` with the token and the pin.
fn kubeadm_user_data(token: &str, pin: &str) -> String {
    format!(
        r#"#cloud-config
write_files:
  - path: /etc/systemd/system/kubelet.service
    content: |
      [Unit]
      Description=kubelet: The Kubernetes Node Agent
      Wants=network-online.target
      After=network-online.target
      [Service]
      ExecStart=/usr/local/bin/kubelet
      Restart=always
      StartLimitInterval=0
      RestartSec=10
      [Install]
      WantedBy=multi-user.target
  - path: /etc/systemd/system/kubelet.service.d/10-kubeadm.conf
    content: |
      [Service]
      Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
      Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
      EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
      EnvironmentFile=-/etc/default/kubelet
      ExecStart=
      ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
  - path: /etc/modules-load.d/k8s.conf
    content: |
      overlay
      br_netfilter
  - path: /etc/sysctl.d/k8s.conf
    content: |
      net.ipv4.ip_forward = 1
runcmd:
  - [sh, -c, "set -e; mkdir -p /run/seed; mount -o ro LABEL=cidata /run/seed; install -m 0755 /run/seed/kubelet /run/seed/kubeadm /usr/local/bin/; ctr -n k8s.io images import /run/seed/images.tar; umount /run/seed"]
  - [sh, -c, "swapoff -a; sed -i '/ swap / s/^/#/' /etc/fstab"]
  - [sh, -c, "modprobe overlay; modprobe br_netfilter; sysctl --system >/dev/null"]
  - [sh, -c, "containerd config default > /etc/containerd/config.toml; sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml; systemctl restart containerd"]
  - [sh, -c, "systemctl daemon-reload; systemctl enable kubelet"]
  - [sh, -c, "kubeadm join 10.0.2.2:6443 --token {token} --discovery-token-ca-cert-hash {pin} > /var/log/kubeadm-join.log 2>&1; echo $? > /var/log/kubeadm-join.status; sync"]
"#
    )
}

/// What a joined node ends up with: kubelet's configuration, the files under kubelet's
/// and Kubernetes' directories, and a bootstrap credential left on disk or not.
fn node_state(vm: &Vm) -> String {
    vm.sh(
        "echo '--- /var/lib/kubelet/config.yaml'; cat /var/lib/kubelet/config.yaml; \
         echo '--- files'; find /etc/kubernetes /var/lib/kubelet /etc/systemd/system/kubelet.service* -maxdepth 2 \\( -type f -o -type l \\) 2>/dev/null | grep -v -e '/pods/' -e '/plugins' -e 'cpu_manager' -e 'memory_manager' -e 'dra_manager' | sort; \
         echo '--- a bootstrap token on disk'; grep -rlsE --exclude=config.toml.example '[a-z0-9]{6}\\.[a-z0-9]{16}' /etc/kubernetes /var/lib/kubelet /etc/kubejoin 2>/dev/null || echo none",
    )
}

/// Beside kubeadm: the same image, the same cluster (given kubeadm's objects), one worker
/// joined by kubejoin from `token create --output cloud-init`, one by `kubeadm join`
/// v1.36.2 with a token of kubeadm's group and the same pin, side by side, with the same
/// pod network (the test's plugin, installed once the Node has its pod CIDR). Prints, from
/// power-on, Node registered, Node Ready and the first pod the cluster created Running for
/// each, and what each node ends up with.
#[test]
#[ignore = "needs kubeadm v1.36.2 (scripts/real-kubernetes.sh kubeadm-1.36): scripts/vm-beside-kubeadm.sh"]
fn beside_kubeadm() {
    let Some(w) = World::with("kubeadm", true) else {
        return;
    };
    let bin = cluster::binaries(KUBE).unwrap();
    let kubeadm = bin.join("kubeadm");
    assert!(
        kubeadm.exists(),
        "no {}: run scripts/real-kubernetes.sh kubeadm-1.36",
        kubeadm.display()
    );
    kubeadm_objects(&w, &kubeadm);
    let release = std::env::var("KUBEJOIN_VM_RELEASE").unwrap_or_else(|_| "bookworm".into());
    let release = release.as_str();
    let (kubejoin_side, kubeadm_side) = std::thread::scope(|s| {
        let w = &w;
        let ours = s.spawn(move || -> Result<String, String> {
            let hostname = "kubejoin-worker";
            let (mut vm, token_id) = w.worker_in(release, hostname, &[KUBEADM_GROUP]).unwrap();
            vm.boot("");
            let at = w.wait_joined(&mut vm, hostname)?;
            w.joined_right(&vm, hostname, &token_id)?;
            let (ready, running) = w.first_pod(&vm, hostname)?;
            let cost = vm.sh(
                "journalctl --no-pager -o cat -u kubejoin | grep \"kubejoin's own cost\" | tail -n1",
            );
            let kubejoin_active = vm.sh(
                "systemctl show -p ActiveEnterTimestampMonotonic --value kubejoin.service",
            );
            Ok(format!(
                "kubejoin ({release}): boot to Node registered {:.0} s, Ready {:.0} s, first pod Running {:.0} s; {}; kubejoin.service active at {} s of the guest's clock\n{}",
                at.as_secs_f64(),
                ready.as_secs_f64(),
                running.as_secs_f64(),
                cost.trim(),
                kubejoin_active.trim().parse::<u64>().unwrap_or(0) / 1_000_000,
                node_state(&vm)
            ))
        });
        let theirs = s.spawn(move || -> Result<String, String> {
            let hostname = "kubeadm-worker";
            let out = w.cp.kubejoin(
                &w.ns,
                &[
                    "token",
                    "create",
                    "--output",
                    "json",
                    "--groups",
                    KUBEADM_GROUP,
                ],
            );
            assert!(out.status.success(), "{}", support::text(&out));
            let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let token = created["token"].as_str().unwrap();
            let pin = created["ca_cert_hashes"][0].as_str().unwrap();
            let dir = w.dir.join(hostname);
            let seed = vm::seed_disk(
                &dir,
                &kubeadm_user_data(token, pin),
                hostname,
                &[
                    ("kubeadm", &kubeadm),
                    ("kubelet", &w.kubelet),
                    ("images.tar", &w.images),
                    ("cni.tar", w.cni.as_ref().unwrap()),
                ],
            );
            let mut vm = Vm::create(hostname, &dir, &vm::image(release).unwrap(), &seed, &w.ns);
            vm.boot("");
            let registered = support::testbed::wait_for(JOIN_TIMEOUT, || {
                (!w.kubectl(&["get", "node", hostname, "-o", "name"])
                    .is_empty())
                .then(|| vm.booted_at().elapsed())
            });
            let log = vm
                .try_sh(
                    "cat /var/log/kubeadm-join.status /var/log/kubeadm-join.log 2>&1 | tail -n 40",
                    Duration::from_secs(30),
                )
                .map(|(_, o)| o)
                .unwrap_or_else(|e| e);
            let Some(at) = registered else {
                return Err(format!("kubeadm's worker never registered:\n{log}"));
            };
            let (ready, running) = w.first_pod(&vm, hostname)?;
            // kubeadm join returns once kubelet has its certificate; wait for its status file.
            let done = support::testbed::wait_for(Duration::from_secs(300), || {
                vm.try_sh("cat /var/log/kubeadm-join.status", Duration::from_secs(20))
                    .ok()
                    .filter(|(code, _)| *code == 0)
                    .map(|(_, s)| s.trim().to_string())
            });
            Ok(format!(
                "kubeadm join ({release}): boot to Node registered {:.0} s, Ready {:.0} s, first pod Running {:.0} s; exit status {}\n{}\n{}",
                at.as_secs_f64(),
                ready.as_secs_f64(),
                running.as_secs_f64(),
                done.unwrap_or_else(|| "none".into()),
                vm.sh("tail -n 12 /var/log/kubeadm-join.log"),
                node_state(&vm)
            ))
        });
        (ours.join().unwrap(), theirs.join().unwrap())
    });
    println!(
        "=== kubejoin\n{}",
        kubejoin_side.clone().unwrap_or_else(|e| e)
    );
    println!(
        "=== kubeadm\n{}",
        kubeadm_side.clone().unwrap_or_else(|e| e)
    );
    assert!(kubejoin_side.is_ok() && kubeadm_side.is_ok());
}
