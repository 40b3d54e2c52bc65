"""Many concurrent tunneled connections, for the scale test.

  scale_load.py echo PORT
      An echo server on 127.0.0.1:PORT (asyncio; any number of connections).

  scale_load.py open PROXY_PORT DEST N --hold-file FILE --report FILE
      Opens N connections through the client's HTTP CONNECT proxy at PROXY_PORT to
      DEST (an echo server), at most 256 handshakes in flight at once. Each sends a
      16-byte token of its own and must get it back. With all N open, writes
      {"open": N, "failed": F, "seconds": S} to --report, then waits until
      --hold-file disappears, checks every connection once more (another token,
      echoed), closes them all and appends {"alive": A, "echo_ok": E} to --report.
      Stops by itself after 10 minutes.
"""
import asyncio, json, os, sys, time


async def echo(port):
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await asyncio.sleep(1800)  # bounded: a test never runs this long


async def one(proxy_port, dest, i, sem):
    token = b"%015d\n" % i
    async with sem:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", proxy_port), 30)
        writer.write(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        if b" 200 " not in head.split(b"\r\n")[0]:
            writer.close()
            raise ConnectionError(head.split(b"\r\n")[0].decode())
        writer.write(token)
        got = await asyncio.wait_for(reader.readexactly(len(token)), 60)
        if got != token:
            raise ConnectionError("wrong echo")
    return reader, writer, token


async def check(conn):
    reader, writer, token = conn
    try:
        writer.write(token)
        got = await asyncio.wait_for(reader.readexactly(len(token)), 60)
        return got == token
    except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        return False


async def open_many(proxy_port, dest, n, hold_file, report):
    sem = asyncio.Semaphore(256)
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(proxy_port, dest, i, sem) for i in range(n)),
                                   return_exceptions=True)
    conns = [r for r in results if not isinstance(r, BaseException)]
    errors = {}
    for r in results:
        if isinstance(r, BaseException):
            k = f"{type(r).__name__}: {r}"[:120]
            errors[k] = errors.get(k, 0) + 1
    with open(report, "w") as f:
        json.dump({"open": len(conns), "failed": n - len(conns),
                   "seconds": round(time.monotonic() - t0, 1), "errors": errors}, f)
        f.write("\n")
    deadline = time.monotonic() + 600
    while os.path.exists(hold_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    oks = await asyncio.gather(*(check(c) for c in conns))
    for _, w, _ in conns:
        w.close()
    with open(report, "a") as f:
        json.dump({"alive": len(conns), "echo_ok": sum(oks)}, f)
        f.write("\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "echo":
        asyncio.run(echo(int(sys.argv[2])))
    elif len(sys.argv) >= 5 and sys.argv[1] == "open":
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("proxy_port", type=int)
        p.add_argument("dest")
        p.add_argument("n", type=int)
        p.add_argument("--hold-file", required=True)
        p.add_argument("--report", required=True)
        a = p.parse_args(sys.argv[2:])
        asyncio.run(open_many(a.proxy_port, a.dest, a.n, a.hold_file, a.report))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
