//! Container images for real kubelets where no registry is reachable, as OCI archives
//! under any names: one static program that sleeps until signalled (the pod's image and
//! the sandbox, "pause", image), built with gcc, and busybox from Debian's busybox-static
//! (Kubernetes' e2e busybox image); sha256sum and tar make the archive.

#![allow(dead_code)] // not every test binary builds images

use std::path::{Path, PathBuf};

/// The program: sleeps until SIGTERM or SIGINT.
const SLEEPER_C: &str = "#include <signal.h>\n#include <unistd.h>\nstatic void done(int s) { (void)s; _exit(0); }\nint main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }\n";

/// Builds `DIR/image.tar`: one image under every name of `names`.
pub fn sleeper(dir: &Path, names: &[&str]) -> PathBuf {
    let rootfs = format!(
        "mkdir -p src\nprintf '%s' '{src}' > src/sleeper.c\ngcc -static -O2 -o rootfs/sleeper src/sleeper.c\n",
        src = SLEEPER_C.replace('\'', ""),
    );
    archive(dir, &rootfs, r#""Entrypoint":["/sleeper"]"#, names)
}

/// Builds `DIR/image.tar`: a busybox image under every name of `names`, from this
/// machine's `busybox-static` (Debian's), as Kubernetes' e2e busybox image is: the binary
/// and a link per applet in /bin, `sh` the command, a /tmp and /etc/passwd.
pub fn busybox(dir: &Path, names: &[&str]) -> PathBuf {
    let rootfs = "mkdir -p rootfs/bin rootfs/tmp rootfs/etc rootfs/root
cp /bin/busybox rootfs/bin/busybox
for a in $(rootfs/bin/busybox --list); do [ -e rootfs/bin/$a ] || ln -s busybox rootfs/bin/$a; done
chmod 1777 rootfs/tmp
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > rootfs/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > rootfs/etc/group
";
    archive(dir, rootfs, r#""Env":["PATH=/bin"],"Cmd":["sh"]"#, names)
}

/// Builds `DIR/image.tar`: Kubernetes' e2e agnhost image under every name of `names`, as
/// its Dockerfile (test/images/agnhost) makes it, from the `agnhost` program built from the
/// same tree: the program (and `agnhost-2`, a link to it), busybox's applets for the
/// shell tools the specs exec, and as the image has them this machine's curl, OpenBSD's
/// nc (`-u`, `-v`, which busybox's lacks) and BIND's dig with their libraries, and dash as
/// `sh` (Debian's busybox ash runs its own applets before PATH's programs), `/uploads`;
/// `agnhost pause` the default.
pub fn agnhost(dir: &Path, program: &Path, names: &[&str]) -> PathBuf {
    let rootfs = format!(
        "mkdir -p rootfs/bin rootfs/tmp rootfs/etc rootfs/uploads
cp {program} rootfs/agnhost && ln -s agnhost rootfs/agnhost-2
cp /bin/busybox rootfs/bin/busybox
for a in $(rootfs/bin/busybox --list); do [ -e rootfs/bin/$a ] || ln -s busybox rootfs/bin/$a; done
rm -f rootfs/bin/curl rootfs/bin/nc rootfs/bin/sh
cp /usr/bin/curl rootfs/bin/curl; cp /bin/nc.openbsd rootfs/bin/nc; cp /bin/dash rootfs/bin/sh; cp /usr/bin/dig rootfs/bin/dig
{LIBS}
chmod 1777 rootfs/tmp
printf 'root:x:0:0:root:/root:/bin/sh\nuser-defined-in-image:x:1000:1000::/home:/bin/sh\n' > rootfs/etc/passwd
printf 'root:x:0:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' > rootfs/etc/group
",
        program = program.display(),
        LIBS = LIBS,
    );
    archive(
        dir,
        &rootfs,
        r#""Env":["PATH=/bin:/usr/bin"],"Entrypoint":["/agnhost"],"Cmd":["pause"]"#,
        names,
    )
}

/// Copies the libraries (and the loader) of every program in `rootfs/bin` to the same
/// paths in `rootfs` (shell, run in the image's directory).
const LIBS: &str = "for lib in $(for b in rootfs/bin/*; do [ -L $b ] || ldd $b 2>/dev/null || true; done | grep -o '/[^ ]*' | sort -u); do mkdir -p rootfs$(dirname $lib); cp -L $lib rootfs$lib; done";

/// Builds `DIR/image.tar`: Kubernetes' e2e glibc-dns-testing image (once jessie-dnsutils)
/// under every name of `names`, what its DNS specs run in it: a glibc `sh` (dash), `seq`,
/// and BIND's dig, with their libraries, from this machine (Debian's bind9-dnsutils).
pub fn dns_testing(dir: &Path, names: &[&str]) -> PathBuf {
    let rootfs = format!(
        "mkdir -p rootfs/bin rootfs/tmp rootfs/etc
cp /bin/dash rootfs/bin/sh; cp /usr/bin/seq rootfs/bin/seq; cp /usr/bin/dig rootfs/bin/dig
{LIBS}
chmod 1777 rootfs/tmp
printf 'root:x:0:0:root:/root:/bin/sh\\n' > rootfs/etc/passwd
"
    );
    archive(dir, &rootfs, r#""Env":["PATH=/bin"],"Cmd":["sh"]"#, names)
}

/// Builds `DIR/image.tar`, an OCI layout archive of one image under every name of
/// `names`: `rootfs` (shell, run in DIR) fills `rootfs/`, the one layer; `config` is the
/// inside of the image configuration's `config` object.
fn archive(dir: &Path, rootfs: &str, config: &str, names: &[&str]) -> PathBuf {
    let script = format!(
        r#"set -e
cd {dir}
rm -rf rootfs img && mkdir -p rootfs img/blobs/sha256
{rootfs}
tar --owner=0 --group=0 -C rootfs -cf layer.tar .
blob() {{ d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" img/blobs/sha256/$d; echo $d; }}
layer=$(blob layer.tar)
printf '{{"architecture":"amd64","os":"linux","config":{{{config}}},"rootfs":{{"type":"layers","diff_ids":["sha256:%s"]}}}}' $layer > config.json
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
