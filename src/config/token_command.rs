//! `cluster.token_command`: the bootstrap token from a program's standard output (a cloud
//! secret store's CLI, a metadata service client), so that a machine image need not hold
//! one. Run without a shell, with no standard input, in its own process group, killed
//! with that group at its timeout. Its output is never logged or echoed, its standard
//! error only when it fails.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// The default of `cluster.token_command_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this much of its standard output is read (a token is 23 bytes), and of its
/// standard error kept for the message.
const MAX_OUTPUT: u64 = 4096;

/// Why it gave no output to use. `transient`: running it again may work (it failed, timed
/// out or could not start); otherwise its output is not a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub message: String,
    pub transient: bool,
}

/// Runs `argv`, with `env` added to its environment (`[proxy]`'s variables), and returns
/// its standard output.
pub fn run(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Zeroizing<String>, CommandError> {
    let transient = |message: String| CommandError {
        message,
        transient: true,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| transient("is empty".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| transient(format!("cannot run {program}: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut b = Zeroizing::new(Vec::new());
        let _ = stdout.take(MAX_OUTPUT).read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.take(MAX_OUTPUT).read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let group = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(transient(format!(
                    "{program} did not finish within {}s (cluster.token_command_timeout); it was killed",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(transient(format!("cannot wait for {program}: {e}"))),
        }
    };
    // What it left running (holding its output open) goes with it.
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let said = stderr.trim();
        return Err(transient(format!(
            "{program} failed ({status}){}",
            if said.is_empty() {
                " and said nothing on its standard error".to_string()
            } else {
                format!(": {}", last_line(said))
            }
        )));
    }
    let text = String::from_utf8(stdout.to_vec()).map_err(|_| CommandError {
        message: format!("{program}'s standard output is not text"),
        transient: false,
    })?;
    Ok(Zeroizing::new(text))
}

/// The last line, at most 300 characters: where a CLI says what went wrong.
fn last_line(s: &str) -> String {
    let line = s.lines().last().unwrap_or_default().trim();
    let mut end = line.len().min(300);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn its_output() {
        let out = run(&sh("echo abcdef.0123456789abcdef"), &[], DEFAULT_TIMEOUT).unwrap();
        // [proxy]'s variables reach it.
        let proxy = [("HTTPS_PROXY".to_string(), "http://proxy:3128".to_string())];
        let seen = run(&sh("echo \"$HTTPS_PROXY\""), &proxy, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(seen.trim(), "http://proxy:3128");
        assert_eq!(out.as_str(), "abcdef.0123456789abcdef\n");
    }

    #[test]
    fn a_failure_says_its_last_words_and_may_be_retried() {
        let e = run(
            &sh("echo working >&2; echo 'AccessDenied: not allowed' >&2; exit 3"),
            &[],
            DEFAULT_TIMEOUT,
        )
        .unwrap_err();
        assert!(e.transient);
        assert!(
            e.message
                .starts_with("/bin/sh failed (exit status: 3): AccessDenied: not allowed"),
            "{}",
            e.message
        );
        let e = run(&["/nonexistent/print-token".into()], &[], DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.transient && e.message.contains("cannot run /nonexistent/print-token"));
        assert!(run(&[], &[], DEFAULT_TIMEOUT).unwrap_err().transient);
    }

    #[test]
    fn at_its_timeout_it_is_killed_with_what_it_started() {
        let started = Instant::now();
        // The child's own child holds its standard output: killed with the group.
        let e = run(&sh("sleep 30 & sleep 30"), &[], Duration::from_millis(300)).unwrap_err();
        assert!(
            e.transient && e.message.contains("did not finish within 0.3s"),
            "{}",
            e.message
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn what_it_leaves_running_does_not_hold_kubejoin() {
        let started = Instant::now();
        let out = run(
            &sh("sleep 30 & echo abcdef.0123456789abcdef"),
            &[],
            DEFAULT_TIMEOUT,
        )
        .unwrap();
        assert_eq!(out.trim(), "abcdef.0123456789abcdef");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn binary_output_is_not_a_token() {
        let e = run(&sh("printf '\\377\\376'"), &[], DEFAULT_TIMEOUT).unwrap_err();
        assert!(!e.transient);
    }
}
