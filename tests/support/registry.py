#!/usr/bin/python3
"""Two small servers for tests of restricted networks, run in a testbed's network
namespace (its own loopback):

  registry.py registry PORT LAYOUT CERT KEY LOG [PRIVATE USER:PASSWORD]
      A read-only OCI registry over TLS serving the images of an OCI image layout
      (LAYOUT/index.json, LAYOUT/blobs/sha256/): a manifest by tag for any repository
      whose name in the layout ends in /<repository>:<tag>, blobs by digest. Each
      request is logged as "METHOD PATH" (with its query, where a mirror says which
      registry it stands for). With PRIVATE, that repository needs HTTP Basic
      authentication as USER:PASSWORD; a request without it is answered 401 and logged
      as "401 METHOD PATH".

  registry.py proxy PORT TARGET_PORT LOG
      An HTTP CONNECT proxy that logs "CONNECT host:port" for each tunnel and carries it
      to 127.0.0.1 (port 443 to TARGET_PORT: there is no DNS and no internet here);
      anything else is refused with 502 and logged.
"""

import base64
import http.server
import json
import os
import select
import socket
import socketserver
import ssl
import sys
import threading

LOCK = threading.Lock()


def log(path, line):
    with LOCK, open(path, "a") as f:
        f.write(line + "\n")


def registry(port, layout, cert, key, logfile, private=None, credentials=None):
    expected = None
    if credentials:
        expected = "Basic " + base64.b64encode(credentials.encode()).decode()
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    blobs = os.path.join(layout, "blobs", "sha256")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def blob(self, digest):
            algo, _, hexd = digest.partition(":")
            path = os.path.join(blobs, hexd)
            if algo != "sha256" or "/" in hexd or not os.path.isfile(path):
                return None
            with open(path, "rb") as f:
                return f.read()

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if (private and path.startswith(f"/v2/{private}/")
                    and self.headers.get("Authorization") != expected):
                log(logfile, f"401 {self.command} {self.path}")
                return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                                 {"Content-Type": "application/json",
                                  "WWW-Authenticate": 'Basic realm="kubejoin.test"'})
            log(logfile, f"{self.command} {self.path}")
            if path in ("/v2/", "/v2"):
                return self.send(200, b"{}", {"Content-Type": "application/json"})
            if not path.startswith("/v2/"):
                return self.send(404)
            rest = path[len("/v2/"):]
            for kind in ("/manifests/", "/blobs/"):
                name, sep, ref = rest.rpartition(kind)
                if sep:
                    break
            else:
                return self.send(404)
            if kind == "/blobs/":
                body = self.blob(ref)
                if body is None:
                    return self.send(404)
                return self.send(200, body, {"Content-Type": "application/octet-stream",
                                             "Docker-Content-Digest": ref})
            if ref.startswith("sha256:"):
                digest, media = ref, None
            else:
                want = f"/{name}:{ref}"
                found = [m for m in index["manifests"]
                         if m.get("annotations", {}).get("io.containerd.image.name", "").endswith(want)]
                if not found:
                    return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}',
                                     {"Content-Type": "application/json"})
                digest, media = found[0]["digest"], found[0]["mediaType"]
            body = self.blob(digest)
            if body is None:
                return self.send(404)
            media = media or json.loads(body).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
            self.send(200, body, {"Content-Type": media, "Docker-Content-Digest": digest})

        do_HEAD = do_GET

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def proxy(port, target_port, logfile):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            client = self.request
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = line.partition(" ")
            target = rest.split(" ", 1)[0]
            if method != "CONNECT":
                log(logfile, f"{method} {target} (refused)")
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            log(logfile, f"CONNECT {target}")
            host, _, p = target.rpartition(":")
            p = int(p)
            try:
                upstream = socket.create_connection(("127.0.0.1", target_port if p == 443 else p))
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            extra = head.split(b"\r\n\r\n", 1)[1]
            if extra:
                upstream.sendall(extra)
            socks = [client, upstream]
            try:
                while True:
                    ready, _, _ = select.select(socks, [], [], 300)
                    if not ready:
                        return
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (upstream if s is client else client).sendall(data)
            finally:
                upstream.close()

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "registry":
        registry(int(sys.argv[2]), *sys.argv[3:9])
    elif mode == "proxy":
        proxy(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
