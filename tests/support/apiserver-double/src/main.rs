//! `apiserver-double`: the kube-apiserver double as a process, for the demo, the testbed
//! and manual experiments. Prints `listening on https://ADDR` once it serves.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use apiserver_double::{ApiServer, Fault, Pki};

const USAGE: &str = "\
usage: apiserver-double [--listen ADDR] [--pki real|impostor|wrong-name|expired|relay-without-key|DIR] [--later-pki ...]
                        [--token ID.SECRET]... [--sign-after SECONDS] [--forge]
                        [--fault FAULT]... [--always FAULT]
                        [--advertise URL] [--admit PER_SECOND] [--print-pin]

Serves kube-public/cluster-info like kube-apiserver v1.20, signed for each --token.
  --listen ADDR      default 127.0.0.1:6443
  --pki NAME|DIR     TLS identity: real (default: the captured cluster's CA and key),
                     impostor, wrong-name, expired, relay-without-key, or a directory with ca.crt, apiserver.crt, apiserver.key
  --later-pki ...    identity presented from the second TLS connection on
  --sign-after S     the signatures appear S seconds after start (bootstrap signer lag)
  --admit N          admit N requests/s (bursts of N); the rest get 429 Retry-After: 1
  --forge            sign with a wrong secret
  --fault F          misbehave once (in order): refuse, tls-stall, slow-headers, goaway,
                     stall, reset, trickle, huge, garbage, wrong-type, redirect=URL,
                     429:N, or a status code
  --always F         misbehave on every request after the queued faults
  --advertise URL    server written into cluster-info's kubeconfig
  --print-pin        print the CA pin (sha256:...) of the real cluster and exit";

fn pki(arg: &str) -> Result<Pki, String> {
    Ok(match arg {
        "real" => Pki::real(),
        "impostor" => Pki::impostor(),
        "wrong-name" => Pki::wrong_name(),
        "expired" => Pki::expired(),
        "relay-without-key" => Pki::relay_without_key(),
        dir => {
            let d = PathBuf::from(dir);
            Pki::from_files(
                &d.join("ca.crt"),
                &d.join("apiserver.crt"),
                &d.join("apiserver.key"),
            )
            .map_err(|e| e.to_string())?
        }
    })
}

fn run() -> Result<(), String> {
    let mut builder = ApiServer::builder().listen("127.0.0.1:6443".parse().unwrap());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        builder = match arg.as_str() {
            "--listen" => builder.listen(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--pki" => builder.pki(pki(&value()?)?),
            "--later-pki" => builder.later_pki(pki(&value()?)?),
            "--token" => {
                let v = value()?;
                let (id, secret) = v.split_once('.').ok_or("--token takes ID.SECRET")?;
                builder.token(id, secret)
            }
            "--sign-after" => builder.sign_after(Duration::from_secs_f64(
                value()?.parse().map_err(|e| format!("--sign-after: {e}"))?,
            )),
            "--forge" => builder.forge_signatures(),
            "--fault" => builder.faults([value()?.parse::<Fault>()?]),
            "--always" => builder.always(value()?.parse::<Fault>()?),
            "--advertise" => builder.advertise(value()?),
            "--admit" => {
                builder.admit_per_second(value()?.parse().map_err(|e| format!("--admit: {e}"))?)
            }
            "--print-pin" => {
                println!("{}", apiserver_double::real_ca_pin());
                return Ok(());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
    }
    let server = builder.start().map_err(|e| format!("cannot start: {e}"))?;
    println!("listening on {}", server.url());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apiserver-double: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
