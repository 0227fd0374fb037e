//! A herd of real `kubejoin discover` processes against the API server double admitting a
//! fixed number of requests per second (the rest get `429 Retry-After: 1`): when the last
//! one succeeded, and how many requests each sent. The double serves on loopback.
//!
//! ```text
//! cargo build --release && cargo run --release --example herd_real -- [AGENTS] [RATE]
//! ```
//!
//! AGENTS defaults to 200 and RATE to 50. Both flows run, one after the other: one
//! request per discovery (kubejoin's default) and kubeadm's two (`pinned_refetch`). The
//! binary is `KUBEJOIN_BIN`, else `target/release/kubejoin`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use apiserver_double::{ApiServer, REAL_TOKEN_ID, REAL_TOKEN_SECRET};

fn main() {
    let mut args = std::env::args().skip(1);
    let agents: usize = args.next().map_or(200, |a| a.parse().expect("AGENTS"));
    let rate: f64 = args.next().map_or(50.0, |a| a.parse().expect("RATE"));
    let bin = std::env::var_os("KUBEJOIN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/kubejoin"));
    assert!(
        bin.exists(),
        "{}: build it first (cargo build --release)",
        bin.display()
    );

    let dir = std::env::temp_dir().join(format!("kubejoin-herd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}\n")).unwrap();
    let one = dir.join("one.toml");
    std::fs::write(&one, "").unwrap();
    let two = dir.join("two.toml");
    std::fs::write(&two, "[cluster]\npinned_refetch = true\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [&token, &one, &two] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let pin = apiserver_double::real_ca_pin();

    println!("{agents} kubejoin discover processes, API admitting {rate} requests/s\n");
    println!("| flow | all succeeded | ideal | requests per agent | failed |");
    println!("|---|---|---|---|---|");
    for (flow, config, fetches) in [
        ("one request (default)", &one, 1.0),
        ("two (pinned_refetch)", &two, 2.0),
    ] {
        let api = ApiServer::builder()
            .token(REAL_TOKEN_ID, REAL_TOKEN_SECRET)
            .admit_per_second(rate)
            .start()
            .unwrap();
        // Let the bucket fill: it starts full, as a rested server's does.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let url = api.url();
        let started = Instant::now();
        let children: Vec<_> = (0..agents)
            .map(|_| {
                Command::new(&bin)
                    .args(["discover", "--config"])
                    .arg(config)
                    .args(["--server", &url, "--ca-cert-hash", &pin, "--timeout", "5m"])
                    .arg("--token-file")
                    .arg(&token)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("kubejoin runs")
            })
            .collect();
        let mut failed = 0;
        for mut c in children {
            if !c.wait().unwrap().success() {
                failed += 1;
            }
        }
        let took = started.elapsed().as_secs_f64();
        let ideal = (agents as f64 * fetches - rate).max(0.0) / rate;
        println!(
            "| {flow} | {took:.1} s ({:.2}x) | {ideal:.1} s | {:.2} | {failed} |",
            took / ideal.max(0.001),
            api.requests().len() as f64 / agents as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
