"""A TCP proxy on loopback that injects network faults between two hops.

  fault_proxy.py LISTEN_PORT TARGET_PORT MODE_FILE

Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT. MODE_FILE holds one
word, re-read every 20 ms (write it with `echo MODE > FILE.tmp && mv`):

  pass    forward both ways (also when MODE_FILE does not exist)
  stall   forward nothing either way, keep every connection open (a partition
          that drops packets without telling anyone); forwarding resumes with
          the next "pass", nothing lost
  reset   reset (SO_LINGER 0) every live connection, both sides, and reset new
          ones at once, until the mode changes

Each reset is counted on stdout ("reset N"). Stops by itself after an hour.
"""
import os, select, socket, struct, sys, threading, time

LISTEN, TARGET, MODE_FILE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
mode = "pass"
lock = threading.Lock()
live = set()  # (client_socket, upstream_socket)


def read_mode():
    global mode
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        try:
            with open(MODE_FILE) as f:
                m = f.read().strip() or "pass"
        except FileNotFoundError:
            m = "pass"
        if m == "reset" and mode != "reset":
            with lock:
                pairs = list(live)
            for pair in pairs:
                reset(pair)
            print("reset", len(pairs), flush=True)
        mode = m
        time.sleep(0.02)
    os._exit(0)


def reset(pair):
    with lock:
        live.discard(pair)
    for s in pair:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass


def pump(pair):
    """Copies both ways until either side ends (then closes both: gRPC never half-closes)."""
    other = {pair[0]: pair[1], pair[1]: pair[0]}
    try:
        while mode != "reset":
            if mode == "stall":
                time.sleep(0.01)
                continue
            r, _, _ = select.select(pair, [], [], 0.05)
            for s in r:
                data = s.recv(65536)
                if not data:
                    raise EOFError
                while mode == "stall":  # hold what was read until the stall ends
                    time.sleep(0.01)
                other[s].sendall(data)
    except (OSError, EOFError, ValueError):
        pass
    if mode == "reset":
        reset(pair)
    else:
        close(pair)


def close(pair):
    with lock:
        live.discard(pair)
    for s in pair:
        try:
            s.close()
        except OSError:
            pass


def main():
    threading.Thread(target=read_mode, daemon=True).start()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", LISTEN))
    srv.listen(512)
    while True:
        c, _ = srv.accept()
        if mode == "reset":
            reset((c,))
            continue
        try:
            u = socket.create_connection(("127.0.0.1", TARGET), timeout=5)
        except OSError:
            reset((c,))
            continue
        u.settimeout(None)
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (c, u)
        with lock:
            live.add(pair)
        threading.Thread(target=pump, args=(pair,), daemon=True).start()


if __name__ == "__main__":
    main()
