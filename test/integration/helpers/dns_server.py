"""A tiny authoritative DNS server on 127.0.0.1:53/udp, for tests in their own
network namespace (whose /etc/resolv.conf names 127.0.0.1).

  dns_server.py ZONE_FILE QUERY_LOG

ZONE_FILE (JSON, re-read for every query, so a test can change it):
  {"srv": {"_drawbridge._tcp.test.internal": [[PRIORITY, WEIGHT, PORT, "TARGET"], ...]},
   "a": {"broker.test.internal": "127.0.0.1"},
   "servfail": false}
An SRV target "." says the service is not offered. Names in neither map get
NXDOMAIN; a known name asked for another type gets an empty NOERROR answer;
"servfail": true answers SERVFAIL to everything. Each query is appended to
QUERY_LOG as "TYPE NAME". Stops by itself after 30 minutes.
"""
import json, socket, struct, sys, time

ZONE_FILE, QUERY_LOG = sys.argv[1], sys.argv[2]
TYPES = {1: "A", 28: "AAAA", 33: "SRV", 16: "TXT"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_question(msg):
    labels, i = [], 12
    while msg[i] != 0:
        n = msg[i]
        labels.append(msg[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, qclass = struct.unpack("!HH", msg[i + 1:i + 5])
    return ".".join(labels), qtype, msg[12:i + 5]


def answer(msg):
    (qid, flags, qdcount) = struct.unpack("!HHH", msg[:6])
    name, qtype, question = parse_question(msg)
    with open(QUERY_LOG, "a") as log:
        log.write(f"{TYPES.get(qtype, qtype)} {name}\n")
    with open(ZONE_FILE) as f:
        zone = json.load(f)
    key = name.lower()
    rcode, records = 0, []
    if zone.get("servfail"):
        rcode = 2
    elif key in zone.get("srv", {}):
        if qtype == 33:
            for prio, weight, port, target in zone["srv"][key]:
                records.append((33, struct.pack("!HHH", prio, weight, port) + encode_name(target)))
    elif key in zone.get("a", {}):
        if qtype == 1:
            records.append((1, socket.inet_aton(zone["a"][key])))
    else:
        rcode = 3
    # QR, AA, RD copied, RA; the rcode.
    out = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1,
                      len(records), 0, 0) + question
    for rtype, rdata in records:
        out += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 30, len(rdata)) + rdata
    return out


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    sock.settimeout(1.0)
    deadline = time.monotonic() + 1800
    print("listening", flush=True)
    while time.monotonic() < deadline:
        try:
            msg, peer = sock.recvfrom(4096)
        except socket.timeout:
            continue
        try:
            sock.sendto(answer(msg), peer)
        except (IndexError, struct.error, ValueError, OSError) as e:
            print(f"bad query from {peer}: {e}", flush=True)


main()
