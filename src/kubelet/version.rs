//! kubelet's version, as `kubelet --version` prints it, and Kubernetes' version skew
//! policy between kubelet and the API server. Pure, but for [`detect`].

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Kubernetes version: `v1.20.2`, `v1.36.2+ocp.98b35193b2ac` (the build metadata is
/// kept for display only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    #[serde(skip)]
    pub text: String,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Version {
    /// `vMAJOR.MINOR.PATCH[-pre][+build]`, with or without the `v`.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let core = s.strip_prefix('v').unwrap_or(s);
        let core = core.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let mut next = || parts.next()?.parse::<u32>().ok();
        let (major, minor, patch) = (next()?, next()?, next().unwrap_or(0));
        Some(Version {
            major,
            minor,
            patch,
            text: if s.starts_with('v') {
                s.to_string()
            } else {
                format!("v{s}")
            },
        })
    }

    /// The output of `kubelet --version`: `Kubernetes v1.20.2`.
    pub fn from_kubelet_output(out: &str) -> Option<Version> {
        out.split_whitespace()
            .find(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
            .and_then(Version::parse)
    }

    /// At least `1.minor`.
    pub fn at_least(&self, minor: u32) -> bool {
        self.major > 1 || (self.major == 1 && self.minor >= minor)
    }
}

/// Why kubelet's version cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("cannot run {binary} --version: {detail}")]
    Run { binary: String, detail: String },
    #[error("{binary} --version printed {output:?}, which holds no version")]
    Unreadable { binary: String, output: String },
}

/// Runs `kubelet --version` (bounded to 10 s: a hung binary must not hang the join).
pub fn detect(binary: &Path) -> Result<Version, VersionError> {
    let name = binary.display().to_string();
    let run_err = |detail: String| VersionError::Run {
        binary: name.clone(),
        detail,
    };
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| run_err(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child
        .try_wait()
        .map_err(|e| run_err(e.to_string()))?
        .is_none()
    {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(run_err("it did not answer within 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| run_err(e.to_string()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Version::from_kubelet_output(&text).ok_or(VersionError::Unreadable {
        binary: name,
        output: text.trim().chars().take(200).collect(),
    })
}

/// kubelet against the API server, by Kubernetes' version skew policy: kubelet must not
/// be newer than kube-apiserver, and may be up to three minor versions older (two before
/// 1.28). `None` when the pair is supported, else why not.
pub fn skew(kubelet: &Version, apiserver: &Version) -> Option<String> {
    if kubelet.major != apiserver.major {
        return Some(format!(
            "kubelet {kubelet} and the API server {apiserver} differ in their major version"
        ));
    }
    if kubelet.minor > apiserver.minor {
        return Some(format!(
            "kubelet {kubelet} is newer than the API server {apiserver}; Kubernetes' version skew \
             policy does not allow a kubelet newer than kube-apiserver"
        ));
    }
    let allowed = if apiserver.at_least(28) { 3 } else { 2 };
    let behind = apiserver.minor - kubelet.minor;
    (behind > allowed).then(|| {
        format!(
            "kubelet {kubelet} is {behind} minor versions older than the API server {apiserver}; \
             Kubernetes' version skew policy allows {allowed}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_version_output() {
        let v = Version::from_kubelet_output("Kubernetes v1.20.2\n").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 20, 2));
        let v = Version::from_kubelet_output("Kubernetes v1.36.2+ocp.98b35193b2ac").unwrap();
        assert_eq!((v.minor, v.patch), (36, 2));
        assert_eq!(v.to_string(), "v1.36.2+ocp.98b35193b2ac");
        let v = Version::parse("v1.31.0-rc.1").unwrap();
        assert_eq!((v.minor, v.patch), (31, 0));
        for bad in ["", "Kubernetes", "Kubernetes vX", "version 1.20"] {
            assert_eq!(Version::from_kubelet_output(bad), None, "{bad}");
        }
        assert!(v.at_least(31) && !v.at_least(32));
    }

    #[test]
    fn skew_policy() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(skew(&v("v1.20.2"), &v("v1.20.2")), None);
        assert_eq!(skew(&v("v1.33.0"), &v("v1.36.2")), None);
        assert!(
            skew(&v("v1.32.0"), &v("v1.36.2"))
                .unwrap()
                .contains("allows 3")
        );
        assert_eq!(skew(&v("v1.18.0"), &v("v1.20.2")), None);
        assert!(
            skew(&v("v1.17.0"), &v("v1.20.2"))
                .unwrap()
                .contains("allows 2")
        );
        assert!(
            skew(&v("v1.36.2"), &v("v1.20.2"))
                .unwrap()
                .contains("newer")
        );
    }
}
