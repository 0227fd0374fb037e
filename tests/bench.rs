//! The README's cost figures, measured side by side against a REAL control plane (v1.20.2
//! from `scripts/real-kubernetes.sh`, kubeadm included) in a testbed: `kubejoin discover`,
//! curl's floor (the same fetches, nothing verified), and kubeadm's own discovery
//! (`kubeadm join phase preflight`), alternating, ROUNDS runs each, medians of wall time,
//! peak RSS and CPU time (`/usr/bin/time`); then `kubejoin run`'s whole join with a real
//! kubelet, its own CPU time and peak RSS as it reports them.
//!
//! A benchmark, not a test: ignored by default. `bash scripts/bench.sh` builds the
//! release binary and runs it (KUBEJOIN_TEST_BIN, ROUNDS).

mod support;

use std::time::Duration;

use support::cluster::{self, ControlPlane, configure, host_sysctls, pin_sysctls, worker};
use support::testbed::{self, Testbed, wait_for};
use support::text;

const CLUSTER_INFO: &str =
    "https://127.0.0.1:6443/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// One run of `command` in the testbed: wall seconds (`date +%s%N` around it), peak RSS
/// (KB, `/usr/bin/time`), CPU seconds (bash's `times`, ms). It must succeed, or with
/// `done` print that line (kubeadm: its discovery succeeded).
fn measure(tb: &Testbed, command: &str, done: Option<&str>) -> (f64, u64, f64) {
    let out = tb.sh(&format!(
        "s=$(date +%s%N); /usr/bin/time -o /root/time -f %M bash -c '{command} >/root/out 2>&1; rc=$?; times >/root/times; exit $rc'; echo $? >/root/rc; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >/root/wall"
    ));
    assert!(out.status.success(), "{command}: {}", text(&out));
    let read = |f: &str| String::from_utf8_lossy(&tb.read(f).unwrap()).into_owned();
    let said = read("/root/out");
    assert!(
        read("/root/rc").trim() == "0" || done.is_some_and(|d| said.contains(d)),
        "{command}: {said}"
    );
    let wall = read("/root/wall").trim().parse::<f64>().unwrap() / 1e6;
    let rss = read("/root/time")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    // `times`: the shell's own user and sys, then its children's, as 0m0.012s.
    let secs = |t: &str| {
        let (m, s) = t.trim_end_matches('s').split_once('m').unwrap();
        m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
    };
    let times = read("/root/times");
    let children: Vec<&str> = times.lines().nth(1).unwrap().split_whitespace().collect();
    (wall, rss, secs(children[0]) + secs(children[1]))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "a benchmark: bash scripts/bench.sh"]
fn discovery_and_join_side_by_side() {
    let Some(bin) = cluster::binaries("v1.20.2") else {
        return;
    };
    let kubeadm = bin.join("kubeadm");
    assert!(
        kubeadm.exists(),
        "{}: run scripts/real-kubernetes.sh 1.20",
        kubeadm.display()
    );
    if !testbed::available() {
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let _swap = testbed::lock_swap().unwrap();
    let kernel_before = host_sysctls();
    let tb = worker(&bin).boot().unwrap();
    pin_sysctls(&tb);
    let cp = ControlPlane::start(&tb, "v1.20.2", &bin);
    configure(&tb, &cp, "containerd", "");
    tb.write("/root/ca.crt", cp.ca_pem(), 0o644);
    // Warm: the signer has signed cluster-info, every binary is in the page cache.
    let signed = wait_for(Duration::from_secs(60), || {
        tb.exec(&["kubejoin", "discover"])
            .status
            .success()
            .then_some(())
    });
    assert!(signed.is_some(), "cluster-info was never signed");

    let (id, pin) = (cp.token(), cp.ca_pin());
    // kubeadm's preflight phase reads kubeadm-config after its discovery, and a cluster
    // kubeadm did not make has none: it fails there, one request after discovery is done.
    let kubeadm_done = Some("[preflight] Reading configuration from the cluster");
    let candidates: Vec<(&str, String)> = vec![
        // What the measuring itself costs (a shell, /usr/bin/time): subtracted from all.
        ("nothing", "true".into()),
        ("kubejoin discover (1 request)", "kubejoin discover".into()),
        (
            "kubejoin discover, pinned_refetch (2)",
            "kubejoin discover --config /root/two.toml --token-file /etc/kubejoin/token".into(),
        ),
        (
            "curl, 1 fetch (unverified: a floor)",
            format!("curl -sfk -o /dev/null {CLUSTER_INFO}"),
        ),
        (
            "curl, 2 fetches (the second pinned)",
            format!(
                "curl -sfk -o /dev/null {CLUSTER_INFO} && curl -sf --cacert /root/ca.crt -o /dev/null {CLUSTER_INFO}"
            ),
        ),
        (
            "kubeadm v1.20.2 join phase preflight",
            format!(
                "{} join phase preflight 127.0.0.1:6443 --token {id} --discovery-token-ca-cert-hash {pin} --ignore-preflight-errors=all",
                kubeadm.display()
            ),
        ),
    ];
    // kubejoin's configuration with kubeadm's flow, beside the default one.
    let config = String::from_utf8(tb.read("/etc/kubejoin/config.toml").unwrap()).unwrap();
    tb.write(
        "/root/two.toml",
        config.replace("[cluster]\n", "[cluster]\npinned_refetch = true\n"),
        0o600,
    );

    let mut samples: Vec<Vec<(f64, u64, f64)>> = vec![Vec::new(); candidates.len()];
    for _ in 0..rounds {
        for (i, (_, command)) in candidates.iter().enumerate() {
            let done = if i == candidates.len() - 1 {
                kubeadm_done
            } else {
                None
            };
            samples[i].push(measure(&tb, command, done));
        }
    }
    let wall_of = |s: &[(f64, u64, f64)]| median(s.iter().map(|x| x.0).collect());
    let cpu_of = |s: &[(f64, u64, f64)]| median(s.iter().map(|x| x.2).collect());
    let (base_wall, base_cpu) = (wall_of(&samples[0]), cpu_of(&samples[0]));
    let kubeadm_wall = wall_of(samples.last().unwrap()) - base_wall;
    println!(
        "\nDiscovery against a real kube-apiserver v1.20.2 on loopback, medians of {rounds} alternating runs, \
         less the measuring shell's own {:.1} ms and {:.0} ms CPU:\n",
        base_wall * 1000.0,
        base_cpu * 1000.0
    );
    println!("| | wall | vs kubeadm | peak RSS | CPU (user + sys) |");
    println!("|---|---|---|---|---|");
    for ((name, _), s) in candidates.iter().zip(&samples).skip(1) {
        let wall = wall_of(s) - base_wall;
        let rss = median(s.iter().map(|x| x.1 as f64).collect());
        let cpu = (cpu_of(s) - base_cpu).max(0.0);
        println!(
            "| {name} | {:.1} ms | {:.3}x | {:.1} MB | {:.0} ms |",
            wall * 1000.0,
            wall / kubeadm_wall,
            rss / 1024.0,
            cpu * 1000.0
        );
    }

    // The whole join, once: its wall time is the waits (the signer has long signed here),
    // its own cost what kubejoin reports.
    let started = std::time::Instant::now();
    let out = tb.exec(&["kubejoin", "run"]);
    let wall = started.elapsed();
    let report = text(&out);
    assert!(report.contains("outcome:       joined"), "{report}");
    let own = report
        .lines()
        .find_map(|l| l.split("kubejoin's own cost: ").nth(1))
        .and_then(|l| l.split(" phase=").next())
        .unwrap_or("?")
        .to_string();
    let phases = report
        .lines()
        .find(|l| l.starts_with("phases:"))
        .unwrap_or_default()
        .to_string();
    println!(
        "\n`kubejoin run` with a real kubelet (v1.20.2, containerd, cluster-info already signed): \
         {:.2} s wall; kubejoin's own cost: {own}\n{phases}\n",
        wall.as_secs_f64()
    );

    drop(cp);
    drop(tb);
    assert_eq!(
        host_sysctls(),
        kernel_before,
        "this machine's kernel settings"
    );
}
