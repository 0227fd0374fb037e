#!/usr/bin/env python3
"""The test cluster's DNS server, in CoreDNS's place (CoreDNS is not in Debian's archive):
it answers, over UDP and TCP, what CoreDNS's `kubernetes` plugin answers for the names
Kubernetes' DNS specification gives (A records only; the cluster is IPv4):

  <service>.<namespace>.svc.<domain>   the Service's ClusterIP
  <a-b-c-d>.<namespace>.pod.<domain>   a.b.c.d ("pods insecure", as kubeadm's CoreDNS)

Every other name is NXDOMAIN, those outside the domain too (there is no upstream: the
tests stay on loopback). Services are read from the API server with the admin's client
certificate, at most once a second.

Usage: dns.py ADDRESS PORT DOMAIN API_SERVER CA CERT KEY
"""

import ipaddress
import json
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.request

ADDRESS, PORT, DOMAIN, API, CA, CERT, KEY = sys.argv[1:8]
PORT = int(PORT)
DOMAIN = DOMAIN.strip(".").lower()

context = ssl.create_default_context(cafile=CA)
context.load_cert_chain(CERT, KEY)
lock = threading.Lock()
cache = {"at": 0.0, "services": {}}


def services():
    """{(namespace, name): clusterIP}, read again when older than a second."""
    with lock:
        if time.monotonic() - cache["at"] > 1.0:
            try:
                with urllib.request.urlopen(API + "/api/v1/services", context=context, timeout=5) as r:
                    items = json.load(r)["items"]
                cache["services"] = {
                    (s["metadata"]["namespace"], s["metadata"]["name"]): s["spec"].get("clusterIP", "")
                    for s in items
                }
                cache["at"] = time.monotonic()
            except Exception as e:  # the last list stays; the next query tries again
                print("dns: listing services: %s" % e, file=sys.stderr, flush=True)
        return cache["services"]


def lookup(name):
    """(rcode, address or None) for `name`: NOERROR with the address, NOERROR with none (a
    name that exists with no A record: the domain, `svc`, `pod`, a namespace under them),
    or NXDOMAIN (any other name, those outside the domain too: a search list goes on)."""
    name = name.strip(".").lower()
    if name == DOMAIN:
        return 0, None
    if not name.endswith("." + DOMAIN):
        return 3, None
    labels = name[: -len(DOMAIN) - 1].split(".")
    if labels[-1] not in ("svc", "pod") or len(labels) > 3:
        return 3, None
    if len(labels) < 3:
        return 0, None
    if labels[2] == "svc":
        ip = services().get((labels[1], labels[0]))
        if ip and ip != "None":
            return 0, ip
        return 3, None
    try:
        return 0, str(ipaddress.IPv4Address(labels[0].replace("-", ".")))
    except ValueError:
        return 3, None


def question(packet):
    """The first question's (name, type, end offset)."""
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype = struct.unpack("!H", packet[i + 1 : i + 3])[0]
    return ".".join(labels), qtype, i + 5


def answer(packet):
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        return struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x0100) | 1, 0, 0, 0, 0)
    name, qtype, end = question(packet)
    rcode, ip = lookup(name)
    records = b""
    if rcode == 0 and ip is not None and qtype in (1, 255):
        records = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + ipaddress.IPv4Address(ip).packed
    # QR, AA, RD copied, RA; one question, the answer if any.
    head = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1, 1 if records else 0, 0, 0)
    print("dns: %s %d -> %d %s" % (name, qtype, rcode, ip or ""), flush=True)
    return head + packet[12:end] + records


class UDP(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        try:
            sock.sendto(answer(data), self.client_address)
        except Exception as e:
            print("dns: udp: %s" % e, file=sys.stderr, flush=True)


class TCP(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            while True:
                head = self.request.recv(2)
                if len(head) < 2:
                    return
                (n,) = struct.unpack("!H", head)
                data = b""
                while len(data) < n:
                    chunk = self.request.recv(n - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = answer(data)
                self.request.sendall(struct.pack("!H", len(reply)) + reply)
        except Exception as e:
            print("dns: tcp: %s" % e, file=sys.stderr, flush=True)


class ThreadingUDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
    allow_reuse_address = True


class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    udp = ThreadingUDP((ADDRESS, PORT), UDP)
    tcp = ThreadingTCP((ADDRESS, PORT), TCP)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print("dns: serving %s on %s:%d" % (DOMAIN, ADDRESS, PORT), flush=True)
    udp.serve_forever()
