#!/usr/bin/env python3
"""escape.py RW_SOCK RO_SOCK SMALL_SOCK SHARE RO_DIR - crafted volume-protocol
requests that try to leave the shared directory, break framing, or exhaust
the server. Every check prints "ok" or "FAIL"; exit 1 on any failure. The
caller checks the canary tree around SHARE byte for byte afterwards, and
that every server is still up.

SHARE must contain: up -> ../secret, abs -> <abs path of secret>,
updir -> .., file (regular), sub/ (directory). RO_SOCK serves RO_DIR (with a regular file "file") with --ro. SMALL_SOCK serves another
directory with --max-handles 8 --max-nodes 16 --connections 4."""
import errno as E
import os
import random
import socket
import stat
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vproto as vp  # noqa: E402

RW, RO, SMALL, SHARE, RODIR = sys.argv[1:6]
fails = 0
ROOT = 1
S_IFLNK = 0o120000


def check(cond, what):
    global fails
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        fails += 1


def expect(err, want, what):
    want = want if isinstance(want, (list, tuple)) else [want]
    check(err in want, "%s: %s (want %s)" % (what, vp.ename(err), "/".join(vp.ename(w) for w in want)))


c = vp.Conn(RW)
ver, flags, root, maxd = c.hello()
check(ver == 1 and root == ROOT and flags == 0, "hello: version 1, root node 1, read-write")

# --- names that are not one component ---
for name in ["..", ".", "", "a/b", "../secret", "/etc/passwd", "sub/../../secret", "x\0y"]:
    err, _ = c.raw_call("lookup", struct.pack("<Q", ROOT) + struct.pack("<H", len(name.encode())) + name.encode())
    expect(err, [E.EINVAL, E.EPROTO], "lookup %r refused" % name)
for op in ["mkdir", "create", "mknod", "symlink", "unlink", "rmdir"]:
    err, _ = c.call(op, node=ROOT, name="..", mode=0o644 | (stat.S_IFIFO if op == "mknod" else 0), data="t")
    expect(err, E.EINVAL, "%s '..' refused" % op)
err, _ = c.call("rename", node=ROOT, name="file", node2=ROOT, name2="../escaped")
expect(err, E.EINVAL, "rename to '../escaped' refused")
err, _ = c.call("rename", node=ROOT, name="file", node2=ROOT, name2="/tmp/escaped")
expect(err, E.EINVAL, "rename to an absolute path refused")
longname = "x" * 256
err, _ = c.raw_call("lookup", struct.pack("<QH", ROOT, 256) + longname.encode())
expect(err, [E.EPROTO, E.EINVAL, E.ENAMETOOLONG], "a 256-byte name refused")

# --- symlinks are nodes, never followed ---
for ln in ["up", "abs", "updir"]:
    err, node, attr = c.lookup(ROOT, ln)
    check(err == 0 and attr is not None and stat.S_ISLNK(attr[3]), "lookup '%s' gives the symlink itself" % ln)
    if err:
        continue
    expect(c.fh("open", node=node, flags=os.O_RDONLY)[0], E.EACCES, "open through '%s' refused" % ln)
    expect(c.fh("open", node=node, flags=os.O_RDWR | os.O_TRUNC)[0], E.EACCES, "open O_RDWR|O_TRUNC through '%s' refused" % ln)
    expect(c.fh("opendir", node=node)[0], E.ENOTDIR, "opendir through '%s' refused" % ln)
    expect(c.lookup(node, "secret")[0], E.ENOTDIR, "lookup below '%s' refused" % ln)
    expect(c.lookup(node, "etc")[0], E.ENOTDIR, "lookup 'etc' below '%s' refused" % ln)
    expect(c.entry("mkdir", node=node, name="evil", mode=0o755)[0], E.ENOTDIR, "mkdir below '%s' refused" % ln)
    expect(c.entry("create", node=node, name="evil", mode=0o644, flags=os.O_RDWR)[0], E.ENOTDIR, "create below '%s' refused" % ln)
    expect(c.call("setattr", node=node, fh=vp.NO_FH, valid=0x08, len=0)[0], E.EINVAL, "truncate through '%s' refused" % ln)
    expect(c.call("setattr", node=node, fh=vp.NO_FH, valid=0x01, mode=0o777)[0], E.EOPNOTSUPP, "chmod through '%s' refused" % ln)
    expect(c.call("setxattr", node=node, name="user.evil", data="x")[0], E.EPERM, "setxattr through '%s' refused" % ln)
    expect(c.call("getxattr", node=node, name="user.x", size=100)[0], E.EOPNOTSUPP, "getxattr through '%s' refused" % ln)
    expect(c.call("rename", node=node, name="x", node2=ROOT, name2="y")[0], E.ENOTDIR, "rename below '%s' refused" % ln)
    expect(c.call("rename", node=ROOT, name="file", node2=node, name2="y")[0], E.ENOTDIR, "rename into '%s' refused" % ln)
    expect(c.entry("link", node=ROOT + 0, node2=node, name2="y")[0], E.ENOTDIR, "link into '%s' refused" % ln)
    # chown of a symlink changes the link (lchown), never its target
    err, _ = c.call("setattr", node=node, fh=vp.NO_FH, valid=0x02 | 0x04, uid=12345, gid=12345)
    expect(err, 0, "chown of '%s' acts on the link" % ln)
# create through an existing symlink name must not create its target
err, node, _ = c.entry("create", node=ROOT, name="up", mode=0o644, flags=os.O_RDWR)
expect(err, [E.EEXIST, E.ELOOP, E.EACCES], "create over the symlink 'up' refused")
err, node, _ = c.entry("create", node=ROOT, name="up", mode=0o644, flags=os.O_RDWR | os.O_EXCL)
expect(err, [E.EEXIST, E.ELOOP], "create O_EXCL over the symlink 'up' refused")

# /proc tricks: a symlink the guest makes to /proc/self/fd/N or /proc/self/root
for i, target in enumerate(["/proc/self/fd/3", "/proc/self/root/etc/passwd", "/proc/1/root", "../../../../../../etc"]):
    err, node, attr = c.entry("symlink", node=ROOT, name="p%d" % i, data=target, uid=0, gid=0)
    expect(err, 0, "symlink to %s made (it is only a name)" % target)
    if not err:
        expect(c.fh("open", node=node, flags=os.O_RDONLY)[0], E.EACCES, "open via %s refused" % target)
        expect(c.lookup(node, "x")[0], E.ENOTDIR, "lookup via %s refused" % target)
        err, b = c.call("readlink", node=node)
        check(err == 0 and b[4:].decode() == target, "readlink gives back the stored target %s" % target)
        expect(c.entry("link", node=node, node2=ROOT, name2="hl%d" % i)[0], 0, "hardlink of the symlink %d stays a symlink" % i)
        err, n2, a2 = c.lookup(ROOT, "hl%d" % i)
        check(err == 0 and stat.S_ISLNK(a2[3]), "the hardlink of a /proc symlink is a symlink, not the target")

# --- node and handle ids are checked ---
for bogus in [0, 2, 1 << 32 | 1, 0xFFFFFFFF, (1 << 64) - 1, 12345678901234]:
    expect(c.call("getattr", node=bogus)[0], E.ESTALE, "getattr of bogus node %#x refused" % bogus)
    expect(c.lookup(bogus, "file")[0], E.ESTALE, "lookup below bogus node %#x refused" % bogus)
    expect(c.call("read", fh=bogus, off=0, size=10)[0], E.EBADF, "read of bogus handle %#x refused" % bogus)
    expect(c.call("write", fh=bogus, off=0, data="x")[0], E.EBADF, "write to bogus handle %#x refused" % bogus)
err, fnode, _ = c.lookup(ROOT, "file")
c.send_raw(vp.frame("forget", 999, vp.payload("forget", node=fnode, len=1)))
expect(c.call("getattr", node=fnode)[0], E.ESTALE, "a forgotten node is stale")
err, fnode2, _ = c.lookup(ROOT, "file")
check(err == 0 and fnode2 != fnode, "a node slot reused gets a new generation (%#x -> %#x)" % (fnode, fnode2 or 0))
expect(c.call("getattr", node=fnode)[0], E.ESTALE, "the old id stays stale after reuse")
c.send_raw(vp.frame("forget", 998, vp.payload("forget", node=ROOT, len=1 << 62)))
expect(c.call("getattr", node=ROOT)[0], 0, "forgetting the root is ignored")
err, dh = c.fh("opendir", node=ROOT)
expect(c.call("read", fh=dh, off=0, size=10)[0], E.EBADF, "a directory handle is not a file handle")
err, fh = c.fh("open", node=fnode2, flags=os.O_RDONLY)
expect(c.call("readdir", fh=fh, off=0, size=4096)[0], E.EBADF, "a file handle is not a directory handle")
expect(c.call("release", fh=fh)[0], 0, "release")
expect(c.call("read", fh=fh, off=0, size=10)[0], E.EBADF, "a released handle is gone")
c.call("releasedir", fh=dh)

# --- devices ---
expect(c.entry("mknod", node=ROOT, name="dev", mode=stat.S_IFCHR | 0o666, rdev=(1 << 8) | 3)[0], E.EPERM, "mknod of a char device refused")
expect(c.entry("mknod", node=ROOT, name="blk", mode=stat.S_IFBLK | 0o666, rdev=(8 << 8))[0], E.EPERM, "mknod of a block device refused")
err, fifo, _ = c.entry("mknod", node=ROOT, name="fifo", mode=stat.S_IFIFO | 0o644)
expect(err, 0, "mknod of a FIFO works")
expect(c.fh("open", node=fifo, flags=os.O_RDONLY)[0], E.EACCES, "the server never opens a FIFO (it would block)")
# Regression: CREATE without O_EXCL over an existing FIFO opened it and the
# server blocked for good in open(2).
for fl in [os.O_RDONLY, os.O_WRONLY, os.O_RDWR | os.O_TRUNC]:
    expect(c.entry("create", node=ROOT, name="fifo", mode=0o644, flags=fl)[0], E.EACCES,
           "create (no O_EXCL, flags %#o) over a FIFO is refused, not opened" % fl)
expect(c.entry("create", node=ROOT, name="sub", mode=0o644, flags=os.O_RDONLY)[0], E.EISDIR, "create over a directory: EISDIR")
err, cn, _ = c.entry("create", node=ROOT, name="file", mode=0o644, flags=os.O_RDWR)
expect(err, 0, "create (no O_EXCL) over a regular file opens it")

# --- rename race: a directory moved while its node is held stays inside ---
err, d, _ = c.entry("mkdir", node=ROOT, name="racedir", mode=0o755)
err2, sub, _ = c.lookup(ROOT, "sub")
for k in range(50):
    c.call("rename", node=ROOT, name="racedir", node2=sub, name2="racedir")
    c.call("rename", node=sub, name="racedir", node2=ROOT, name2="racedir")
    c.entry("create", node=d, name="f%d" % k, mode=0o644, flags=os.O_WRONLY)
check(os.path.isdir(os.path.join(SHARE, "racedir")) and len(os.listdir(os.path.join(SHARE, "racedir"))) == 50,
      "files made in a directory renamed back and forth land inside the share")
expect(c.call("rename", node=ROOT, name="racedir", node2=d, name2="x")[0], E.EINVAL, "rename of a directory into itself refused")

# --- bounds and broken frames ---
expect(c.raw_call("read", struct.pack("<QQI", 0, 0, vp.MAX_DATA + 1))[0], E.EINVAL, "read larger than the bound refused")
expect(c.raw_call("getxattr", struct.pack("<QH", ROOT, 6) + b"user.x" + struct.pack("<I", 70000))[0], E.EINVAL, "getxattr larger than the bound refused")
expect(c.raw_call("getattr", struct.pack("<QQ", ROOT, 0))[0], E.EPROTO, "trailing bytes refused")
expect(c.raw_call("getattr", struct.pack("<I", 1))[0], E.EPROTO, "a truncated payload refused")
expect(c.raw_call("lookup", struct.pack("<QH", ROOT, 200) + b"abc")[0], E.EPROTO, "a name longer than its frame refused")
expect(c.raw_call("symlink", struct.pack("<QH", ROOT, 1) + b"q" + struct.pack("<III", 0, 0, 0))[0], E.EINVAL, "an empty symlink target refused")
expect(c.raw_call("symlink", struct.pack("<QH", ROOT, 1) + b"q" + struct.pack("<III", 0, 0, 5000) + b"a" * 5000)[0], E.EINVAL, "a symlink target over PATH_MAX refused")
expect(c.raw_call("setattr", struct.pack("<QQII", ROOT, vp.NO_FH, 0x100, 0) + b"\0" * (4 + 4 + 8 + 12 + 12))[0], E.EINVAL, "unknown setattr bits refused")
expect(c.raw_call("setattr", struct.pack("<QQII", ROOT, vp.NO_FH, 0x10, 0) + struct.pack("<IIQqIqI", 0, 0, 0, 0, 2000000000, 0, 0))[0], E.EINVAL, "nanoseconds >= 1e9 refused")
expect(c.call("rename", node=ROOT, name="file", node2=ROOT, name2="file2", flags=1 << 2)[0], E.EINVAL, "rename flags other than NOREPLACE/EXCHANGE (WHITEOUT) refused")
expect(c.call("setxattr", node=fnode2, name="user.x", data="v", flags=1 << 4)[0], E.EINVAL, "unknown setxattr flags refused")
check(c.hello()[0] == 1, "the connection still answers after refused payloads")

for what, raw in [("oversized frame", vp.frame("write", 1, b"", length=vp.MAX_PAYLOAD + 1)),
                  ("bad version", vp.frame("hello", 1, b"\0" * 4, version=2)),
                  ("a reply sent as a request", vp.frame("hello", 1, b"\0" * 4, kind=1)),
                  ("op 0", vp.frame(0, 1, b"")),
                  ("op 9999", vp.frame(9999, 1, b"")),
                  ("length 0xffffffff", vp.frame("hello", 1, b"", length=0xFFFFFFFF))]:
    x = vp.Conn(RW)
    x.send_raw(raw)
    check(x.is_closed(), "%s: the connection is closed" % what)
    x.close()
x = vp.Conn(RW)
x.send_raw(vp.frame("write", 7, b"\0" * 10, length=1000))
x.close()  # truncated: 10 of 1000 bytes, then gone
x = vp.Conn(RW)
x.send_raw(b"\1\0")  # half a header
x.close()
check(vp.Conn(RW).hello()[0] == 1, "the server still answers after broken frames")

# pipelined requests on one connection come back in order with their ids
batch = b"".join(vp.frame("getattr", 1000 + i, vp.payload("getattr", node=ROOT)) for i in range(100))
c.send_raw(batch)
ids = [c.reply()[1] for _ in range(100)]
check(ids == list(range(1000, 1100)), "100 pipelined requests answered in order, each with its id")

# FSYNC runs on a worker: pipelined with a RELEASE of the same handle, both
# are answered (in either order) and the handle is gone afterwards.
err, fsn, _ = c.entry("create", node=ROOT, name="syncme", mode=0o644, flags=os.O_RDWR)
err, sfh = c.fh("open", node=fsn, flags=os.O_RDWR)
c.send_raw(vp.frame("fsync", 5001, vp.payload("fsync", fh=sfh)) + vp.frame("release", 5002, vp.payload("release", fh=sfh)) +
           vp.frame("fsync", 5003, vp.payload("fsync", fh=sfh)))
got = sorted((rid, err) for rop, rid, err, _ in (c.reply() for _ in range(3)))
check(got == [(5001, 0), (5002, 0), (5003, E.EBADF)], "fsync + release + fsync pipelined: %r" % got)
z = vp.Conn(RW)
z.send_raw(b"".join(vp.frame("fsync", 6000 + i, vp.payload("fsync", fh=fh2)) for i, fh2 in enumerate([c.fh("open", node=fsn, flags=os.O_RDONLY)[1]] * 50)))
z.close()  # gone before the answers: the server drops them
check(c.hello()[0] == 1, "the server answers after fsyncs for a closed connection")

# A flood of pipelined requests (more than the server buffers) is served
# in bounded memory, every one answered in order.
fl = vp.Conn(RW, timeout=60)
flood = b"".join(vp.frame("getattr", 70000 + i, vp.payload("getattr", node=ROOT)) for i in range(60000))
t = __import__("threading").Thread(target=fl.send_raw, args=(flood,))
t.start()
ok_order = all(fl.reply()[1] == 70000 + i for i in range(60000))
t.join()
check(ok_order, "60000 pipelined requests (1.4 MB) answered in order")
fl.close()

# --- random frames: valid headers, random payloads, random ops ---
rnd = random.Random(1234)
y = vp.Conn(RW)
survived = True
for i in range(3000):
    op = rnd.randrange(1, len(vp.OPS))
    body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 64)))
    if rnd.random() < 0.5:
        # Plausible fields: the root or a real node, short names.
        body = vp.payload(vp.OPS[op][0], node=rnd.choice([ROOT, fnode2, d, sub]),
                          node2=rnd.choice([ROOT, d, sub]), name=rnd.choice(["r%d" % (i % 7), "file", "..", "up"]),
                          name2="r%d" % rnd.randrange(7), mode=rnd.randrange(1 << 16), flags=rnd.randrange(1 << 12),
                          size=rnd.randrange(8192), data=b"z" * rnd.randrange(64), fh=rnd.randrange(8),
                          valid=rnd.randrange(256), len=rnd.randrange(1 << 20))
    try:
        y.send_raw(vp.frame(op, i, body))
        if vp.OPS[op][0] != "forget":
            rop, rid, err, _ = y.reply()
            if rop != op or rid != i:
                check(False, "random frame %d answered out of turn" % i)
                break
    except (EOFError, OSError) as ex:
        survived = False
        check(False, "random frame %d (%s): %s" % (i, vp.OPS[op][0], ex))
        break
check(survived, "3000 random requests each answered with their id")
check(vp.Conn(RW).hello()[0] == 1, "the server still answers after random requests")

# --- read-only server: every mutating request gets EROFS ---
r = vp.Conn(RO)
ver, flags, root, maxd = r.hello()
check(flags & 1, "the read-only server says so in hello")
err, rf, _ = r.lookup(ROOT, "file")
expect(err, 0, "ro: lookup works")
err, rfh = r.fh("open", node=rf, flags=os.O_RDONLY)
expect(err, 0, "ro: open for reading works")
for op, kw in [("setattr", dict(node=rf, fh=vp.NO_FH, valid=0x08, len=0)),
               ("setattr", dict(node=rf, fh=vp.NO_FH, valid=0x01, mode=0o777)),
               ("setattr", dict(node=rf, fh=vp.NO_FH, valid=0x40)),
               ("mknod", dict(node=ROOT, name="n", mode=stat.S_IFIFO | 0o644)),
               ("mkdir", dict(node=ROOT, name="n", mode=0o755)),
               ("unlink", dict(node=ROOT, name="file")),
               ("rmdir", dict(node=ROOT, name="sub")),
               ("symlink", dict(node=ROOT, name="n", data="x")),
               ("rename", dict(node=ROOT, name="file", node2=ROOT, name2="n")),
               ("link", dict(node=rf, node2=ROOT, name2="n")),
               ("create", dict(node=ROOT, name="n", mode=0o644, flags=os.O_RDONLY)),
               ("write", dict(fh=rfh, off=0, data="x")),
               ("fallocate", dict(fh=rfh, off=0, len=4096)),
               ("setxattr", dict(node=rf, name="user.x", data="v")),
               ("removexattr", dict(node=rf, name="user.x"))]:
    expect(r.call(op, **kw)[0], E.EROFS, "ro: %s refused with EROFS" % op)
for fl in [os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND]:
    expect(r.fh("open", node=rf, flags=fl)[0], E.EROFS, "ro: open with flags %#o refused with EROFS" % fl)
err, b = r.call("read", fh=rfh, off=0, size=100)
check(err == 0 and b[4:] == open(os.path.join(RODIR, "file"), "rb").read()[:100], "ro: reading works")

# --- bounded tables (the small server) ---
s = vp.Conn(SMALL)
s.hello()
err, sf, _ = s.entry("create", node=ROOT, name="h", mode=0o644, flags=os.O_RDWR)
handles = []
for i in range(8):
    err, h = s.fh("open", node=sf, flags=os.O_RDONLY)
    if err:
        break
    handles.append(h)
err, h = s.fh("open", node=sf, flags=os.O_RDONLY)
check(len(handles) == 7 and err == E.EMFILE, "handles are bounded: the 9th open gets EMFILE (%d opened, %s)" % (len(handles), vp.ename(err)))
s.call("release", fh=handles[0])
check(s.fh("open", node=sf, flags=os.O_RDONLY)[0] == 0, "a released handle slot is usable again")
errs = set()
for i in range(40):
    e1, _, _ = s.entry("mkdir", node=ROOT, name="n%d" % i, mode=0o755)
    errs.add(e1)
check(E.ENFILE in errs, "nodes are bounded: past --max-nodes lookups get ENFILE")
conns = []
for i in range(8):
    try:
        k = vp.Conn(SMALL, timeout=3)
        k.hello()
        conns.append(k)
    except (EOFError, OSError):
        break
check(len(conns) <= 4, "connections are bounded by --connections (%d answered with one already open)" % len(conns))
for k in conns:
    k.close()
time.sleep(0.3)
check(vp.Conn(SMALL).hello()[0] == 1, "the small server answers once connections are freed")

print("escape: %d failure(s)" % fails)
sys.exit(1 if fails else 0)
