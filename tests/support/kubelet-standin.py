#!/usr/bin/python3
"""The kubelet stand-in the testbed installs at the configured kubelet path.

It records how it was started (argv, environment) to /var/lib/kubelet-standin/, checks
that the bootstrap kubeconfig it is pointed at parses and holds a bootstrap token, the
server and the CA, and then stays running like kubelet does, so that kubelet.service is
really started and supervised by systemd. It exits 1 with the reason on stderr (the
unit's journal) when the kubeconfig is wrong, and with the code in
/etc/kubelet-standin/exit-code when that file exists (a kubelet that dies at once).
When /etc/kubelet-standin/tls-bootstrap exists it writes its --kubeconfig with a
client certificate, as kubelet does when its CSR is approved.

Only Debian's python3 and python3-yaml, which cloud-init needs anyway.
"""
import base64
import json
import os
import re
import signal
import sys
import time

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


def main():
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
    try:
        if path is None:
            raise ValueError("no --bootstrap-kubeconfig flag")
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
    kubeconfig = flag("kubeconfig")
    if kubeconfig and os.path.exists("/etc/kubelet-standin/tls-bootstrap"):
        # As kubelet does once its CSR is approved: a kubeconfig with a client certificate.
        os.makedirs(os.path.dirname(kubeconfig), exist_ok=True)
        with open(kubeconfig, "w") as f:
            f.write(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: %s\n  name: default-cluster\n"
                "users:\n- name: default-auth\n  user:\n"
                "    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n"
                "    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n"
                % record["bootstrap"]["server"]
            )
        print("kubelet-standin: TLS bootstrap done, wrote %s" % kubeconfig, flush=True)
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
