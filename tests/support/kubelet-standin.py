#!/usr/bin/python3
"""The kubelet stand-in the testbed installs at the configured kubelet path.

It records how it was started (argv, environment) to /var/lib/kubelet-standin/, checks
that the bootstrap kubeconfig it is pointed at parses and holds a bootstrap token, the
server and the CA, and then stays running like kubelet does, so that kubelet.service is
really started and supervised by systemd. It exits 1 with the reason on stderr (the
unit's journal) when the kubeconfig is wrong, and with the code in
/etc/kubelet-standin/exit-code when that file exists (a kubelet that dies at once).

Like kubelet, it does not read the bootstrap kubeconfig at all when --kubeconfig names a
client certificate that exists and has not expired: it serves its health endpoint with it.
Without one, a kubelet-client-current.pem in --cert-dir that has not expired is used the
same way, whichever node it names (kubelet writes --kubeconfig for it).
Otherwise, like kubelet, it then TLS-bootstraps, unless /etc/kubelet-standin/no-tls-bootstrap exists:
with the cluster CA's key in /etc/kubelet-standin/ca.key (the test's stand-in for the
controller-manager's signer) it issues itself a client certificate for
system:node:<hostname> into --cert-dir and writes --kubeconfig pointing at it. Then it
serves its health endpoint (healthzBindAddress:healthzPort of --config) with `ok`.
`--version` prints `Kubernetes <version>` (/etc/kubelet-standin/version, else v1.20.2,
the API server double's version).

Only Debian's python3 and python3-yaml, which cloud-init needs anyway, and openssl.
"""
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import yaml

STATE = "/var/lib/kubelet-standin"
TOKEN = re.compile(r"\A[a-z0-9]{6}\.[a-z0-9]{16}\Z")


def flag(name):
    """The value of --name=VALUE or --name VALUE."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg.startswith("--" + name + "="):
            return arg.split("=", 1)[1]
        if arg == "--" + name and i + 1 < len(args):
            return args[i + 1]
    return None


def check_bootstrap_kubeconfig(path):
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict) or config.get("kind") != "Config":
        raise ValueError("not a kubeconfig (kind is not Config)")
    current = config.get("current-context")
    contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
    if current not in contexts:
        raise ValueError("current-context %r is not defined" % current)
    context = contexts[current]
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
    users = {u["name"]: u["user"] for u in config.get("users") or []}
    if context.get("cluster") not in clusters or context.get("user") not in users:
        raise ValueError("the current context's cluster or user is not defined")
    cluster = clusters[context["cluster"]] or {}
    user = users[context["user"]] or {}
    if not str(cluster.get("server", "")).startswith("https://"):
        raise ValueError("the cluster has no https server")
    ca = base64.b64decode(cluster.get("certificate-authority-data", ""), validate=True)
    if b"-----BEGIN CERTIFICATE-----" not in ca:
        raise ValueError("the cluster has no embedded CA certificate")
    if not TOKEN.match(str(user.get("token", ""))):
        raise ValueError("the user has no bootstrap token")
    return {"server": cluster["server"], "token_id": user["token"].split(".")[0]}


def own_credentials(kubeconfig):
    """Whether kubeconfig names a client certificate that exists and has not expired."""
    try:
        with open(kubeconfig) as f:
            config = yaml.safe_load(f)
        cert = config["users"][0]["user"]["client-certificate"]
    except Exception:
        return False
    valid = subprocess.run(["openssl", "x509", "-checkend", "0", "-noout", "-in", cert],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return valid.returncode == 0


def tls_bootstrap(bootstrap_path, kubeconfig, cert_dir):
    """Issues a node client certificate with the CA's key, as the cluster's signer would."""
    with open(bootstrap_path) as f:
        config = yaml.safe_load(f)
    cluster = config["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"])
    node = open("/proc/sys/kernel/hostname").read().strip().lower()
    os.makedirs(cert_dir, exist_ok=True)
    work = os.path.join(STATE, "issue")
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "ca.crt"), "wb") as f:
        f.write(ca)
    with open(os.path.join(work, "ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
    key, csr, crt = (os.path.join(work, n) for n in ("key.pem", "csr.pem", "crt.pem"))
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True)
    subprocess.run(["openssl", "req", "-new", "-key", key, "-out", csr,
                    "-subj", "/O=system:nodes/CN=system:node:%s" % node], check=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(work, "ca.crt"),
                    "-CAkey", "/etc/kubelet-standin/ca.key", "-CAcreateserial", "-days", "365",
                    "-extfile", os.path.join(work, "ext"), "-out", crt],
                   check=True, stderr=subprocess.DEVNULL)
    pem = os.path.join(cert_dir, "kubelet-client-current.pem")
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    os.chmod(pem, 0o600)
    write_kubeconfig(kubeconfig, cluster["server"], pem)


def write_kubeconfig(kubeconfig, server, pem):
    os.makedirs(os.path.dirname(kubeconfig), exist_ok=True)
    with open(kubeconfig, "w") as f:
        f.write(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /etc/kubernetes/pki/ca.crt\n"
            "    server: %s\n  name: default-cluster\ncontexts:\n- context:\n    cluster: default-cluster\n"
            "    user: default-auth\n  name: default-context\ncurrent-context: default-context\n"
            "users:\n- name: default-auth\n  user:\n    client-certificate: %s\n    client-key: %s\n"
            % (server, pem, pem)
        )


def adopt_current(bootstrap_path, kubeconfig, cert_dir):
    """As kubelet: without a usable --kubeconfig, the client certificate in --cert-dir is
    used if it has not expired, whichever node it names: a kubeconfig is written for it
    (with the bootstrap kubeconfig's server) and nothing is bootstrapped."""
    pem = os.path.join(cert_dir, "kubelet-client-current.pem")
    valid = subprocess.run(["openssl", "x509", "-checkend", "0", "-noout", "-in", pem],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if valid.returncode != 0 or not bootstrap_path or not os.path.exists(bootstrap_path):
        return
    with open(bootstrap_path) as f:
        server = yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
    write_kubeconfig(kubeconfig, server, pem)


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/healthz" else b"404 page not found\n"
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve_healthz(config_path):
    config = {}
    if config_path and os.path.exists(config_path):
        with open(config_path) as f:
            config = yaml.safe_load(f) or {}
    address = config.get("healthzBindAddress", "127.0.0.1")
    port = int(config.get("healthzPort", 10248))
    server = HTTPServer((address, port), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    if sys.argv[1:] == ["--version"]:
        try:
            version = open("/etc/kubelet-standin/version").read().strip()
        except FileNotFoundError:
            version = "v1.20.2"
        print("Kubernetes " + version)
        return 0
    os.makedirs(STATE, exist_ok=True)
    record = {
        "argv": sys.argv,
        "env": dict(os.environ),
        "pid": os.getpid(),
        "started": time.time(),
    }
    try:
        with open(os.path.join(STATE, "starts")) as f:
            starts = int(f.read() or 0)
    except FileNotFoundError:
        starts = 0
    with open(os.path.join(STATE, "starts"), "w") as f:
        f.write(str(starts + 1))

    path = flag("bootstrap-kubeconfig")
    kubeconfig = flag("kubeconfig")
    # As kubelet: a --kubeconfig whose client certificate exists and is still valid is
    # used as it is, and the bootstrap kubeconfig is not read at all.
    if kubeconfig and not own_credentials(kubeconfig):
        adopt_current(path, kubeconfig, flag("cert-dir") or "/var/lib/kubelet/pki")
    own = bool(kubeconfig) and own_credentials(kubeconfig)
    try:
        if own:
            record["own_credentials"] = True
        elif path is None:
            raise ValueError("no --bootstrap-kubeconfig flag")
        else:
            record["bootstrap"] = check_bootstrap_kubeconfig(path)
    except Exception as e:  # any failure is the kubeconfig's
        record["error"] = str(e)
        write(record)
        print("kubelet-standin: bootstrap kubeconfig %s: %s" % (path, e), file=sys.stderr)
        return 1
    write(record)
    try:
        with open("/etc/kubelet-standin/exit-code") as f:
            code = int(f.read().strip())
        print("kubelet-standin: exiting with %d as told" % code, file=sys.stderr)
        return code
    except FileNotFoundError:
        pass
    bootstraps = os.path.exists("/etc/kubelet-standin/ca.key") and not os.path.exists(
        "/etc/kubelet-standin/no-tls-bootstrap"
    )
    if own:
        print("kubelet-standin: running with its own client certificate", flush=True)
        serve_healthz(flag("config"))
    elif kubeconfig and bootstraps:
        # As kubelet does once its CSR is approved: a kubeconfig with a client certificate.
        tls_bootstrap(path, kubeconfig, flag("cert-dir") or "/var/lib/kubelet/pki")
        print("kubelet-standin: TLS bootstrap done, wrote %s" % kubeconfig, flush=True)
        serve_healthz(flag("config"))
    if not own:
        print("kubelet-standin: running, bootstrap kubeconfig %s is valid" % path, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def write(record):
    tmp = os.path.join(STATE, "invocation.json.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.rename(tmp, os.path.join(STATE, "invocation.json"))


if __name__ == "__main__":
    sys.exit(main())
