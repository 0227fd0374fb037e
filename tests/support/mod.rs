//! Test support shared by the integration tests: the testbed harness and a worker node
//! built on it. (The API server double is the `apiserver-double` crate beside this file.)

pub mod cluster;
pub mod images;
pub mod node;
pub mod overlay;
pub mod podnet;
pub mod testbed;
pub mod vm;

/// Runs `check` on every item, two at a time (two testbeds side by side), and returns
/// the failures, each named by `name`.
#[allow(dead_code)] // for the tests that go through a table of testbeds
pub fn two_at_a_time<T: Sync>(
    items: &[T],
    name: impl Fn(&T) -> String + Sync,
    check: impl Fn(&T) -> Result<(), String> + Sync,
) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(2).max(1))
            .map(|chunk| {
                let (name, check) = (&name, &check);
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|item| {
                            check(item).err().map(|e| format!("{}: {e}", name(item)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// stdout then stderr of a finished command, as text.
#[allow(dead_code)] // not every test binary prints commands
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails the test if output a person reads shows Rust's insides: `Some(`/`Ok(`/`Err(`
/// wrappers or a `Debug` struct (`Reload { why: ...`).
#[allow(dead_code)] // for tests of what users read
pub fn assert_readable(what: &str, text: &str) {
    for wrapper in ["Some(", "Ok(", "Err(", "None,", "None)"] {
        assert!(!text.contains(wrapper), "{what} shows {wrapper:?}:\n{text}");
    }
    // `Name { field: `: a capitalised word, " { ", an identifier and a colon.
    for (i, _) in text.match_indices(" { ") {
        let before = text[..i].rsplit([' ', '\n', '(', '[']).next().unwrap_or("");
        let after = &text[i + 3..];
        let field: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let debug_struct = before.starts_with(|c: char| c.is_ascii_uppercase())
            && before
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ':')
            && !field.is_empty()
            && after[field.len()..].starts_with(": ");
        assert!(
            !debug_struct,
            "{what} shows a Debug struct ({before} {{ {field}: ...):\n{text}"
        );
    }
}

/// The fail points a run named (`failpoint: NAME` lines), each reach of a point passed
/// several times (the ledger's rename) by its own name, `NAME@n`, as
/// `KUBEJOIN_TEST_FAILPOINT` takes it.
#[allow(dead_code)] // for the kill and power-cut matrices
pub fn fail_points(output: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    output
        .lines()
        .filter_map(|l| l.strip_prefix("failpoint: "))
        .map(|p| {
            let n = seen.entry(p).or_default();
            *n += 1;
            if *n == 1 {
                p.to_string()
            } else {
                format!("{p}@{n}")
            }
        })
        .collect()
}

/// `c` dies with the thread that starts it, even if the test is killed.
#[allow(dead_code)]
pub fn dies_with_parent(c: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: pre_exec's closure runs in the forked child before exec; prctl is
    // async-signal-safe and the closure neither allocates nor takes locks.
    unsafe {
        c.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        })
    }
}

/// `N` random bytes from the OS.
#[allow(dead_code)]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b
}
