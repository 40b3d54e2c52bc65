"""A round-robin TCP load balancer in front of server replicas, for tests.

  balancer.py LISTEN_PORT STATS_FILE BACKEND_PORT:METRICS_PORT ...

Listens on 127.0.0.1:LISTEN_PORT and passes each connection, byte for byte, to
the next backend (127.0.0.1:BACKEND_PORT) in turn, as a TCP load balancer in
front of replicas does. Like one with health checks (a Kubernetes Service
with readiness probes, HAProxy's `check`), it asks each backend's /readyz on
127.0.0.1:METRICS_PORT every 100 ms and skips those not ready (all are tried
when none is); a backend that refuses the connection is skipped for the next
one. STATS_FILE gets {"connections": {BACKEND_PORT: N, ...}} after each
connection. Stops by itself after 30 minutes.
"""
import asyncio, json, os, sys, time


class Balancer:
    def __init__(self, stats_file, backends):
        self.stats_file = stats_file
        self.backends = backends  # [(port, metrics_port)]
        self.ready = {port: True for port, _ in backends}
        self.counts = {port: 0 for port, _ in backends}
        self.next = 0

    async def check(self):
        while True:
            for port, metrics in self.backends:
                self.ready[port] = await self.readyz(metrics)
            await asyncio.sleep(0.1)

    @staticmethod
    async def readyz(metrics):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", metrics), 0.5)
            writer.write(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            line = await asyncio.wait_for(reader.readline(), 0.5)
            writer.close()
            return b" 200 " in line
        except (OSError, asyncio.TimeoutError):
            return False

    def order(self):
        n = len(self.backends)
        start = self.next
        self.next = (self.next + 1) % n
        ports = [self.backends[(start + i) % n][0] for i in range(n)]
        ready = [p for p in ports if self.ready[p]]
        return ready + [p for p in ports if p not in ready]

    async def handle(self, client_reader, client_writer):
        for port in self.order():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 1)
            except (OSError, asyncio.TimeoutError):
                continue
            self.counts[port] += 1
            tmp = self.stats_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"connections": {str(p): c for p, c in self.counts.items()}}, f)
            os.replace(tmp, self.stats_file)
            await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))
            return
        client_writer.close()


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def main():
    listen, stats_file = int(sys.argv[1]), sys.argv[2]
    backends = [tuple(int(x) for x in b.split(":")) for b in sys.argv[3:]]
    lb = Balancer(stats_file, backends)
    server = await asyncio.start_server(lb.handle, "127.0.0.1", listen, backlog=1024)
    checker = asyncio.ensure_future(lb.check())
    async with server:
        await asyncio.sleep(1800)  # bounded: a test never runs this long
    checker.cancel()


if __name__ == "__main__":
    asyncio.run(main())
