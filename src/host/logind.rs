//! Graceful node shutdown: kubelet delays a shutdown with a logind inhibitor lock for its
//! `shutdownGracePeriod`, but logind grants at most `InhibitDelayMaxSec` (5 s by default).
//! kubejoin writes a logind drop-in with the grace period and has logind read its
//! configuration again (SIGHUP, as kubelet itself does when it finds the delay too short).

use std::time::Duration;

pub const DROP_IN: &str = "/etc/systemd/logind.conf.d/90-kubejoin.conf";
pub const UNIT: &str = "systemd-logind.service";
/// SIGHUP: logind reads its configuration again.
pub const RELOAD_SIGNAL: i32 = 1;

/// The drop-in for a grace period of `delay` (whole seconds, rounded up).
pub fn drop_in(delay: Duration) -> String {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    format!(
        "# Written by kubejoin: kubelet's graceful node shutdown ([kubelet] shutdown_grace_period).\n\
         [Login]\nInhibitDelayMaxSec={secs}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_in_whole_seconds() {
        assert!(drop_in(Duration::from_secs(45)).ends_with("[Login]\nInhibitDelayMaxSec=45\n"));
        assert!(drop_in(Duration::from_millis(1500)).ends_with("InhibitDelayMaxSec=2\n"));
    }
}
