"""Transfers through Drawbridge client proxies (HTTP CONNECT) to an echo server,
checked byte for byte, for the replica tests.

  transfers.py burst PROXIES DEST N BYTES REPORT [SECONDS]
      N transfers at once, spread round-robin over PROXIES (comma-separated
      ports): each opens a tunnel to DEST, sends BYTES random bytes (paced over
      SECONDS, default 0: at once) and reads the echo back. Once all N tunnels
      are open it writes REPORT.open; at the end REPORT gets
      {"ok": K, "failed": F, "errors": {reason: count}, "opened": O}.
      A failure is visible (a refused CONNECT, a reset, an early end); wrong
      bytes are counted apart as "corrupt" and must never happen.

  transfers.py steady PROXIES DEST RATE STOP_FILE REPORT
      New tunnels at RATE per second, round-robin over PROXIES, each echoing
      4 KiB, until STOP_FILE exists; REPORT gets {"dials": D, "failed": F,
      "failures": [[seconds_since_start, proxy, reason], ...]}. For rolling
      restarts: every failure is a failed new dial.

  transfers.py probe PROXIES DEST SINCE
      Through each proxy at once, a new tunnel (echoing 16 bytes) every 50 ms
      until one succeeds; prints "FASTEST SLOWEST": the milliseconds from SINCE
      (a Unix time) to the first success through the fastest and the slowest
      proxy (999999 for a proxy with none within 20 s).

Bounded: stops by itself after 10 minutes.
"""
import asyncio, hashlib, json, os, sys, time

LIMIT = 600


async def tunnel(proxy, dest):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy), 10)
    writer.write(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    status = head.split(b"\r\n")[0]
    if b" 200 " not in status:
        writer.close()
        raise ConnectionError("CONNECT refused: " + status.decode(errors="replace"))
    return reader, writer


async def echo(reader, writer, payload, seconds):
    chunks = max(1, int(seconds * 10)) if seconds > 0 else 1
    size = (len(payload) + chunks - 1) // chunks

    async def send():
        for i in range(0, len(payload), size):
            writer.write(payload[i:i + size])
            await writer.drain()
            if seconds > 0:
                await asyncio.sleep(seconds / chunks)

    sender = asyncio.ensure_future(send())
    got = bytearray()
    try:
        while len(got) < len(payload):
            data = await asyncio.wait_for(reader.read(65536), 30)
            if not data:
                raise ConnectionError("ended early (%d of %d bytes)" % (len(got), len(payload)))
            got += data
        await sender
    finally:
        sender.cancel()
        writer.close()
    return bytes(got)


def reason(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, ConnectionResetError):
        return "reset"
    text = str(e) or type(e).__name__
    return text.split(" (")[0][:80]


async def burst(proxies, dest, n, nbytes, report, seconds):
    results = {"ok": 0, "failed": 0, "corrupt": 0, "opened": 0, "errors": {}}
    opened = asyncio.Event()

    async def one(i):
        payload = os.urandom(nbytes)
        try:
            reader, writer = await tunnel(proxies[i % len(proxies)], dest)
            results["opened"] += 1
            if results["opened"] == n:
                opened.set()
            await opened.wait()  # all N at once
            got = await echo(reader, writer, payload, seconds)
            if hashlib.sha256(got).digest() != hashlib.sha256(payload).digest():
                results["corrupt"] += 1
                return
            results["ok"] += 1
        except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            if not opened.is_set():
                opened.set()  # one failed to open: let the others go on
            results["failed"] += 1
            r = reason(e)
            results["errors"][r] = results["errors"].get(r, 0) + 1

    async def mark_open():
        await opened.wait()
        open(report + ".open", "w").close()

    marker = asyncio.ensure_future(mark_open())
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), LIMIT)
    marker.cancel()
    with open(report, "w") as f:
        json.dump(results, f)


async def steady(proxies, dest, rate, stop_file, report):
    start = time.time()
    results = {"dials": 0, "failed": 0, "failures": []}
    tasks = []

    async def one(i):
        proxy = proxies[i % len(proxies)]
        payload = os.urandom(4096)
        try:
            reader, writer = await tunnel(proxy, dest)
            got = await echo(reader, writer, payload, 0)
            if got != payload:
                raise ConnectionError("corrupt echo")
        except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            results["failed"] += 1
            results["failures"].append([round(time.time() - start, 3), proxy, reason(e)])

    i = 0
    while not os.path.exists(stop_file) and time.time() - start < LIMIT:
        tasks.append(asyncio.ensure_future(one(i)))
        results["dials"] += 1
        i += 1
        await asyncio.sleep(1.0 / rate)
    await asyncio.gather(*tasks)
    with open(report, "w") as f:
        json.dump(results, f)


async def probe(proxies, dest, since):
    async def first_success(proxy):
        while time.time() - since < 20:
            try:
                reader, writer = await tunnel(proxy, dest)
                if await echo(reader, writer, b"0123456789abcdef", 0) == b"0123456789abcdef":
                    return time.time()
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            await asyncio.sleep(0.05)
        return None

    times = await asyncio.gather(*(first_success(p) for p in proxies))
    ms = sorted(999999 if t is None else round((t - since) * 1000) for t in times)
    print(ms[0], ms[-1])


def main():
    mode, proxies, dest = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], sys.argv[3]
    if mode == "burst":
        seconds = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
        asyncio.run(burst(proxies, dest, int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], seconds))
    elif mode == "steady":
        asyncio.run(steady(proxies, dest, float(sys.argv[4]), sys.argv[5], sys.argv[6]))
    elif mode == "probe":
        asyncio.run(probe(proxies, dest, float(sys.argv[4])))
    else:
        sys.exit("usage: transfers.py burst|steady ...")


if __name__ == "__main__":
    main()
