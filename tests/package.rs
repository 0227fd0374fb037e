//! The packages `packaging/build.sh` makes (CI builds them before the tests): lintian and
//! rpmlint, their files and scripts, and a worker joined by nothing but the example
//! cloud-init user-data installing the .deb in a testbed.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use apiserver_double::REAL_TOKEN_SECRET;
use support::node::api;
use support::testbed::{self, Testbed};
use support::text;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The newest file in `dir` ending in `suffix`.
fn built(dir: &str, suffix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop()
}

/// The .deb and .rpm, or `None` (test skipped outside CI) when they were not built.
fn packages() -> Option<(PathBuf, PathBuf)> {
    match (
        built("target/debian", ".deb"),
        built("target/generate-rpm", ".rpm"),
    ) {
        (Some(deb), Some(rpm)) => Some((deb, rpm)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("no packages under target/: run bash packaging/build.sh first")
        }
        _ => {
            eprintln!("SKIPPED (packages): run bash packaging/build.sh first");
            None
        }
    }
}

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is missing: apt-get install lintian rpm rpmlint");
        }
        eprintln!("SKIPPED: {name} is missing");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    text(&out)
}

/// The README's figure for the release binary ("The release binary both carry is N
/// bytes") is within 5 % of the one `packaging/build.sh` built.
#[test]
fn the_readme_gives_the_release_binarys_size() {
    let Some(_) = packages() else { return };
    let bin = root().join("target/release/kubejoin");
    let size = std::fs::metadata(&bin)
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
        .len();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let key = "The release binary both carry is ";
    let at = flat
        .find(key)
        .expect("the README gives the release binary's size")
        + key.len();
    let said: u64 = flat[at..]
        .split(" bytes")
        .next()
        .unwrap()
        .replace(' ', "")
        .parse()
        .expect("a number of bytes");
    let off = size.abs_diff(said) as f64 / size as f64;
    assert!(
        off <= 0.05,
        "the README says the release binary is {said} bytes; it is {size} ({:.1} % off): update \"Install and configure\"",
        off * 100.0
    );
}

#[test]
fn the_deb_passes_lintian() {
    let Some((deb, _)) = packages() else { return };
    if !tool("lintian") {
        return;
    }
    let report = run(Command::new("lintian")
        .arg("--tag-display-limit")
        .arg("0")
        .arg(&deb));
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    // Accepted: kubejoin is not in the Debian archive, so there is no ITP bug to close.
    assert_eq!(
        findings,
        [
            "W: kubejoin: initial-upload-closes-no-bugs [usr/share/doc/kubejoin/changelog.Debian.gz:1]"
        ],
        "{report}"
    );
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/kubejoin",
        "./usr/lib/systemd/system/kubejoin.service",
        "./etc/kubejoin/config.toml.example",
        "./usr/share/man/man5/kubejoin-config.toml.5.gz",
        "./usr/share/man/man8/kubejoin.8.gz",
        "./usr/share/man/man8/kubejoin-run.8.gz",
        "./usr/share/man/man8/kubejoin-reset.8.gz",
        "./usr/share/man/man8/kubejoin-config-init.8.gz",
        "./usr/share/man/man8/kubejoin-cluster-prepare.8.gz",
        "./usr/share/man/man8/kubejoin-token-create.8.gz",
        "./usr/share/man/man8/kubejoin-doctor.8.gz",
        "./usr/share/bash-completion/completions/kubejoin",
        "./usr/share/zsh/vendor-completions/_kubejoin",
        "./usr/share/fish/vendor_completions.d/kubejoin.fish",
        "./usr/share/doc/kubejoin/README.md",
        "./usr/share/doc/kubejoin/copyright",
    ] {
        assert!(contents.contains(path), "{path} not in:\n{contents}");
    }
    let tmp = std::env::temp_dir().join(format!("kubejoin-deb-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(&tmp)
            .status()
            .unwrap()
            .success()
    );
    let conffiles = std::fs::read_to_string(tmp.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/kubejoin/config.toml.example");
    let postinst = std::fs::read_to_string(tmp.join("postinst")).unwrap();
    assert!(
        postinst.contains("deb-systemd-helper enable kubejoin.service"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "never starts a join at install time"
    );
    let postrm = std::fs::read_to_string(tmp.join("postrm")).unwrap();
    assert!(postrm.contains("rm -rf /etc/kubejoin"), "{postrm}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn the_rpm_has_the_same_files_and_scripts_and_passes_rpmlint() {
    let Some((_, rpm)) = packages() else { return };
    if !tool("rpm") || !tool("rpmlint") {
        return;
    }
    let files = run(Command::new("rpm").arg("-qpl").arg(&rpm));
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [
            "/etc/kubejoin/config.toml.example",
            "/usr/bin/kubejoin",
            "/usr/lib/systemd/system/kubejoin.service",
            "/usr/share/bash-completion/completions/kubejoin",
            "/usr/share/doc/kubejoin/README.md",
            "/usr/share/fish/vendor_completions.d/kubejoin.fish",
            "/usr/share/licenses/kubejoin/LICENSE",
            "/usr/share/man/man5/kubejoin-config.toml.5.gz",
            "/usr/share/man/man8/kubejoin-cluster-prepare.8.gz",
            "/usr/share/man/man8/kubejoin-cluster.8.gz",
            "/usr/share/man/man8/kubejoin-completions.8.gz",
            "/usr/share/man/man8/kubejoin-config-init.8.gz",
            "/usr/share/man/man8/kubejoin-config.8.gz",
            "/usr/share/man/man8/kubejoin-discover.8.gz",
            "/usr/share/man/man8/kubejoin-doctor.8.gz",
            "/usr/share/man/man8/kubejoin-manpage.8.gz",
            "/usr/share/man/man8/kubejoin-plan.8.gz",
            "/usr/share/man/man8/kubejoin-preflight.8.gz",
            "/usr/share/man/man8/kubejoin-reset.8.gz",
            "/usr/share/man/man8/kubejoin-run.8.gz",
            "/usr/share/man/man8/kubejoin-status.8.gz",
            "/usr/share/man/man8/kubejoin-token-create.8.gz",
            "/usr/share/man/man8/kubejoin-token-delete.8.gz",
            "/usr/share/man/man8/kubejoin-token-list.8.gz",
            "/usr/share/man/man8/kubejoin-token.8.gz",
            "/usr/share/man/man8/kubejoin.8.gz",
            "/usr/share/zsh/site-functions/_kubejoin",
        ],
        "{files}"
    );
    let scripts = run(Command::new("rpm").arg("-qp").arg("--scripts").arg(&rpm));
    assert!(
        scripts.contains("systemctl enable kubejoin.service"),
        "{scripts}"
    );
    assert!(
        scripts.contains("systemctl disable --now kubejoin.service"),
        "{scripts}"
    );
    assert!(
        !scripts.contains("systemctl start"),
        "never starts a join at install time"
    );
    let config = run(Command::new("rpm").args(["-qp", "--configfiles"]).arg(&rpm));
    assert_eq!(config.trim(), "/etc/kubejoin/config.toml.example");
    let lint = run(Command::new("rpmlint")
        .arg("-r")
        .arg(root().join("packaging/rpm/rpmlintrc"))
        .arg(&rpm));
    assert!(lint.contains(" 0 errors, 0 warnings"), "{lint}");
}

/// The example user-data, pointed at the double on the testbed's loopback.
fn example_user_data() -> String {
    std::fs::read_to_string(root().join("examples/cloud-init/user-data.yaml"))
        .unwrap()
        .replace("https://203.0.113.10:6443", "https://127.0.0.1:6443")
}

#[test]
fn the_example_user_data_installs_the_deb_and_joins() {
    let Some((deb, _)) = packages() else { return };
    if !testbed::available() {
        return;
    }
    let user_data = example_user_data();
    assert!(user_data.contains("https://127.0.0.1:6443"));
    // A worker image: docker.io (so containerd), the kubelet stand-in, the .deb where the
    // user-data expects it. Nothing of kubejoin is installed or configured.
    let mut tb = Testbed::builder()
        .with_docker(true)
        .with_kubelet_standin("/usr/local/bin/kubelet")
        .with_file(
            "/var/cache/kubejoin/kubejoin.deb",
            std::fs::read(&deb).unwrap(),
            0o644,
        )
        .with_cloud_init(user_data)
        .boot_timeout(Duration::from_secs(180))
        .boot_no_wait()
        .unwrap();
    let _api = api(&tb, apiserver_double::ApiServer::builder());
    // Boot ends once cloud-init is done and kubejoin.service is ready.
    tb.wait_booted(Duration::from_secs(180)).unwrap();

    assert!(text(&tb.exec(&["cloud-init", "status"])).contains("status: done"));
    assert!(
        text(&tb.exec(&["dpkg-query", "-W", "-f", "${Status}", "kubejoin"]))
            .contains("install ok installed")
    );
    assert_eq!(tb.unit_state("kubejoin.service"), "active exited");
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    // In, the bootstrap credentials are gone: kubelet has its own.
    assert!(tb.read("/var/lib/kubelet/bootstrap-kubeconfig").is_err());
    let inv = testbed::wait_for(Duration::from_secs(10), || tb.kubelet_invocation()).unwrap();
    assert_eq!(inv["bootstrap"]["token_id"], "0ve35r");

    // The join's story, phase by phase, in the journal; the secret nowhere in it.
    let story = text(&tb.exec(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-u",
        "kubejoin.service",
    ]));
    for line in [
        "phase preflight took",
        "preparing this host: swap, kernel prerequisites, container runtime",
        "edit /etc/containerd/config.toml",
        "discovery done in",
        "phase kubelet took",
        "wrote /var/lib/kubelet/bootstrap-kubeconfig",
        "start job for kubelet.service: done",
        "kubelet has its client certificate for system:node:testbed-",
        "is registered (NotReady: no network plugin yet, expected until one is installed) and kubelet.service is active, API server https://127.0.0.1:6443",
    ] {
        assert!(story.contains(line), "{line:?} not in:\n{story}");
    }
    let all = tb.journal("kubejoin.service");
    assert!(
        !all.contains(REAL_TOKEN_SECRET),
        "the token secret is in the journal"
    );
    let status = text(&tb.exec(&["systemctl", "status", "--no-pager", "kubejoin.service"]));
    assert!(status.contains("active (exited)"), "{status}");
}

/// `packaging/repo.sh` makes a signed apt repository (a test key), and a worker whose
/// user-data is `kubejoin config init --output cloud-init --repo ... --repo-key ...`
/// installs kubejoin from it through cloud-init's own `apt:` and `packages:` (real apt,
/// checking the InRelease signature against the key the user-data carries), and joins. A
/// copy of the repository whose InRelease was changed is refused by apt.
#[test]
fn the_signed_repository_installs_through_cloud_init() {
    let Some(_) = packages() else { return };
    if !(tool("apt-ftparchive") && tool("createrepo_c") && testbed::available()) {
        return;
    }
    let repo =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("repo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    let made = run(Command::new("bash")
        .arg(root().join("packaging/repo.sh"))
        .arg("--test-key")
        .arg(&repo));
    assert!(
        repo.join("apt/dists/stable/InRelease").exists()
            && repo.join("rpm/repodata/repomd.xml.asc").exists(),
        "{made}"
    );
    let token_file = repo.join("token");
    std::fs::write(
        &token_file,
        format!("{}.{REAL_TOKEN_SECRET}\n", apiserver_double::REAL_TOKEN_ID),
    )
    .unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubejoin"))
        .args([
            "config",
            "init",
            "--server",
            "https://127.0.0.1:6443",
            "--ca-cert-hash",
            "sha256:c5a7d6bff8b0f36878bb9a89ecdb489acb3bce12e8944d37f06d88cb8d80564b",
            "--output",
            "cloud-init",
            "--repo",
            &format!("file://{}", repo.display()),
        ])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--repo-key")
        .arg(repo.join("kubejoin-archive-keyring.asc"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let user_data = String::from_utf8(out.stdout).unwrap();
    // The user-data as printed. The machine's own apt sources lead nowhere from a testbed
    // (no network): emptied there, so that only the repository's is read.
    let mut builder = Testbed::builder()
        .with_docker(true)
        .with_kubelet_standin("/usr/local/bin/kubelet");
    let lists = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([PathBuf::from("/etc/apt/sources.list")]);
    for list in lists.filter(|p| p.exists()) {
        builder = builder.with_file(list, "", 0o644);
    }
    let mut tb = builder
        .with_cloud_init(user_data)
        .boot_timeout(Duration::from_secs(240))
        .boot_no_wait()
        .unwrap();
    let _api = api(&tb, apiserver_double::ApiServer::builder());
    tb.wait_booted(Duration::from_secs(240)).unwrap();
    let policy = text(&tb.exec(&["apt-cache", "policy", "kubejoin"]));
    assert!(
        text(&tb.exec(&["dpkg-query", "-W", "-f", "${Status}", "kubejoin"]))
            .contains("install ok installed"),
        "{policy}\n{}",
        text(&tb.exec(&["tail", "-n", "40", "/var/log/cloud-init-output.log"]))
    );
    assert!(
        policy.contains(&format!("file:{}/apt stable/main", repo.display())),
        "{policy}"
    );
    assert_eq!(tb.unit_state("kubejoin.service"), "active exited");
    assert_eq!(tb.unit_state("kubelet.service"), "active running");

    // A changed InRelease: its signature no longer holds, and apt refuses the repository.
    let bad = tb.sh(&format!(
        "set -e; rm -rf /tmp/bad; cp -r {}/apt /tmp/bad
         sed -i 's/^Suite: stable/Suite: stabIe/' /tmp/bad/dists/stable/InRelease
         echo 'deb [signed-by=/etc/apt/keyrings/kubejoin.asc] file:/tmp/bad stable main' > /tmp/bad.list
         apt-get update -o Dir::Etc::sourcelist=/tmp/bad.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 2>&1 || echo \"apt-get exited $?\"",
        repo.display()
    ));
    let said = text(&bad);
    assert!(
        said.contains("apt-get exited 100") && said.contains("BADSIG"),
        "{said}"
    );
    drop(tb);
    let _ = std::fs::remove_dir_all(&repo);
}
