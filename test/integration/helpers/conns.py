"""Holds tunneled connections open through a Drawbridge client proxy, for tests.

  conns.py PROXY_PORT DEST N STATE_DIR

Opens N HTTP CONNECT tunnels to DEST (an echo server), checks each echoes, writes
STATE_DIR/ready, then serves commands dropped as files in STATE_DIR:
  send-K-BYTES   write BYTES bytes on connection K and read the echo back; writes
                 STATE_DIR/sent-K-BYTES when done
  stop           close everything and exit
Meanwhile it notices connections the far side ends: STATE_DIR/closed lists
"K UNIX_TIME" for each, as it happens. Exits after 120 s at the latest.
"""
import os, select, socket, sys, time

port, dest, n, state = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conns = []
for k in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            sys.exit(f"connection {k}: proxy closed during CONNECT")
        head += chunk
    if b" 200 " not in head.split(b"\r\n")[0]:
        sys.exit(f"connection {k}: {head.splitlines()[0]!r}")
    s.sendall(b"x")
    if s.recv(1) != b"x":
        sys.exit(f"connection {k}: no echo")
    conns.append(s)
open(os.path.join(state, "ready"), "w").close()
alive = {k: s for k, s in enumerate(conns)}
deadline = time.time() + 120
while time.time() < deadline:
    for name in sorted(os.listdir(state)):
        path = os.path.join(state, name)
        if name == "stop":
            sys.exit(0)
        if name.startswith("send-"):
            _, k, size = name.split("-")
            os.unlink(path)
            s = alive[int(k)]
            payload = os.urandom(int(size))
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            ok = "ok" if got == payload else f"bad echo ({len(got)} bytes)"
            with open(os.path.join(state, f"sent-{k}-{size}"), "w") as f:
                f.write(ok)
    ready, _, _ = select.select(list(alive.values()), [], [], 0.005)
    for s in ready:
        k = next(k for k, v in alive.items() if v is s)
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            now = time.time()
            with open(os.path.join(state, "closed"), "a") as f:
                f.write(f"{k} {now:.6f}\n")
            del alive[k]
            s.close()
