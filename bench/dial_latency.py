# dial_latency.py PROXY_PORT TARGET N: time from sending CONNECT to receiving the
# backend's first byte (the backend writes one on accept), over N sequential
# connections; prints p50/p90/p99/max in ms, and the same for the proxy's
# "200" reply alone (the dial's setup; the rest is the first byte's way back).
import socket, sys, time
port, target, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
samples, replies = [], []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    replies.append((time.perf_counter() - t0) * 1000)
    rest = buf.split(b"\r\n\r\n", 1)[1]
    if not rest:
        s.recv(1)
    samples.append((time.perf_counter() - t0) * 1000)
    s.close()


def summary(xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return f"p50={q(0.5):.2f}ms p90={q(0.9):.2f}ms p99={q(0.99):.2f}ms max={xs[-1]:.2f}ms"


print(f"n={n} {summary(samples)}")
print(f"reply {summary(replies)}", file=sys.stderr)
