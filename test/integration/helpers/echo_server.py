"""echo_server.py PORT: echoes every connection's bytes back until it closes."""
import socket, sys, threading

def serve(c):
    try:
        while True:
            data = c.recv(65536)
            if not data:
                break
            c.sendall(data)
    except OSError:
        pass
    c.close()

listener = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=256)
while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
