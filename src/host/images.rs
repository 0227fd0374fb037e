//! Image archives for workers that reach no registry (`[host] image_archives`): each
//! `*.tar` in the directory (an OCI image layout or `docker save` output, as a tar) is
//! imported into the container runtime before kubelet starts, the one holding the
//! sandbox image first, unless every image it names is there already. What an archive
//! names is read from its `index.json` (OCI) or `manifest.json` (docker), without
//! unpacking it. The parsing is pure; [`read_names`] and [`import`] touch the host.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The CRI namespace of containerd, where kubelet's images live.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// An image name as the runtimes store it: Docker Hub's short names made whole
/// (`pause:3.10` is `docker.io/library/pause:3.10`), `:latest` where no tag or digest is
/// given.
pub fn normalize(name: &str) -> String {
    let name = name.trim();
    let (first, _) = name.split_once('/').unwrap_or(("", name));
    let has_domain = first.contains(['.', ':']) || first == "localhost";
    let mut full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    if !last.contains([':', '@']) {
        full.push_str(":latest");
    }
    full
}

/// The image names an archive's `index.json` (OCI) gives: containerd's own annotation,
/// else a reference name that is a whole name (not just a tag).
pub fn names_in_oci_index(json: &[u8]) -> Result<Vec<String>, String> {
    let index: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("index.json is not JSON: {e}"))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or("index.json has no manifests")?;
    Ok(manifests
        .iter()
        .filter_map(|m| {
            let a = &m["annotations"];
            a["io.containerd.image.name"]
                .as_str()
                .or_else(|| {
                    a["org.opencontainers.image.ref.name"]
                        .as_str()
                        .filter(|r| r.contains('/') || r.contains(':'))
                })
                .map(normalize)
        })
        .collect())
}

/// The image names a `docker save` archive's `manifest.json` gives (its `RepoTags`).
pub fn names_in_docker_manifest(json: &[u8]) -> Result<Vec<String>, String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("manifest.json is not JSON: {e}"))?;
    let entries = manifest
        .as_array()
        .ok_or("manifest.json is not a list of images")?;
    Ok(entries
        .iter()
        .flat_map(|e| e["RepoTags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(normalize))
        .collect())
}

/// One tar header: the member's name (with a ustar prefix) and size, or `None` at the
/// end of the archive (a zero block).
pub fn tar_header(block: &[u8; 512]) -> Result<Option<(String, u64, u8)>, String> {
    if block.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let field = |range: std::ops::Range<usize>| {
        let raw = &block[range];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).to_string()
    };
    let size_field = field(124..136);
    let size = u64::from_str_radix(size_field.trim(), 8)
        .map_err(|_| format!("not a tar archive (size field {size_field:?})"))?;
    let mut name = field(0..100);
    if &block[257..262] == b"ustar" {
        let prefix = field(345..500);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Ok(Some((name, size, block[156])))
}

/// The image names an archive holds (reading only its headers and its index), and
/// `Err` when it is not an image archive kubejoin can read.
pub fn read_names(path: &Path) -> Result<Vec<String>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut block = [0u8; 512];
    let mut long_name: Option<String> = None;
    loop {
        if f.read_exact(&mut block).is_err() {
            return Err("it ends before an index.json or manifest.json".into());
        }
        let Some((name, size, kind)) = tar_header(&block)? else {
            return Err("it has no index.json (OCI) or manifest.json (docker save)".into());
        };
        let padded = size.div_ceil(512) * 512;
        let read_body = |f: &mut std::fs::File| -> Result<Vec<u8>, String> {
            if size > 16 << 20 {
                return Err(format!("its index is {size} bytes"));
            }
            let mut body = vec![0u8; size as usize];
            f.read_exact(&mut body).map_err(|e| e.to_string())?;
            f.seek(SeekFrom::Current((padded - size) as i64))
                .map_err(|e| e.to_string())?;
            Ok(body)
        };
        if kind == b'L' {
            // GNU long name: the next member's name.
            let body = read_body(&mut f)?;
            long_name = Some(String::from_utf8_lossy(&body).trim_end_matches('\0').into());
            continue;
        }
        let name = long_name.take().unwrap_or(name);
        match name.trim_start_matches("./") {
            "index.json" => return names_in_oci_index(&read_body(&mut f)?),
            "manifest.json" => return names_in_docker_manifest(&read_body(&mut f)?),
            _ => {
                f.seek(SeekFrom::Current(padded as i64))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
}

/// An archive in the directory, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub path: PathBuf,
    pub names: Vec<String>,
}

/// The `*.tar` files of `dir`, in name order; other files are returned apart (left alone,
/// and said so).
pub fn list(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut tars = Vec::new();
    let mut other = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        if path.extension().is_some_and(|e| e == "tar") {
            tars.push(path);
        } else {
            other.push(path);
        }
    }
    tars.sort();
    other.sort();
    Ok((tars, other))
}

/// The archives to import, in order: those with an image the runtime lacks, the one
/// holding the sandbox image first.
pub fn to_import<'a>(
    archives: &'a [Archive],
    present: &[String],
    sandbox: Option<&str>,
) -> Vec<&'a Archive> {
    let sandbox = sandbox.map(normalize);
    let mut out: Vec<&Archive> = archives
        .iter()
        .filter(|a| a.names.iter().any(|n| !present.contains(n)))
        .collect();
    out.sort_by_key(|a| !a.names.iter().any(|n| Some(n) == sandbox.as_ref()));
    out
}

/// The images in the store of `runtime` (`"containerd"`: its CRI namespace; `"docker"`),
/// by name; empty when the runtime does not answer (it is about to be restarted, or not
/// running yet: everything is imported then).
pub fn present(runtime: &str) -> Vec<String> {
    let out = match runtime {
        "containerd" => std::process::Command::new("ctr")
            .args(["--namespace", CRI_NAMESPACE, "images", "list", "--quiet"])
            .output(),
        "docker" => std::process::Command::new("docker")
            .args(["image", "list", "--format", "{{.Repository}}:{{.Tag}}"])
            .output(),
        _ => return Vec::new(),
    };
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                let l = l.trim();
                !l.is_empty() && !l.contains("<none>") && !l.starts_with("sha256:")
            })
            .map(normalize)
            .collect(),
        _ => Vec::new(),
    }
}

/// Imports one archive into the runtime (containerd's `ctr images import` into the CRI
/// namespace, or `docker load`).
pub fn import(runtime: &str, archive: &Path) -> anyhow::Result<()> {
    let mut cmd = match runtime {
        "docker" => {
            let mut c = std::process::Command::new("docker");
            c.arg("load").arg("--input").arg(archive);
            c
        }
        _ => {
            let mut c = std::process::Command::new("ctr");
            c.args(["--namespace", CRI_NAMESPACE, "images", "import"])
                .arg(archive);
            c
        }
    };
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        anyhow::bail!(
            "importing {} into {runtime} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_whole_as_the_runtimes_store_them() {
        for (given, whole) in [
            ("pause:3.10", "docker.io/library/pause:3.10"),
            ("rancher/pause", "docker.io/rancher/pause:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost/pause", "localhost/pause:latest"),
            ("reg:5000/a/b@sha256:00", "reg:5000/a/b@sha256:00"),
            ("kubejoin.test/pause:1", "kubejoin.test/pause:1"),
        ] {
            assert_eq!(normalize(given), whole, "{given}");
        }
    }

    #[test]
    fn an_archives_names_from_either_format() {
        let oci = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:1","annotations":{"io.containerd.image.name":"registry.k8s.io/pause:3.10","org.opencontainers.image.ref.name":"3.10"}},
            {"digest":"sha256:2","annotations":{"org.opencontainers.image.ref.name":"3.10"}},
            {"digest":"sha256:3","annotations":{"org.opencontainers.image.ref.name":"example.com/app:1"}}]}"#;
        assert_eq!(
            names_in_oci_index(oci).unwrap(),
            ["registry.k8s.io/pause:3.10", "example.com/app:1"]
        );
        let docker = br#"[{"Config":"c.json","RepoTags":["pause:3.10","registry.k8s.io/pause:3.10"],"Layers":[]}]"#;
        assert_eq!(
            names_in_docker_manifest(docker).unwrap(),
            ["docker.io/library/pause:3.10", "registry.k8s.io/pause:3.10"]
        );
        assert!(names_in_oci_index(b"{}").is_err());
        assert!(names_in_docker_manifest(b"{").is_err());
    }

    #[test]
    fn archives_with_missing_images_are_imported_sandbox_first() {
        let a = |p: &str, n: &[&str]| Archive {
            path: p.into(),
            names: n.iter().map(|s| s.to_string()).collect(),
        };
        let archives = [
            a("/i/app.tar", &["example.com/app:1"]),
            a("/i/pause.tar", &["registry.k8s.io/pause:3.10"]),
            a("/i/there.tar", &["example.com/there:1"]),
        ];
        let present = ["example.com/there:1".to_string()];
        let order: Vec<_> = to_import(&archives, &present, Some("registry.k8s.io/pause:3.10"))
            .iter()
            .map(|a| a.path.display().to_string())
            .collect();
        assert_eq!(order, ["/i/pause.tar", "/i/app.tar"]);
        let all: Vec<String> = archives.iter().flat_map(|a| a.names.clone()).collect();
        assert!(to_import(&archives, &all, None).is_empty(), "nothing to do");
    }

    #[test]
    fn tar_headers_and_an_archive_on_disk() {
        let dir = std::env::temp_dir().join(format!("kubejoin-images-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("img/blobs")).unwrap();
        std::fs::write(dir.join("img/blobs/x"), vec![7u8; 1000]).unwrap();
        std::fs::write(
            dir.join("img/index.json"),
            r#"{"manifests":[{"annotations":{"io.containerd.image.name":"kubejoin.test/pause:1"}}]}"#,
        )
        .unwrap();
        let tar = dir.join("image.tar");
        let ok = std::process::Command::new("tar")
            .arg("-C")
            .arg(dir.join("img"))
            .arg("-cf")
            .arg(&tar)
            .args(["./blobs", "./index.json"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        assert_eq!(read_names(&tar).unwrap(), ["kubejoin.test/pause:1"]);
        std::fs::write(dir.join("not.tar"), b"hello").unwrap();
        assert!(read_names(&dir.join("not.tar")).is_err());
        let (tars, other) = list(&dir).unwrap();
        assert_eq!(tars, [tar.clone(), dir.join("not.tar")]);
        assert!(other.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(tar_header(&[0; 512]).unwrap(), None);
    }
}
