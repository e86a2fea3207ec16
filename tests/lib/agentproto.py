"""agentproto - a test client for fc-agent's frames (see fc-agent(1)), over
its Unix socket in test mode or over hybrid vsock (CONNECT PORT) to a VM."""
import json, socket, struct
HELLO, PLAN, STARTED, STDOUT, STDERR, EXIT, ERROR, HEARTBEAT = 1, 2, 3, 4, 5, 8, 9, 10
STATUS_REQ, STATUS = 12, 13
CLONE, CLONE_DONE = 16, 17
PREPARE, PREPARED = 18, 19

def frame(t, p=b""):
    return struct.pack("<IBBHI", 0x31564346, 1, t, 0, len(p)) + p

def conn(path, timeout=20):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    return s

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += d
    return b

def read_frame(s):
    h = recv_exact(s, 12)
    assert h[:4] == b"FCV1", h
    return h[5], recv_exact(s, struct.unpack("<I", h[8:12])[0])

def hello(s):
    t, p = read_frame(s)
    assert t == HELLO, (t, p)
    return json.loads(p)

def rest(s):
    """Every frame until the agent closes: [(type, payload)]."""
    out = []
    while True:
        try:
            out.append(read_frame(s))
        except EOFError:
            return out

def status(path):
    s = conn(path)
    hello(s)
    s.sendall(frame(STATUS_REQ))
    fr = rest(s)
    assert len(fr) == 1 and fr[0][0] == STATUS, fr
    return json.loads(fr[0][1])

def vconn(uds, port=1024, timeout=120):
    """A hybrid vsock connection (Firecracker's CONNECT protocol)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(uds)
    s.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            raise EOFError("closed during CONNECT")
        line += d
    assert line.startswith(b"OK "), line
    return s

def plan(disk, cmd, **extra):
    p = {"version": 1, "image": {"disk": disk}, "cmd": cmd}
    p.update(extra)
    return frame(PLAN, json.dumps(p).encode())
