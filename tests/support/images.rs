//! Container images for real kubelets where no registry is reachable: an OCI archive of
//! one static program that sleeps until signalled, under any names (the pod's image and
//! the sandbox, "pause", image), built with gcc, sha256sum and tar.

#![allow(dead_code)] // not every test binary builds images

use std::path::{Path, PathBuf};

/// The program: sleeps until SIGTERM or SIGINT.
const SLEEPER_C: &str = "#include <signal.h>\n#include <unistd.h>\nstatic void done(int s) { (void)s; _exit(0); }\nint main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }\n";

/// Builds `DIR/image.tar`: one image under every name of `names`.
pub fn sleeper(dir: &Path, names: &[&str]) -> PathBuf {
    let script = format!(
        r#"set -e
cd {dir}
mkdir -p src rootfs img/blobs/sha256
printf '%s' '{src}' > src/sleeper.c
gcc -static -O2 -o rootfs/sleeper src/sleeper.c
tar --owner=0 --group=0 -C rootfs -cf layer.tar sleeper
blob() {{ d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" img/blobs/sha256/$d; echo $d; }}
layer=$(blob layer.tar)
printf '{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/sleeper"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:%s"]}}}}' $layer > config.json
config=$(blob config.json)
printf '{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}}]}}' $config $(stat -c %s config.json) $layer $(stat -c %s layer.tar) > manifest.json
manifest=$(blob manifest.json)
entries=""
for name in {names}; do
  entries="$entries${{entries:+,}}$(printf '{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{{"io.containerd.image.name":"%s"}}}}' $manifest $(stat -c %s manifest.json) $name)"
done
printf '{{"schemaVersion":2,"manifests":[%s]}}' "$entries" > img/index.json
printf '{{"imageLayoutVersion":"1.0.0"}}' > img/oci-layout
tar -C img -cf image.tar .
"#,
        dir = dir.display(),
        src = SLEEPER_C.replace('\'', ""),
        names = names.join(" "),
    );
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the image: {}",
        super::text(&out)
    );
    dir.join("image.tar")
}

/// A static pod of `image` on the host's network, run without a pull: kubelet names it
/// `sleeper-<node>`.
pub fn static_pod(image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\n  namespace: default\nspec:\n  hostNetwork: true\n  containers:\n  - name: sleeper\n    image: {image}\n    imagePullPolicy: Never\n"
    )
}
