//! Resources held back from pods, sized to the host by GKE's published formula
//! (cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes, "Memory and CPU
//! reservations"), the one most clusters' users know:
//! - CPU: 6% of the first core, 1% of the second, 0.5% of each of the next two, 0.25% of
//!   each core above four;
//! - memory: 255 MiB on hosts with less than 1 GiB; else 25% of the first 4 GiB, 20% of
//!   the next 4 GiB, 10% of the next 8 GiB, 6% of the next 112 GiB, 2% above 128 GiB.
//!
//! GKE's eviction threshold (100 MiB of memory available) is kubelet's own default, so
//! `evictionHard` is left to kubelet. Pure: the host's CPUs and memory are inputs.

use serde_json::{Value, json};

/// What the formula holds back, as `kubeReserved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

impl Reserved {
    /// `kubeReserved`, in kubelet's quantities.
    pub fn kube_reserved(self) -> Value {
        json!({
            "cpu": format!("{}m", self.cpu_millis),
            "memory": format!("{}Mi", self.memory_mib),
        })
    }
}

const MIB: u64 = 1 << 20;

/// GKE's reservation for a host with `cpus` CPUs and `memory_bytes` of memory (rounded up
/// to whole millicores and MiB).
pub fn gke(cpus: u64, memory_bytes: u64) -> Reserved {
    // Tenths of a millicore: 600 = 60m = 6% of a core.
    let cpu_tenths = match cpus {
        0 => 0,
        c => {
            600 + 100 * u64::from(c >= 2)
                + 50 * (c.saturating_sub(2)).min(2)
                + 25 * c.saturating_sub(4)
        }
    };
    let m = memory_bytes / MIB;
    let memory_mib = if m < 1024 {
        255
    } else {
        let band = |from: u64, to: u64| m.clamp(from, to) - from;
        let hundredths = 25 * band(0, 4096)
            + 20 * band(4096, 8192)
            + 10 * band(8192, 16384)
            + 6 * band(16384, 131072)
            + 2 * m.saturating_sub(131072);
        hundredths.div_ceil(100)
    };
    Reserved {
        cpu_millis: cpu_tenths.div_ceil(10),
        memory_mib,
    }
}

/// This host's online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-3,6`) and memory
/// (`MemTotal` of `/proc/meminfo`), as kubelet counts them for the Node's capacity.
pub fn host_size() -> (u64, u64) {
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .map(|s| count_cpus(s.trim()))
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0);
    (cpus, memory)
}

/// The CPUs of a kernel CPU list (`0-3,6`).
fn count_cpus(list: &str) -> u64 {
    list.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u64::from(r.parse::<u64>().is_ok()),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// GKE's own examples (its documentation's tables).
    #[test]
    fn gkes_examples() {
        for (cpus, millis) in [
            (1, 60),
            (2, 70),
            (4, 80),
            (8, 90),
            (16, 110),
            (32, 150),
            (64, 230),
        ] {
            assert_eq!(gke(cpus, 4 * GIB).cpu_millis, millis, "{cpus} CPUs");
        }
        for (gib, mib) in [
            (4, 1024),
            (8, 1844),
            (16, 2663),
            (32, 3646),
            (64, 5612),
            (128, 9544),
        ] {
            assert_eq!(gke(2, gib * GIB).memory_mib, mib, "{gib} GiB");
        }
        assert_eq!(gke(1, 512 * MIB).memory_mib, 255);
        assert_eq!(gke(1, GIB).memory_mib, 256);
        assert_eq!(
            gke(2, 8 * GIB).kube_reserved(),
            json!({"cpu": "70m", "memory": "1844Mi"})
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-3"), 4);
        assert_eq!(count_cpus("0"), 1);
        assert_eq!(count_cpus("0-1,4-5,7"), 5);
        assert_eq!(count_cpus(""), 0);
    }
}
