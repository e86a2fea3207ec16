"""vproto.py - the volume protocol (lib/vproto.h) in Python, for tests that
craft requests no kernel would send. The field strings mirror lib/vproto.c."""
import errno
import os
import socket
import struct

VERSION = 1
HDR = struct.Struct("<IBBHQ")
MAX_DATA = 1 << 20
MAX_PAYLOAD = MAX_DATA + 4096
REQUEST, REPLY = 0, 1
NO_FH = (1 << 64) - 1

OPS = [None, ("hello", "S"), ("lookup", "Nn"), ("forget", "NL"), ("getattr", "N"),
       ("setattr", "NFVMUGLAT"), ("readlink", "N"), ("mknod", "NnMRUG"),
       ("mkdir", "NnMUG"), ("unlink", "Nn"), ("rmdir", "Nn"), ("symlink", "NnUGD"),
       ("rename", "NnPmf"), ("link", "NPm"), ("open", "Nf"), ("create", "NnMfUG"),
       ("read", "FOS"), ("write", "FOD"), ("release", "F"), ("fsync", "Ff"),
       ("fallocate", "FfOL"), ("opendir", "N"), ("readdir", "FOS"), ("releasedir", "F"),
       ("statfs", "N"), ("setxattr", "NxDf"), ("getxattr", "NxS"), ("listxattr", "NS"),
       ("removexattr", "Nx"), ("getlk", "FWfOLp"), ("setlk", "FWfOLpS"), ("flock", "FWf")]
OP = {o[0]: i for i, o in enumerate(OPS) if o}
FIELD = {"N": "node", "P": "node2", "F": "fh", "O": "off", "L": "len", "W": "owner",
         "S": "size", "M": "mode", "f": "flags", "U": "uid", "G": "gid", "R": "rdev",
         "V": "valid", "p": "pid", "A": "atime", "T": "mtime", "n": "name", "x": "name",
         "m": "name2", "D": "data"}
ATTR = struct.Struct("<QQQIIIIIIqIqIqI")


def payload(op, **kw):
    out = b""
    for f in OPS[OP[op]][1]:
        v = kw.get(FIELD[f], 0 if f not in "nxmD" else b"")
        if f in "NPFOLW":
            out += struct.pack("<Q", v)
        elif f in "SMfUGRVp":
            out += struct.pack("<I", v)
        elif f in "AT":
            out += struct.pack("<qI", v[0], v[1]) if v else struct.pack("<qI", 0, 0)
        elif f in "nxm":
            v = v.encode() if isinstance(v, str) else v
            out += struct.pack("<H", len(v)) + v
        elif f == "D":
            v = v.encode() if isinstance(v, str) else v
            out += struct.pack("<I", len(v)) + v
    return out


def frame(op, rid, body, version=VERSION, kind=REQUEST, length=None):
    opn = OP[op] if isinstance(op, str) else op
    return HDR.pack(len(body) if length is None else length, version, kind, opn, rid) + body


class Conn:
    def __init__(self, path, timeout=20):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.id = 0

    def close(self):
        self.s.close()

    def send_raw(self, b):
        self.s.sendall(b)

    def recv_exact(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("connection closed")
            b += c
        return b

    def reply(self):
        ln, ver, kind, op, rid = HDR.unpack(self.recv_exact(HDR.size))
        assert ver == VERSION and kind == REPLY, (ver, kind)
        body = self.recv_exact(ln)
        err = struct.unpack_from("<I", body)[0]
        return op, rid, err, body[4:]

    def call(self, op, **kw):
        """Send one request; return (err, body). Checks the reply matches."""
        self.id += 1
        self.send_raw(frame(op, self.id, payload(op, **kw)))
        rop, rid, err, body = self.reply()
        assert rop == OP[op] and rid == self.id, ("reply out of turn", rop, rid)
        return err, body

    def raw_call(self, op, body, **fk):
        self.id += 1
        self.send_raw(frame(op, self.id, body, **fk))
        rop, rid, err, rbody = self.reply()
        opn = OP[op] if isinstance(op, str) else op
        assert rop == opn and rid == self.id, ("reply out of turn", rop, rid)
        return err, rbody

    def is_closed(self, wait=5.0):
        self.s.settimeout(wait)
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    # helpers
    def hello(self):
        err, b = self.call("hello", size=MAX_DATA)
        assert err == 0, err
        return struct.unpack_from("<IIQI", b)

    def entry(self, op, **kw):
        err, b = self.call(op, **kw)
        if err:
            return err, None, None
        node = struct.unpack_from("<Q", b)[0]
        return 0, node, ATTR.unpack_from(b, 8)

    def lookup(self, parent, name):
        return self.entry("lookup", node=parent, name=name)

    def fh(self, op, **kw):
        err, b = self.call(op, **kw)
        return err, (struct.unpack_from("<Q", b)[0] if not err else None)


def ename(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"
