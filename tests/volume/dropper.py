#!/usr/bin/env python3
"""dropper.py LISTEN SERVER EVERY - a volume-protocol proxy that resets
connections the way a snapshot restore resets vsock: every EVERY-th
request frame (across all connections) is swallowed and both sides of its
connection are closed, so the client must reconnect and send the request
again. Prints "dropped N" to stdout after each reset."""
import os
import socket
import struct
import sys
import threading

LISTEN, SERVER, EVERY = sys.argv[1], sys.argv[2], int(sys.argv[3])
lock = threading.Lock()
count = [0, 0]  # frames, drops


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def pump_back(srv, cli):
    try:
        while True:
            b = srv.recv(65536)
            if not b:
                break
            cli.sendall(b)
    except OSError:
        pass
    for s in (cli, srv):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(cli):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.connect(SERVER)
    threading.Thread(target=pump_back, args=(srv, cli), daemon=True).start()
    try:
        while True:
            hdr = recv_exact(cli, 16)
            body = recv_exact(cli, struct.unpack_from("<I", hdr)[0])
            op = struct.unpack_from("<H", hdr, 6)[0]
            with lock:
                count[0] += 1
                # Never drop HELLO (1) or FORGET (3, it has no reply to wait for).
                drop = op not in (1, 3) and count[0] % EVERY == 0
                if drop:
                    count[1] += 1
                    print("dropped %d" % count[1], flush=True)
            if drop:
                break
            srv.sendall(hdr + body)
    except (EOFError, OSError):
        pass
    for s in (cli, srv):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


if os.path.exists(LISTEN):
    os.unlink(LISTEN)
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ls.bind(LISTEN)
ls.listen(64)
print("listening", flush=True)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
