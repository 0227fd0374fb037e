//! Fail points for the tests that kill `kubejoin run` at every step (zincati's use of fail
//! points is the model): with `KUBEJOIN_TEST_FAILPOINT=<name>` in its environment, kubejoin
//! kills itself with SIGKILL when it reaches the point of that name, as an OOM kill would;
//! with `KUBEJOIN_TEST_FAILPOINT_ACTION=power-cut` too, it resets the whole machine there
//! instead, without syncing (sysrq `b`), as a power cut would (the VM tests). With
//! `KUBEJOIN_TEST_FAILPOINT=list` it names each point it passes on stderr. Unset (always,
//! outside tests), a point costs one environment lookup.

pub const VAR: &str = "KUBEJOIN_TEST_FAILPOINT";
pub const ACTION_VAR: &str = "KUBEJOIN_TEST_FAILPOINT_ACTION";

/// A point where a run may die.
pub fn hit(name: &str) {
    let Some(wanted) = std::env::var_os(VAR) else {
        return;
    };
    if wanted == "list" {
        eprintln!("failpoint: {name}");
    } else if wanted == name {
        if std::env::var_os(ACTION_VAR).is_some_and(|a| a == "power-cut") {
            // Resets at once: what the kernel has not written back is lost.
            let _ = std::fs::write("/proc/sysrq-trigger", "b");
        }
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
