"""Both ends of a tunneled TCP connection, for the failure-semantics tests.

  failure_peer.py dest PORT STATE_DIR
      A destination server on 127.0.0.1:PORT. Each connection starts with one
      line from the application: "TAG DOWN_BYTES END", then:
        DOWN_BYTES bytes of the pattern go down (0: none; -1: without end, as
        fast as the connection takes them), then END: "fin" (shutdown, then
        close once the application closed), "rst" (SO_LINGER 0 close) or
        "read" (send nothing more, read until the application ends).
      Meanwhile everything the application sends up is read and checked. When
      the connection ends, STATE_DIR/TAG.json records what the destination saw:
      {"up_bytes", "up_ok" (pattern intact), "end": "eof"|"reset", "t": unix time}.

  failure_peer.py app PROXY_PORT DEST TAG DOWN_BYTES END [options]
      The application: HTTP CONNECT through the client at PROXY_PORT to DEST,
      sends the line above, then reads (and checks) what comes down until the
      connection ends or --max-seconds pass. Prints one JSON line:
      {"down_bytes", "down_ok", "end": "eof"|"reset"|"timeout", "t_end",
       "t_ready"} and writes it to --result if given.
      --rate BYTES_PER_S   read at most this fast (a slow reader; small SO_RCVBUF)
      --up BYTES           send BYTES of the pattern up, then --up-end
      --up-end fin|rst|none   after the upload: half-close, reset or nothing
      --ready FILE         touch FILE once the tunnel is open and data flows
      --up-after-first     start the upload only once the first byte came down:
                           the destination has then read the line above, so it
                           can name the connection however abruptly it ends (an
                           RST may overtake bytes not yet read: the kernel drops them)
      --max-seconds S      give up after S seconds (default 60)
      --go FILE            wait for FILE to exist before connecting (start it early)

  failure_peer.py multi PROXY_PORT DEST TAG N BYTES --result FILE [options]
      N applications at once, each asking for BYTES (ending "fin"), checked as
      above. --result gets {"complete": N1, "failed": N2 (reset or refused:
      visibly), "truncated_clean": N3 (a clean end short of BYTES: must be 0),
      "corrupt": N4 (must be 0), "other": [...]}. --rate, --ready (all N have
      their first bytes), --max-seconds as above.

Data follows a fixed pattern (see pattern()), so a lost, duplicated or reordered
byte shows. "reset" means the kernel reported ECONNRESET (or EPIPE):
an abortive close. "eof" means a clean end of stream (FIN).
"""
import json, os, socket, struct, sys, threading, time

# Byte i is (7 * (i % 65536) + i // 65536) % 251: 251-periodic within a 64 KiB
# block, shifted by one per block, so a lost, repeated or reordered run shows.
# Since 7 * 36 = 252 = 1 (mod 251), block j is _BASE sliced from (36 * j) % 251.
_BASE = bytes((7 * m) % 251 for m in range(65536 + 251))


def pattern(offset, n):
    out = bytearray()
    while n > 0:
        j, k = divmod(offset, 65536)
        take = min(n, 65536 - k)
        s = (36 * j) % 251
        out += _BASE[s + k:s + k + take]
        offset += take
        n -= take
    return bytes(out)


class Checker:
    """Counts bytes and checks them against the pattern."""

    def __init__(self):
        self.n = 0
        self.ok = True

    def feed(self, data):
        if self.ok and data != pattern(self.n, len(data)):
            self.ok = False
        self.n += len(data)


def set_linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def recv_end(s, checker, rate=None, deadline=None):
    """Reads until the stream ends; returns "eof", "reset" or "timeout"."""
    started = time.monotonic()
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
        if deadline is not None:
            s.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
        try:
            data = s.recv(16384 if rate else 262144)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        if not data:
            return "eof"
        checker.feed(data)
        if rate:
            ahead = checker.n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


# ---------------------------------------------------------------------------
# Destination


def serve_one(conn, state):
    checker = Checker()
    line = b""
    try:
        while not line.endswith(b"\n"):
            try:
                c = conn.recv(1)
            except ConnectionResetError:
                c = b""
            if not c:
                # No line, so no tag to record under: say so where a test that
                # waits for this connection's result can show it.
                print(f"connection ended before its tag line (got {line!r})", file=sys.stderr,
                      flush=True)
                return
            line += c
        tag, down, end = line.decode().split()
        down = int(down)
        result = {}

        def reader():
            try:
                result["end"] = recv_end(conn, checker)
            except OSError:
                result["end"] = "closed"  # by us, "rst" below: our own reset

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        sent = 0
        send_reset = False
        try:
            while down < 0 or sent < down:
                n = 65536 if down < 0 else min(65536, down - sent)
                conn.sendall(pattern(sent, n))
                sent += n
            if end == "fin":
                conn.shutdown(socket.SHUT_WR)
            elif end == "rst":
                set_linger0(conn)
                conn.close()
        except (ConnectionResetError, BrokenPipeError):
            # The kernel reports a reset once: to whichever call comes first. If
            # it was this send, the reader then sees a plain end of file.
            send_reset = True
        except OSError:
            pass
        t.join()
        if send_reset and result.get("end") == "eof":
            result["end"] = "reset"
        with open(os.path.join(state, tag + ".json.tmp"), "w") as f:
            json.dump({"up_bytes": checker.n, "up_ok": checker.ok, "end": result.get("end"),
                       "down_sent": sent, "t": time.time()}, f)
        os.rename(os.path.join(state, tag + ".json.tmp"), os.path.join(state, tag + ".json"))
    finally:
        try:
            conn.close()
        except OSError:
            pass


def dest(port, state):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(256)
    deadline = time.monotonic() + 1800  # bounded: a test never runs this long
    srv.settimeout(1)
    while time.monotonic() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve_one, args=(conn, state), daemon=True).start()


# ---------------------------------------------------------------------------
# Application


def proxy_connect(proxy_port, dest, slow=False):
    """HTTP CONNECT through the client at proxy_port; returns (socket, status line).

    slow: a small receive buffer, so a slow reader keeps little in its kernel and
    the rest waits upstream. Raises ConnectionResetError if the proxy closes first."""
    s = socket.socket()
    if slow:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.settimeout(20)
    s.connect(("127.0.0.1", proxy_port))
    s.sendall(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            raise ConnectionResetError("proxy closed during CONNECT")
        head += c
    return s, head.split(b"\r\n")[0]


def app(argv):
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("proxy_port", type=int)
    p.add_argument("dest")
    p.add_argument("tag")
    p.add_argument("down", type=int)
    p.add_argument("end")
    p.add_argument("--rate", type=int)
    p.add_argument("--up", type=int, default=0)
    p.add_argument("--up-end", default="fin")
    p.add_argument("--ready")
    p.add_argument("--result")
    p.add_argument("--max-seconds", type=float, default=60)
    p.add_argument("--go")
    p.add_argument("--up-after-first", action="store_true")
    a = p.parse_args(argv)
    if a.up_after_first and a.down == 0:
        p.error("--up-after-first needs DOWN_BYTES other than 0")

    if a.go:  # started ahead of time: dial the moment FILE appears
        deadline = time.monotonic() + 60
        while not os.path.exists(a.go) and time.monotonic() < deadline:
            time.sleep(0.002)

    t_start = time.time()
    try:
        s, status = proxy_connect(a.proxy_port, a.dest, slow=bool(a.rate))
    except ConnectionResetError as e:
        sys.exit(str(e))
    if b" 200 " not in status:
        sys.exit(f"CONNECT refused: {status!r}")
    s.sendall(f"{a.tag} {a.down} {a.end}\n".encode())
    deadline = time.monotonic() + a.max_seconds
    t_ready = time.time()

    up_error = []

    def uploader():
        sent = 0
        try:
            while sent < a.up:
                n = min(65536, a.up - sent)
                s.sendall(pattern(sent, n))
                sent += n
            if a.up_end == "fin":
                s.shutdown(socket.SHUT_WR)
            elif a.up_end == "rst":
                set_linger0(s)
                s.close()
        except (ConnectionResetError, BrokenPipeError) as e:
            up_error.append("reset: " + str(e))
        except OSError as e:
            up_error.append(str(e))

    up = threading.Thread(target=uploader, daemon=True)
    if not a.up_after_first:
        up.start()
    checker = Checker()
    end = None
    if a.ready or a.up_after_first:
        # Ready once the first bytes came back (or at once if none will).
        if a.down != 0:
            s.settimeout(20)
            try:
                first = s.recv(1)
            except ConnectionResetError:
                # Reset before the first byte (the destination's RST can beat its
                # data: the agent's kernel drops what it had not read): still a
                # reset, never a clean end, and nothing received to check.
                first, end = b"", "reset"
            if first:
                checker.feed(first)
        if a.ready:
            open(a.ready, "w").close()
    if a.up_after_first:
        up.start()
    if end is None:
        try:
            end = recv_end(s, checker, a.rate, deadline)
        except OSError as e:
            end = "closed" if a.up_end == "rst" else f"error: {e}"
    up.join(timeout=5)
    if end == "eof" and any(e.startswith("reset") for e in up_error):
        end = "reset"  # the reset was reported to the uploader's send instead
    result = {"down_bytes": checker.n, "down_ok": checker.ok, "end": end, "t_end": time.time(),
              "t_ready": t_ready, "t_start": t_start, "up_error": up_error}
    line = json.dumps(result)
    print(line)
    if a.result:
        with open(a.result + ".tmp", "w") as f:
            f.write(line + "\n")
        os.rename(a.result + ".tmp", a.result)


def multi(argv):
    """N concurrent transfers; what became of each (see the module docstring)."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("proxy_port", type=int)
    p.add_argument("dest")
    p.add_argument("tag")
    p.add_argument("n", type=int)
    p.add_argument("bytes", type=int)
    p.add_argument("--rate", type=int)
    p.add_argument("--ready")
    p.add_argument("--result", required=True)
    p.add_argument("--max-seconds", type=float, default=60)
    a = p.parse_args(argv)
    outcomes = [None] * a.n
    started = [threading.Event() for _ in range(a.n)]  # first bytes in, or over

    def one(i):
        checker = Checker()
        try:
            s, status = proxy_connect(a.proxy_port, a.dest, slow=bool(a.rate))
            if b" 200 " not in status:
                outcomes[i] = ("refused", 0, True)
                return
            s.sendall(f"{a.tag}-{i} {a.bytes} fin\n".encode())
            first = s.recv(65536)
            if first:
                checker.feed(first)
            started[i].set()
            end = "eof" if not first else recv_end(s, checker, a.rate,
                                                   time.monotonic() + a.max_seconds)
            outcomes[i] = (end, checker.n, checker.ok)
        except (ConnectionResetError, BrokenPipeError):
            outcomes[i] = ("reset", checker.n, checker.ok)
        except OSError as e:
            outcomes[i] = (f"error: {e}", checker.n, checker.ok)
        finally:
            started[i].set()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(a.n)]
    for t in threads:
        t.start()
    if a.ready:
        for e in started:
            e.wait(30)
        open(a.ready, "w").close()
    for t in threads:
        t.join(a.max_seconds + 30)
    summary = {"complete": 0, "failed": 0, "truncated_clean": 0, "corrupt": 0, "other": []}
    for o in outcomes:
        end, n, ok = o if o else ("hung", 0, True)
        if not ok:
            summary["corrupt"] += 1
        if end == "eof" and n == a.bytes:
            summary["complete"] += 1
        elif end == "eof":
            summary["truncated_clean"] += 1  # must never happen: a failure that looks clean
        elif end in ("reset", "refused"):
            summary["failed"] += 1
        else:
            summary["other"].append(end)
    line = json.dumps(summary)
    print(line)
    with open(a.result + ".tmp", "w") as f:
        f.write(line + "\n")
    os.rename(a.result + ".tmp", a.result)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "dest":
        dest(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) >= 2 and sys.argv[1] == "app":
        app(sys.argv[2:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "multi":
        multi(sys.argv[2:])
    else:
        sys.exit(__doc__)
