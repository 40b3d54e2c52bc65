#!/usr/bin/env python3
"""Drawbridge side by side with the tools users would otherwise pick, on loopback.

  bench/compare.py [--quick] [--bin build/drawbridge] [--out bench/results]

Systems (the same backends behind each, reached through a local port on 127.0.0.1):
  direct        the backend itself (the limit)
  ssh-aes       OpenSSH reverse tunnel (`ssh -R`, the agent side dials out), aes128-gcm
  ssh-chacha    the same with chacha20-poly1305
  stunnel       a two-hop stunnel mTLS chain, TLS 1.3 on both hops:
                app -> client stunnel -> broker stunnel (terminates, re-originates)
                -> agent-like stunnel -> backend
  drawbridge    app -> client --forward -> server -> agent -> backend, as deployed
                (tunnel bytes on lanes: the server's data port, docs/tunnel.md)
  drawbridge-grpc  the same with --no-lanes on client and agent: gRPC streams only

Scenarios run interleaved (each repetition runs every scenario on every system in
turn); the report gives the median and min-max per cell, and for Drawbridge its
ratio to the best peer (direct loopback is the limit, not a peer). Memory and CPU are
measured once per system. Results: OUT/latest.json and OUT/latest.md; --readme
replaces the block between the bench markers in README.md.

Loopback only; every process it starts is stopped on exit.
"""
import argparse
import getpass
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYSTEMS = ["direct", "ssh-aes", "ssh-chacha", "stunnel", "drawbridge", "drawbridge-grpc"]
PEERS = ["ssh-aes", "ssh-chacha", "stunnel"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Processes:
    """Every process started, stopped (TERM, then KILL) on exit."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, argv, **kw):
        log = open(os.path.join(self.work, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def run(argv, timeout=120, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    return r.stdout


# ----------------------------------------------------------------------------- backends

FIRST_BYTE_BACKEND = os.path.join(HERE, "first_byte_backend.py")
IDLE_BACKEND = """
import asyncio, os, sys
open_now = 0
async def hold(reader, writer):
    global open_now
    open_now += 1
    try:
        await reader.read()
    finally:
        open_now -= 1
        writer.close()
async def report(path):
    while True:
        with open(path + ".tmp", "w") as f:
            f.write(str(open_now))
        os.replace(path + ".tmp", path)
        await asyncio.sleep(0.2)
async def main():
    server = await asyncio.start_server(hold, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    asyncio.create_task(report(sys.argv[2]))
    await server.serve_forever()
asyncio.run(main())
"""


def start_backends(ps, work):
    b = {name: free_port() for name in ["nginx", "iperf", "sockperf", "first_byte", "idle"]}
    www = os.path.join(work, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("x" * 1024)  # a 1 KiB page
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_timeout 3600;
  keepalive_requests 100000000;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  server {{
    listen 127.0.0.1:{b['nginx']};
    root {www};
  }}
}}
""")
    ps.start("nginx", ["nginx", "-c", conf, "-p", work])
    ps.start("iperf3", ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(b["iperf"])])
    ps.start("sockperf", ["sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p", str(b["sockperf"])])
    ps.start("first_byte", [sys.executable, FIRST_BYTE_BACKEND, str(b["first_byte"])])
    ps.start("idle", [sys.executable, "-c", IDLE_BACKEND, str(b["idle"]),
                      os.path.join(work, "idle-open")])
    for port in b.values():
        wait_port(port)
    return b


# ----------------------------------------------------------------------------- systems
# Each system maps every backend port to a local port that reaches it, and names the
# processes playing the broker and the agent (for memory and CPU).

class System:
    name = ""

    def __init__(self, ps, work, backends):
        self.ps, self.work, self.backends = ps, work, backends
        self.ports = {}
        self.broker = []  # processes (Popen) whose RSS is "server"
        self.agent = []

    def pids(self):
        return [p.pid for p in self.broker + self.agent]


class Direct(System):
    name = "direct"

    def start(self):
        self.ports = dict(self.backends)


class SshReverse(System):
    def __init__(self, ps, work, backends, cipher, name):
        super().__init__(ps, work, backends)
        self.cipher, self.name = cipher, name

    def start(self):
        d = os.path.join(self.work, self.name)
        os.makedirs(d, exist_ok=True)
        for key in ["host_key", "user_key"]:
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, key)])
        os.rename(os.path.join(d, "user_key.pub"), os.path.join(d, "authorized_keys"))
        port = free_port()
        with open(os.path.join(d, "sshd_config"), "w") as f:
            f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile {d}/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Ciphers {self.cipher}
MaxStartups 100
""")
        os.makedirs("/run/sshd", exist_ok=True)
        self.broker.append(self.ps.start(self.name + "-sshd",
                                         ["/usr/sbin/sshd", "-D", "-e", "-f", d + "/sshd_config"]))
        wait_port(port)
        argv = ["ssh", "-N", "-F", "/dev/null", "-i", d + "/user_key", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", f"Ciphers={self.cipher}",
                "-p", str(port)]
        for name, backend in self.backends.items():
            self.ports[name] = free_port()
            argv += ["-R", f"127.0.0.1:{self.ports[name]}:127.0.0.1:{backend}"]
        argv.append(f"{getpass.getuser()}@127.0.0.1")
        self.agent.append(self.ps.start(self.name + "-ssh", argv))
        for p in self.ports.values():
            wait_port(p)

    def pids(self):
        # sshd forks a process per session: count the whole broker process tree.
        return [p.pid for p in self.agent] + descendants(self.broker[0].pid, include_self=True)


class Stunnel(System):
    name = "stunnel"

    def start(self):
        d = os.path.join(self.work, "stunnel")
        os.makedirs(d, exist_ok=True)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=ca", "-keyout", d + "/ca.key", "-out", d + "/ca.pem"])
        for who in ["client", "broker", "agent"]:
            run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", f"/CN={who}", "-keyout", f"{d}/{who}.key", "-out", f"{d}/{who}.csr"])
            run(["openssl", "x509", "-req", "-in", f"{d}/{who}.csr", "-CA", d + "/ca.pem", "-CAkey",
                 d + "/ca.key", "-CAcreateserial", "-days", "2", "-out", f"{d}/{who}.pem"])
        tls = "sslVersionMin = TLSv1.3\nverifyChain = yes\nCAfile = {d}/ca.pem\n"
        confs = {"client": "", "broker": "", "agent": ""}
        for name, backend in self.backends.items():
            self.ports[name] = free_port()
            hop1, relay, hop2 = free_port(), free_port(), free_port()
            # client: plain in, TLS to the broker
            confs["client"] += f"[{name}]\nclient = yes\naccept = 127.0.0.1:{self.ports[name]}\n" \
                               f"connect = 127.0.0.1:{hop1}\n"
            # broker: TLS in from the client, plain to its own relay; relay: plain in, TLS to the agent
            confs["broker"] += f"[{name}-in]\naccept = 127.0.0.1:{hop1}\nconnect = 127.0.0.1:{relay}\n" \
                               f"[{name}-out]\nclient = yes\naccept = 127.0.0.1:{relay}\n" \
                               f"connect = 127.0.0.1:{hop2}\n"
            # agent: TLS in from the broker, plain to the backend
            confs["agent"] += f"[{name}]\naccept = 127.0.0.1:{hop2}\nconnect = 127.0.0.1:{backend}\n"
        for who, services in confs.items():
            path = f"{d}/{who}.conf"
            with open(path, "w") as f:
                f.write(f"foreground = yes\npid =\ncert = {d}/{who}.pem\nkey = {d}/{who}.key\n"
                        + tls.format(d=d) + "debug = 3\n" + services)
            p = self.ps.start("stunnel-" + who, ["stunnel", path])
            (self.broker if who == "broker" else self.agent if who == "agent" else []).append(p)
        for p in self.ports.values():
            wait_port(p)


class Drawbridge(System):
    name = "drawbridge"

    def __init__(self, ps, work, backends, binary, name):
        super().__init__(ps, work, backends)
        self.bin = binary
        self.name = name
        self.extra = ["--no-lanes"] if name == "drawbridge-grpc" else []

    def start(self):
        d = os.path.join(self.work, self.name)
        os.makedirs(d, exist_ok=True)
        sp = free_port()
        run([self.bin, "server", "init", "--data-dir", d + "/server", "--trust-domain", "bench.local",
             "--listen", f"127.0.0.1:{sp}"])
        # The bench measures capacity: the per-identity dial rate limit (1,000/s by
        # default, docs/operations.md) would cap the connections-per-second scenario.
        with open(d + "/server/server.yaml", "a") as f:
            f.write("dial_rate_per_second: 0\n")
        dests = ", ".join(f'"127.0.0.1:{p}"' for p in self.backends.values())
        with open(d + "/policy.yaml", "w") as f:
            f.write(f'rules:\n  - name: bench\n    clients: ["client/bench"]\n'
                    f'    agents: ["agent/bench"]\n    destinations: [{dests}]\n')
        self.broker.append(self.ps.start("drawbridge-server", [
            self.bin, "--log-level", "warn", "server", "--data-dir", d + "/server",
            "--policy", d + "/policy.yaml", "--metrics-listen", "off"]))
        wait_port(sp)
        admin = [self.bin, "admin", "--credentials", d + "/server/admin.json"]
        run(admin + ["identity", "create", "agent/bench", "--out", d + "/agent.json"])
        run(admin + ["identity", "create", "client/bench", "--out", d + "/client.json"])
        argv = [self.bin, "--log-level", "warn", "agent", "--credentials", d + "/agent.json",
                "--data-dir", d + "/agent-data"]
        for p in self.backends.values():
            argv += ["--allow", f"127.0.0.1/32:{p}"]
        argv += self.extra
        self.agent.append(self.ps.start("drawbridge-agent", argv))
        argv = [self.bin, "--log-level", "warn", "client", "--credentials", d + "/client.json"]
        argv += self.extra
        for name, backend in self.backends.items():
            self.ports[name] = free_port()
            argv += ["--forward", f"127.0.0.1:{self.ports[name]}=127.0.0.1:{backend}"]
        self.client = self.ps.start("drawbridge-client", argv)
        for p in self.ports.values():
            wait_port(p)
        # The agent registers asynchronously: the first dial proves the path is up.
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.ports["first_byte"]), 5) as s:
                    s.settimeout(5)
                    if s.recv(1) == b"x":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("drawbridge: the tunnel did not come up")


# ----------------------------------------------------------------------------- measuring

def descendants(pid, include_self=False):
    out = [pid] if include_self else []
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return out
    for c in children:
        out += descendants(int(c), include_self=True)
    return out


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except OSError:
            pass
    return total


def iperf(port, streams, seconds, system):
    pids = system.pids() + ([system.client.pid] if hasattr(system, "client") else [])
    # iperf3's server runs one test at a time and may still be closing the last one.
    for attempt in range(5):
        before = cpu_seconds(pids)
        out = json.loads(subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-P", str(streams),
             "-J"], capture_output=True, text=True, timeout=seconds + 60).stdout or "{}")
        cpu = cpu_seconds(pids) - before
        if "sum_received" in out.get("end", {}):
            break
        time.sleep(1 + attempt)
    else:
        raise RuntimeError(f"iperf3 failed: {out.get('error', 'no result')}")
    received = out["end"]["sum_received"]
    gib = received["bytes"] / 2 ** 30
    return received["bits_per_second"] / 1e9, (cpu / gib if gib > 0 else None)


def wrk(port, conns, seconds, close=False):
    argv = ["wrk", "-t", "2" if conns > 1 else "1", "-c", str(conns), "-d", f"{seconds}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    out = run(argv + [f"http://127.0.0.1:{port}/index.html"], timeout=seconds + 60)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[pct] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]
    # A run that got error pages or lost connections measured something else.
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} of {requests} responses were not 2xx/3xx")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock and sum(int(x) for x in sock.groups()) > requests // 100:
        raise RuntimeError(f"socket errors: {sock.group(0)} in {requests} requests")
    return rps, lat.get("50"), lat.get("99")


def rtt(port, seconds):
    # sockperf's smallest message is 14 bytes (its header): the closest to 1 byte it does.
    out = run(["sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p", str(port), "-t", str(seconds),
               "-m", "14"], timeout=seconds + 60)
    p = dict(re.findall(r"percentile\s+([\d.]+)\s+=\s+([\d.]+)", out))
    return float(p["50.000"]), float(p["99.000"])


def dial(port, n):
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), 10) as s:
            s.settimeout(10)
            if s.recv(1) != b"x":
                raise RuntimeError("first-byte backend answered wrongly")
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def hold_idle(port, n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.5)
    return socks


def backend_open(work):
    try:
        return int(open(os.path.join(work, "idle-open")).read() or 0)
    except (OSError, ValueError):
        return 0


def memory(system, port, counts, wait=60):
    """RSS of the broker and the agent idle and with N idle tunneled connections.

    Counts only once the backend holds all N (each went all the way through), and
    reports how many got there if not all did within `wait` seconds."""
    broker = lambda: rss_bytes(descendants(system.broker[0].pid, True)) if system.broker else None
    agent = lambda: rss_bytes([p.pid for p in system.agent]) if system.agent else None
    out = {"server_idle": broker(), "agent_idle": agent()}
    for n in counts:
        socks = hold_idle(port, n)
        deadline = time.time() + wait
        while backend_open(system.work) < n and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # let buffers settle
        out[f"reached_{n}"] = backend_open(system.work)
        out[f"server_{n}"] = broker()
        out[f"agent_{n}"] = agent()
        for s in socks:
            s.close()
        deadline = time.time() + 30
        while backend_open(system.work) > 0 and time.time() < deadline:
            time.sleep(0.2)
    return out


def fresh_rss(system):
    """RSS of the broker and the agent right after start, before any load."""
    out = {}
    if system.broker:
        out["server"] = rss_bytes(descendants(system.broker[0].pid, True))
    if system.agent:
        out["agent"] = rss_bytes([p.pid for p in system.agent])
    return out


def add_memory_rows(rows, m, counts):
    """Idle RSS, and memory per connection that got through, at the largest count tried
    (ssh accepts forwarded connections slowly, so not all of them may have)."""
    for role in ["server", "agent"]:
        fresh = rows.get("fresh", {}).get(role)
        rows.setdefault(f"mem_{role}_fresh", []).append(fresh / 2 ** 20 if fresh else None)
    n = max(counts)
    reached = m.get(f"reached_{n}") or 0
    rows.setdefault("mem_per_conn_at", []).append(reached)
    for role in ["server", "agent"]:
        idle = m.get(f"{role}_idle")
        rows.setdefault(f"mem_{role}_idle", []).append(idle / 2 ** 20 if idle else None)
        loaded = m.get(f"{role}_{n}")
        rows.setdefault(f"mem_{role}_per_conn", []).append(
            (loaded - idle) / reached / 1024 if reached and loaded and idle else None)


# ----------------------------------------------------------------------------- report

ROWS = [  # key, label, unit, higher is better
    ("tput1", "Bulk throughput, 1 stream (iperf3)", "Gbit/s", True),
    ("tput4", "Bulk throughput, 4 streams (iperf3)", "Gbit/s", True),
    ("rps64", "HTTP requests/s, 64 keep-alive connections (wrk)", "req/s", True),
    ("p50_64", "  latency p50, 64 connections", "ms", False),
    ("p99_64", "  latency p99, 64 connections", "ms", False),
    ("rps1", "HTTP requests/s, 1 connection (wrk)", "req/s", True),
    ("p50_1", "  latency p50, 1 connection", "ms", False),
    ("p99_1", "  latency p99, 1 connection", "ms", False),
    ("cps", "New connections/s, one request each (wrk, Connection: close)", "conn/s", True),
    ("rtt50", "Ping-pong RTT p50, 14-byte messages (sockperf)", "µs", False),
    ("rtt99", "Ping-pong RTT p99", "µs", False),
    ("dial50", "Dial latency p50 (connect to first backend byte)", "ms", False),
    ("dial99", "Dial latency p99", "ms", False),
    ("cpu_gib", "CPU seconds per GiB (1-stream bulk, tunnel processes)", "s/GiB", False),
    ("mem_server_fresh", "Server RSS, idle after start", "MiB", False),
    ("mem_agent_fresh", "Agent RSS, idle after start", "MiB", False),
    ("mem_server_idle", "Server RSS, idle 15 s after the load scenarios", "MiB", False),
    ("mem_agent_idle", "Agent RSS, idle 15 s after the load scenarios", "MiB", False),
    ("mem_server_per_conn", "Server memory per idle tunneled connection (at N)", "KiB", False),
    ("mem_agent_per_conn", "Agent memory per idle tunneled connection (at N)", "KiB", False),
]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(samples):
    samples = [s for s in samples if s is not None]
    if not samples:
        return None, "-"
    med = statistics.median(samples)
    if len(samples) == 1:
        return med, fmt(med)
    return med, f"{fmt(med)} ({fmt(min(samples))}–{fmt(max(samples))})"


def report(results, machine, args):
    lines = [f"Machine: {machine}. Mode: {'quick' if args.quick else 'full'}, "
             f"{args.reps} repetition(s), median (min–max). Ratio: Drawbridge / best peer "
             f"(ssh, stunnel; > 1 is better for rates, < 1 for times and sizes).", "",
             *([f"Failed runs (left out): {'; '.join(results['failures'])}", ""]
               if results.get("failures") else []),
             "| scenario | unit | " + " | ".join(SYSTEMS) + " | Drawbridge vs best peer |",
             "|---|---|" + "---|" * len(SYSTEMS) + "---|"]
    for key, label, unit, higher in ROWS:
        meds, cells = {}, []
        for system in SYSTEMS:
            med, text = cell(results.get(system, {}).get(key, []))
            at = results.get(system, {}).get("mem_per_conn_at")
            if key.endswith("_per_conn") and med is not None and at:
                text += f" (N={at[0]:,})"
            meds[system] = med
            cells.append(text)
        peers = [meds[p] for p in PEERS if meds.get(p) is not None]
        ratio = "-"
        if peers and meds.get("drawbridge") is not None:
            best = max(peers) if higher else min(peers)
            if best:
                ratio = f"{meds['drawbridge'] / best:.2f}×"
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines) + "\n"


def machine_info():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true", help="shorter runs (about 3 minutes)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "drawbridge"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--readme", action="store_true", help="put the table into README.md")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--from-json", help="re-render the report of an earlier run's JSON")
    args = ap.parse_args()
    if args.from_json:
        data = json.load(open(args.from_json))
        args.quick, args.reps = data["quick"], data["repetitions"]
        results = data["results"]
        for system, rows in results.items():
            if isinstance(rows, dict) and "memory" in rows:
                for key in [k for k in rows if k.startswith("mem_")]:
                    del rows[key]
                counts = sorted(int(k.split("_")[1]) for k in rows["memory"] if k.startswith("reached_"))
                add_memory_rows(rows, rows["memory"], counts)
        print(report(results, data["machine"], args))
        return
    args.reps = 1 if args.quick else 3
    secs = 2 if args.quick else 4
    dials = 100 if args.quick else 300
    idle_counts = [1000] if args.quick else [1000, 10000]
    wanted = args.systems.split(",")
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)

    work = tempfile.mkdtemp(prefix="drawbridge-bench.")
    # nginx's workers run as an unprivileged user and must read the page under it.
    os.chmod(work, 0o755)
    ps = Processes(work)
    started = time.time()
    results = {s: {} for s in SYSTEMS}
    results["failures"] = []

    def add(system, key, value):
        results[system].setdefault(key, []).append(value)

    try:
        backends = start_backends(ps, work)
        systems = {
            "direct": Direct(ps, work, backends),
            "ssh-aes": SshReverse(ps, work, backends, "aes128-gcm@openssh.com", "ssh-aes"),
            "ssh-chacha": SshReverse(ps, work, backends, "chacha20-poly1305@openssh.com", "ssh-chacha"),
            "stunnel": Stunnel(ps, work, backends),
            "drawbridge": Drawbridge(ps, work, backends, os.path.abspath(args.bin), "drawbridge"),
            "drawbridge-grpc": Drawbridge(ps, work, backends, os.path.abspath(args.bin),
                                          "drawbridge-grpc"),
        }
        systems = {k: v for k, v in systems.items() if k in wanted}
        for s in systems.values():
            s.start()
            print(f"[{time.time() - started:5.0f}s] {s.name} up", flush=True)
        for name, s in systems.items():
            results[name]["fresh"] = fresh_rss(s)
        failures = []

        def measure(name, what, fn):
            try:
                return fn()
            except Exception as e:  # one failed run must not lose the others
                failures.append(f"{name} {what}: {e}")
                print(f"  {name} {what} failed: {e}", flush=True)
                return None

        for rep in range(args.reps):
            for name, s in systems.items():
                r = measure(name, "iperf3 -P1", lambda: iperf(s.ports["iperf"], 1, secs, s))
                if r:
                    add(name, "tput1", r[0])
                    if name != "direct":
                        add(name, "cpu_gib", r[1])
                r = measure(name, "iperf3 -P4", lambda: iperf(s.ports["iperf"], 4, secs, s))
                if r:
                    add(name, "tput4", r[0])
                r = measure(name, "wrk -c64", lambda: wrk(s.ports["nginx"], 64, secs))
                if r:
                    add(name, "rps64", r[0]), add(name, "p50_64", r[1]), add(name, "p99_64", r[2])
                r = measure(name, "wrk -c1", lambda: wrk(s.ports["nginx"], 1, secs))
                if r:
                    add(name, "rps1", r[0]), add(name, "p50_1", r[1]), add(name, "p99_1", r[2])
                r = measure(name, "wrk close", lambda: wrk(s.ports["nginx"], 16, secs, close=True))
                if r:
                    add(name, "cps", r[0])
                r = measure(name, "sockperf", lambda: rtt(s.ports["sockperf"], secs))
                if r:
                    add(name, "rtt50", r[0]), add(name, "rtt99", r[1])
                r = measure(name, "dial", lambda: dial(s.ports["first_byte"], dials))
                if r:
                    add(name, "dial50", r[0]), add(name, "dial99", r[1])
                print(f"[{time.time() - started:5.0f}s] rep {rep + 1}: {name} done", flush=True)
        results["failures"] = failures
        settled = False
        for name, s in systems.items():
            if name == "direct":
                continue
            if not settled:
                time.sleep(15)  # memory phase: every system idle for 15 s first
                settled = True
            m = measure(name, "memory",
                        lambda: memory(s, s.ports["idle"], idle_counts, 15 if args.quick else 60))
            if not m:
                continue
            results[name]["memory"] = m
            add_memory_rows(results[name], m, idle_counts)
            if m.get(f"reached_{idle_counts[-1]}") != idle_counts[-1]:
                print(f"  {name}: {m.get(f'reached_{idle_counts[-1]}')} of {idle_counts[-1]} idle "
                      "connections got through in time", flush=True)
            print(f"[{time.time() - started:5.0f}s] memory: {name} done", flush=True)
    finally:
        ps.stop()

    machine = machine_info()
    table = report(results, machine, args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump({"machine": machine, "quick": args.quick, "repetitions": args.reps,
                   "seconds_per_run": secs, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "results": results}, f, indent=2)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(table)
    print(table)
    print(f"took {time.time() - started:.0f} s; results in {args.out}/latest.{{md,json}}")
    if args.readme:
        path = os.path.join(ROOT, "README.md")
        text = open(path).read()
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        if begin in text and end in text:
            text = text[:text.index(begin) + len(begin)] + "\n" + table + text[text.index(end):]
            open(path, "w").write(text)
    import shutil
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
