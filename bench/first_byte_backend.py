# first_byte_backend.py PORT: writes one byte to every connection it accepts (the
# backend for dial latency: the first byte arrives as soon as the tunnel is up).
import socket, sys, threading
l = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=128)
def h(c):
    try:
        c.sendall(b"x"); c.recv(1)
    except OSError:
        pass
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=h, args=(c,), daemon=True).start()
