//! Why kubelet exited, from its own journal: the fatal line (klog's `F` line, else its
//! last `E` line, else its last line), with the klog header removed, and the fix for the
//! causes kubejoin knows. Pure.

/// One of kubelet's log lines without klog's header: `E1201 10:00:00.000000  123 server.go:269] msg`.
fn strip_klog(line: &str) -> (Option<char>, &str) {
    let mut chars = line.chars();
    let level = chars.next();
    let header = level.is_some_and(|c| "IWEF".contains(c))
        && line.len() > 5
        && line[1..5].bytes().all(|b| b.is_ascii_digit());
    if !header {
        return (None, line.trim());
    }
    match line.find("] ") {
        Some(i) => (level, line[i + 2..].trim()),
        None => (level, line.trim()),
    }
}

/// The line that says why kubelet exited, from its journal messages in order.
pub fn fatal_line(messages: &[String]) -> Option<String> {
    let parsed: Vec<(Option<char>, &str)> = messages
        .iter()
        .map(|m| strip_klog(m))
        .filter(|(_, m)| !m.is_empty())
        .collect();
    let pick = |level: char| parsed.iter().rev().find(|(l, _)| *l == Some(level));
    pick('F')
        .or_else(|| {
            // kubelet >= 1.2x logs its fatal error as `E... "command failed" err="..."`.
            parsed
                .iter()
                .rev()
                .find(|(l, m)| *l == Some('E') && m.contains("command failed"))
        })
        .or_else(|| pick('E'))
        .or_else(|| parsed.last())
        .map(|(_, m)| m.to_string())
}

/// The fix for a fatal line kubejoin recognises.
pub fn fix_for(fatal: &str) -> Option<String> {
    let f = fatal.to_ascii_lowercase();
    let fix = if f.contains("cgroup driver") && f.contains("is different from") {
        "kubelet's cgroup driver and the runtime's differ: let kubejoin align them ([host] container_runtime set, \
         [kubelet] cgroup_driver the same everywhere), then run kubejoin again"
    } else if f.contains("cgroup v1") {
        "this host uses cgroup v1, which this kubelet refuses: boot with the unified hierarchy \
         (systemd.unified_cgroup_hierarchy=1), or leave [kubelet] fail_cgroup_v1 unset so kubejoin allows it"
    } else if f.contains("swap") {
        "turn swap off (`swapoff -a`, and its /etc/fstab lines) or leave [host] swap = true so kubejoin does"
    } else if f.contains("unknown flag") {
        "a flag this kubelet version does not know: remove it from [kubelet] extra_args"
    } else if f.contains("docker") && (f.contains("version") || f.contains("daemon")) {
        "kubelet's runtime is docker (dockershim) but docker does not answer: start docker.service, \
         or set [host] container_runtime = \"containerd\""
    } else if f.contains("containerd") || f.contains("container runtime") || f.contains("cri") {
        "kubelet cannot reach its container runtime: check `systemctl status containerd` (or the unit of \
         [kubelet] container_runtime_endpoint)"
    } else if f.contains("unauthorized") || f.contains("bootstrap") {
        "kubelet's TLS bootstrap was refused: check that the token is valid and not expired, and the \
         RBAC for system:bootstrappers (node-bootstrapper, nodeclient auto-approval; `kubejoin cluster prepare` creates it)"
    } else {
        return None;
    };
    Some(fix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubelet_1_20_fatal_with_its_stack_trace() {
        let m = lines(&[
            "I1201 10:00:00.000000   42 server.go:416] Version: v1.20.2",
            "E1201 10:00:01.000000   42 server.go:100] something minor",
            "F1201 10:00:02.000000   42 server.go:269] failed to run Kubelet: misconfiguration: kubelet cgroup driver: \"systemd\" is different from docker cgroup driver: \"cgroupfs\"",
            "goroutine 1 [running]:",
            "k8s.io/kubernetes/vendor/k8s.io/klog/v2.stacks(0xc000010001)",
        ]);
        let f = fatal_line(&m).unwrap();
        assert!(
            f.starts_with("failed to run Kubelet: misconfiguration"),
            "{f}"
        );
        assert!(fix_for(&f).unwrap().contains("cgroup driver"));
    }

    #[test]
    fn kubelet_1_36_command_failed() {
        let m = lines(&[
            "E1201 10:00:00.000000   42 run.go:72] \"command failed\" err=\"failed to validate kubelet configuration, error: kubelet is configured to not run on a host using cgroup v1\"",
            "kubelet.service: Main process exited, code=exited, status=1/FAILURE",
        ]);
        let f = fatal_line(&m).unwrap();
        assert!(f.contains("not run on a host using cgroup v1"), "{f}");
        assert!(fix_for(&f).unwrap().contains("cgroup v1"));
        assert_eq!(fatal_line(&lines(&["plain", ""])).as_deref(), Some("plain"));
        assert_eq!(fatal_line(&[]), None);
        assert_eq!(fix_for("something new"), None);
    }
}
