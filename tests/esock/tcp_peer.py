#!/usr/bin/env python3
"""tcp_peer.py: a TCP peer that is not esock, for tests/esock/test_tcp.c.

Messages are framed as esock's ESOCK_FRAME_LEN32: a 4-byte big-endian
length, then the bytes.

  tcp_peer.py client HOST PORT   connect; send messages in awkward pieces
                                 (several in one write, one cut across
                                 writes, the length itself cut), read the
                                 echo of each, check it; print "client ok N"
  tcp_peer.py server             listen on 127.0.0.1, print "port P"; take
                                 one connection, echo every message back
                                 reversed until the peer ends; print
                                 "server ok N"
Exits 0 when everything matched, 1 otherwise (with the reason on stdout).
"""
import socket
import struct
import sys
import time


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_msg(sock):
    head = read_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    return read_exact(sock, n) if n else b""


def client(host, port):
    msgs = [b"one", b"two", b"", b"x" * 100000, bytes(range(256)) * 40, b"last"]
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # the first three in one write
    sock.sendall(frame(msgs[0]) + frame(msgs[1]) + frame(msgs[2]))
    # the big one cut inside its length and inside its body
    big = frame(msgs[3])
    for piece in (big[:3], big[3:5000], big[5000:]):
        sock.sendall(piece)
        time.sleep(0.02)
    # the last two together, cut in the middle of the second's length
    rest = frame(msgs[4]) + frame(msgs[5])
    cut = len(frame(msgs[4])) + 2
    sock.sendall(rest[:cut])
    time.sleep(0.02)
    sock.sendall(rest[cut:])
    for i, want in enumerate(msgs):
        got = read_msg(sock)
        if got != want:
            print("client: echo %d wrong: %r" % (i, None if got is None else got[:40]))
            return 1
    sock.close()
    print("client ok %d" % len(msgs))
    return 0


def server():
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)
    print("port %d" % lsock.getsockname()[1], flush=True)
    conn, _ = lsock.accept()
    conn.settimeout(10)
    n = 0
    while True:
        msg = read_msg(conn)
        if msg is None:
            break
        conn.sendall(frame(msg[::-1]))
        n += 1
    conn.close()
    print("server ok %d" % n, flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "client":
        sys.exit(client(sys.argv[2], int(sys.argv[3])))
    if len(sys.argv) == 2 and sys.argv[1] == "server":
        sys.exit(server())
    print(__doc__)
    sys.exit(2)
