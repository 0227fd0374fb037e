//! Fail points for the tests that kill `kubejoin run` at every step (zincati's use of fail
//! points is the model): with `KUBEJOIN_TEST_FAILPOINT=<name>` in its environment, kubejoin
//! kills itself with SIGKILL when it reaches the point of that name, as an OOM kill would
//! (`<name>@<n>`: the n-th time it reaches it; a point such as the ledger's rename is
//! passed many times); with `KUBEJOIN_TEST_FAILPOINT_ACTION=power-cut` too, it resets the
//! whole machine there instead, without syncing (sysrq `b`), as a power cut would (the VM
//! tests). With `KUBEJOIN_TEST_FAILPOINT=list` it names each point it passes on stderr.
//! Unset (always, outside tests), a point costs one environment lookup.

use std::sync::atomic::{AtomicU32, Ordering};

pub const VAR: &str = "KUBEJOIN_TEST_FAILPOINT";
pub const ACTION_VAR: &str = "KUBEJOIN_TEST_FAILPOINT_ACTION";

/// How often the wanted point has been reached.
static REACHED: AtomicU32 = AtomicU32::new(0);

/// A point where a run may die.
pub fn hit(name: &str) {
    let Some(wanted) = std::env::var_os(VAR) else {
        return;
    };
    if wanted == "list" {
        eprintln!("failpoint: {name}");
        return;
    }
    let wanted = wanted.to_string_lossy();
    if !is_wanted(&wanted, name, || REACHED.fetch_add(1, Ordering::SeqCst) + 1) {
        return;
    }
    if std::env::var_os(ACTION_VAR).is_some_and(|a| a == "power-cut") {
        // Resets at once: what the kernel has not written back is lost.
        let _ = std::fs::write("/proc/sysrq-trigger", "b");
    }
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

/// Whether reaching `name` now is the wanted `name` or `name@n`; `reached` counts this
/// reach of the wanted name and says how many there have been.
fn is_wanted(wanted: &str, name: &str, reached: impl FnOnce() -> u32) -> bool {
    let (point, nth) = wanted
        .rsplit_once('@')
        .and_then(|(point, n)| Some((point, n.parse::<u32>().ok()?)))
        .unwrap_or((wanted, 1));
    point == name && reached() == nth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_by_name_or_by_its_nth_reach() {
        assert!(is_wanted("phase:files", "phase:files", || 1));
        assert!(!is_wanted("phase:files", "phase:plan", || 1));
        assert!(!is_wanted("before-rename:/x@3", "before-rename:/x", || 2));
        assert!(is_wanted("before-rename:/x@3", "before-rename:/x", || 3));
        // An @ that is not a count is part of the name.
        assert!(is_wanted("a@b", "a@b", || 1));
    }
}
