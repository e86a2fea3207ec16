#!/usr/bin/env python3
"""posix_diff.py PLAIN_DIR MOUNT_DIR [SHARE_DIR] - the same POSIX operations
on a plain host directory and on the fc-volume mount; every result (value or
errno name) must be the same. Covers pjdfstest's categories (chmod, chown,
link, mkdir, mkfifo, open, rename, rmdir, symlink, truncate, unlink,
utimensat) plus xattrs, fallocate, locks, a large file, a 10k-entry
directory and concurrent writers. With SHARE_DIR (the served directory)
the tree seen through the mount is also compared with the host's view.
Run as root (some checks switch to uid 65534 in a child)."""
import ctypes
import errno
import fcntl
import hashlib
import os
import stat
import sys
import threading

PLAIN, MOUNT = sys.argv[1], sys.argv[2]
SHARE = sys.argv[3] if len(sys.argv) > 3 else None
libc = ctypes.CDLL(None, use_errno=True)
NOBODY = 65534


def renameat2(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def st(p, follow=True):
    s = os.stat(p, follow_symlinks=follow)
    return (stat.filemode(s.st_mode), s.st_nlink, s.st_uid, s.st_gid,
            s.st_size if not stat.S_ISDIR(s.st_mode) else "-")


def read(p):
    with open(p, "rb") as f:
        return f.read()


def write(p, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode=0o644):
    fd = os.open(p, flags, mode)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def as_user(fn):
    """Run fn in a child as uid/gid 65534; returns its result or errno name."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            res = "ok %r" % (fn(),)
        except OSError as e:
            res = errno.errorcode.get(e.errno, str(e.errno))
        except Exception as e:  # noqa: BLE001
            res = "exc %s" % type(e).__name__
        os.write(w, res.encode())
        os._exit(0)
    os.close(w)
    out = b""
    while True:
        c = os.read(r, 4096)
        if not c:
            break
        out += c
    os.close(r)
    os.waitpid(pid, 0)
    return out.decode()


def ops(B):
    """(label, thunk) pairs; thunk results are compared between the dirs."""
    j = lambda *a: os.path.join(B, *a)  # noqa: E731
    T = []

    def t(label, fn):
        T.append((label, fn))

    # setup
    t("mkdir d", lambda: os.mkdir(j("d"), 0o755))
    t("write f", lambda: write(j("f"), b"hello world\n"))
    t("stat f", lambda: st(j("f")))
    # chmod
    for m in [0o755, 0o4755, 0o2755, 0o1777, 0o0, 0o644]:
        t("chmod f %o" % m, lambda m=m: (os.chmod(j("f"), m), st(j("f")))[1])
    t("chmod missing", lambda: os.chmod(j("nope"), 0o644))
    t("chmod d 0700", lambda: (os.chmod(j("d"), 0o700), st(j("d")))[1])
    t("chmod d 0755", lambda: (os.chmod(j("d"), 0o755), st(j("d")))[1])
    t("chmod as other user", lambda: as_user(lambda: os.chmod(j("f"), 0o777)))
    t("chmod via symlink", lambda: (os.symlink("f", j("sf")), os.chmod(j("sf"), 0o600), st(j("f")))[2])
    t("chmod f back", lambda: os.chmod(j("f"), 0o644))
    # chown
    t("chown f nobody", lambda: (os.chown(j("f"), NOBODY, NOBODY), st(j("f")))[1])
    t("chown f -1:0", lambda: (os.chown(j("f"), -1, 0), st(j("f")))[1])
    t("chown f 0:0", lambda: (os.chown(j("f"), 0, 0), st(j("f")))[1])
    t("suid cleared by chown", lambda: (os.chmod(j("f"), 0o4755), os.chown(j("f"), 1, 1), st(j("f")))[2])
    t("lchown symlink", lambda: (os.chown(j("sf"), 7, 7, follow_symlinks=False), st(j("sf"), False), st(j("f")))[1:])
    t("chown as other user", lambda: as_user(lambda: os.chown(j("f"), NOBODY, NOBODY)))
    t("chown f back", lambda: (os.chown(j("f"), 0, 0), os.chmod(j("f"), 0o644)))
    # link
    t("link f l", lambda: (os.link(j("f"), j("l")), st(j("f")), st(j("l")))[1:])
    t("link exists", lambda: os.link(j("f"), j("l")))
    t("link dir", lambda: os.link(j("d"), j("dl")))
    t("link missing", lambda: os.link(j("nope"), j("x")))
    t("link into missing dir", lambda: os.link(j("f"), j("nope", "x")))
    t("unlink l nlink", lambda: (os.unlink(j("l")), st(j("f")))[1])
    # mkdir
    t("mkdir exists", lambda: os.mkdir(j("d")))
    t("mkdir missing parent", lambda: os.mkdir(j("nope", "x")))
    t("mkdir under file", lambda: os.mkdir(j("f", "x")))
    t("mkdir 0700", lambda: (os.mkdir(j("d7"), 0o700), st(j("d7")))[1])
    t("mkdir long name", lambda: os.mkdir(j("n" * 256)))
    t("mkdir 255 name", lambda: (os.mkdir(j("n" * 255)), os.rmdir(j("n" * 255))))
    t("mkdir as user in 0755 root dir", lambda: as_user(lambda: os.mkdir(j("d", "u"))))
    t("mkdir sgid dir", lambda: (os.mkdir(j("sg")), os.chown(j("sg"), 0, 123), os.chmod(j("sg"), 0o2777),
                                 os.mkdir(j("sg", "in")), st(j("sg", "in")))[4])
    t("mkdir as user in sgid dir", lambda: (as_user(lambda: os.mkdir(j("sg", "u"))), st(j("sg", "u"))))
    # mkfifo
    t("mkfifo", lambda: (os.mkfifo(j("fifo"), 0o640), st(j("fifo")))[1])
    t("mkfifo exists", lambda: os.mkfifo(j("fifo")))
    t("mknod sock", lambda: (os.mknod(j("sock"), stat.S_IFSOCK | 0o600), st(j("sock")))[1])
    # open
    t("open excl exists", lambda: os.open(j("f"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    t("open missing", lambda: os.open(j("nope"), os.O_RDONLY))
    t("open O_DIRECTORY file", lambda: os.open(j("f"), os.O_RDONLY | os.O_DIRECTORY))
    t("open dir for write", lambda: os.open(j("d"), os.O_WRONLY))
    t("open O_NOFOLLOW symlink", lambda: os.open(j("sf"), os.O_RDONLY | os.O_NOFOLLOW))
    t("open O_TRUNC", lambda: (write(j("f"), b"abc", os.O_WRONLY | os.O_TRUNC), read(j("f"))))
    t("open O_APPEND", lambda: (write(j("f"), b"def", os.O_WRONLY | os.O_APPEND), read(j("f"))))
    t("open creat mode", lambda: (write(j("c"), b"", mode=0o600), st(j("c")))[1])
    t("open as user 0600 file", lambda: (os.chmod(j("c"), 0o600), as_user(lambda: os.open(j("c"), os.O_RDONLY)))[1])
    t("open as user 0644 write", lambda: (os.chmod(j("c"), 0o644), as_user(lambda: os.open(j("c"), os.O_WRONLY)))[1])
    t("open as user 0644 read", lambda: as_user(lambda: os.close(os.open(j("c"), os.O_RDONLY))))
    t("create as user in 1777", lambda: (os.mkdir(j("tmp")), os.chmod(j("tmp"), 0o1777),
                                         as_user(lambda: write(j("tmp", "u"), b"x")), st(j("tmp", "u")))[2:])
    t("unlink other's file in sticky dir", lambda: (write(j("tmp", "r"), b"r"), as_user(lambda: os.unlink(j("tmp", "r"))))[1])
    t("open name too long", lambda: os.open(j("x" * 256), os.O_CREAT | os.O_WRONLY))
    # rename
    t("rename f->g", lambda: (write(j("g0"), b"0"), os.rename(j("g0"), j("g")), read(j("g")))[2])
    t("rename replace", lambda: (write(j("h"), b"h"), os.rename(j("h"), j("g")), read(j("g")), os.path.exists(j("h")))[2:])
    t("rename dir over nonempty dir", lambda: (os.mkdir(j("e1")), os.mkdir(j("e2")), write(j("e2", "x"), b""),
                                               os.rename(j("e1"), j("e2")))[3])
    t("rename file over dir", lambda: os.rename(j("g"), j("e1")))
    t("rename dir over file", lambda: os.rename(j("e1"), j("g")))
    t("rename into own subdir", lambda: os.rename(j("e2"), j("e2", "sub")))
    t("rename missing", lambda: os.rename(j("nope"), j("x")))
    t("rename noreplace exists", lambda: renameat2(j("g"), j("f"), 1))
    t("rename noreplace free", lambda: (renameat2(j("g"), j("g2"), 1), read(j("g2")))[1])
    t("rename exchange", lambda: (renameat2(j("g2"), j("f"), 2), read(j("g2")), read(j("f")))[1:])
    t("rename exchange dir/file", lambda: (renameat2(j("e1"), j("g2"), 2), stat.S_ISDIR(os.stat(j("g2")).st_mode)))
    t("rename exchange missing", lambda: renameat2(j("nope"), j("f"), 2))
    t("rename across dirs", lambda: (os.rename(j("e1"), j("d", "moved")), read(j("d", "moved")))[1])
    # rmdir
    t("rmdir nonempty", lambda: os.rmdir(j("e2")))
    t("rmdir file", lambda: os.rmdir(j("f")))
    t("rmdir missing", lambda: os.rmdir(j("nope")))
    t("rmdir ok", lambda: (os.unlink(j("e2", "x")), os.rmdir(j("e2")), os.path.exists(j("e2")))[2])
    t("rmdir dot", lambda: os.rmdir(j("d7", ".")))
    # symlink
    t("symlink", lambda: (os.symlink("target/x", j("s1")), os.readlink(j("s1")), st(j("s1"), False)[0])[1:])
    t("symlink exists", lambda: os.symlink("y", j("s1")))
    t("symlink long target", lambda: (os.symlink("a" * 4000, j("s2")), len(os.readlink(j("s2"))))[1])
    t("symlink dangling stat", lambda: os.stat(j("s1")))
    t("readlink file", lambda: os.readlink(j("f")))
    t("symlink to dir traversal", lambda: (os.symlink("d", j("sd")), sorted(os.listdir(j("sd"))))[1])
    # truncate
    t("truncate grow", lambda: (os.truncate(j("f"), 100), st(j("f"))[4], read(j("f"))[-3:])[1:])
    t("truncate shrink", lambda: (os.truncate(j("f"), 2), read(j("f")))[1])
    t("truncate dir", lambda: os.truncate(j("d"), 0))
    t("truncate negative", lambda: os.truncate(j("f"), -1))
    t("ftruncate", lambda: (lambda fd: (os.ftruncate(fd, 7), os.close(fd), st(j("f"))[4])[2])(os.open(j("f"), os.O_RDWR)))
    t("truncate as user no perm", lambda: as_user(lambda: os.truncate(j("f"), 0)))
    t("truncate missing", lambda: os.truncate(j("nope"), 0))
    # unlink
    t("unlink dir", lambda: os.unlink(j("d")))
    t("unlink missing", lambda: os.unlink(j("nope")))
    t("unlink fifo", lambda: (os.unlink(j("fifo")), os.path.exists(j("fifo")))[1])
    t("unlink symlink keeps target", lambda: (os.unlink(j("sf")), os.path.exists(j("f")))[1])
    t("unlink open file still readable", lambda: (lambda fd: (os.unlink(j("c")), os.write(fd, b"zz"), os.lseek(fd, 0, 0),
                                                              os.read(fd, 10), os.close(fd))[3])(os.open(j("c"), os.O_RDWR)))
    # utimensat
    t("utime set", lambda: (os.utime(j("f"), ns=(1000000123, 2000000456)),
                            (os.stat(j("f")).st_atime_ns, os.stat(j("f")).st_mtime_ns))[1])
    t("utime symlink nofollow", lambda: (os.symlink("f", j("su")), os.utime(j("su"), ns=(5000000000, 6000000000), follow_symlinks=False),
                                         os.stat(j("su"), follow_symlinks=False).st_mtime_ns, os.stat(j("f")).st_mtime_ns)[2:])
    t("utime dir", lambda: (os.utime(j("d"), ns=(7, 8)), os.stat(j("d")).st_mtime_ns)[1])
    t("utime missing", lambda: os.utime(j("nope"), ns=(1, 1)))
    t("utime as user not owner", lambda: as_user(lambda: os.utime(j("f"), ns=(1, 1))))
    t("utime now as user not owner", lambda: as_user(lambda: os.utime(j("f"))))
    t("utime omit mtime", lambda: (os.utime(j("f"), ns=(3000000000, 4000000000)), libc_utime_omit(j("f")),
                                   os.stat(j("f")).st_mtime_ns)[2])
    # xattrs
    t("setxattr", lambda: (os.setxattr(j("f"), "user.k", b"v1"), os.getxattr(j("f"), "user.k"))[1])
    t("setxattr create exists", lambda: os.setxattr(j("f"), "user.k", b"v", os.XATTR_CREATE))
    t("setxattr replace missing", lambda: os.setxattr(j("f"), "user.nope", b"v", os.XATTR_REPLACE))
    t("listxattr", lambda: sorted(x for x in os.listxattr(j("f")) if x.startswith("user.")))
    t("getxattr missing", lambda: os.getxattr(j("f"), "user.nope"))
    t("removexattr", lambda: (os.removexattr(j("f"), "user.k"), os.listxattr(j("f")))[1])
    t("setxattr big", lambda: (os.setxattr(j("f"), "user.big", b"x" * 4000), len(os.getxattr(j("f"), "user.big")))[1])
    t("setxattr on dir", lambda: (os.setxattr(j("d"), "user.d", b"1"), os.getxattr(j("d"), "user.d"))[1])
    # fallocate, statfs
    t("posix_fallocate", lambda: (lambda fd: (os.posix_fallocate(fd, 0, 65536), os.close(fd), st(j("f"))[4])[2])(os.open(j("f"), os.O_RDWR)))
    t("statvfs namemax", lambda: os.statvfs(B).f_namemax)
    # locks
    t("lockf conflict", lambda: lock_conflict(j("f"), lambda fd, op: fcntl.lockf(fd, op)))
    t("flock conflict", lambda: lock_conflict(j("f"), lambda fd, op: fcntl.flock(fd, op)))
    # larger workloads
    t("large file rw", lambda: large_file(j("big")))
    t("10k readdir", lambda: many_entries(j("many"), 10000))
    t("concurrent writers", lambda: concurrent(j("conc")))
    t("concurrent appenders", lambda: appenders(j("app")))
    t("final listing", lambda: sorted(os.listdir(B)))
    return T


def libc_utime_omit(p):
    class TS(ctypes.Structure):
        _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
    UTIME_OMIT = (1 << 30) - 2
    ts = (TS * 2)(TS(9, 0), TS(0, UTIME_OMIT))
    if libc.utimensat(-100, p.encode(), ts, 0) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return os.stat(p).st_atime_ns


def lock_conflict(p, lock):
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        fd = os.open(p, os.O_RDWR)
        lock(fd, fcntl.LOCK_EX)
        os.write(w, b"1")
        os.read(r2, 1)
        os._exit(0)
    os.read(r, 1)
    fd = os.open(p, os.O_RDWR)
    try:
        lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = "got it"
    except OSError as e:
        res = "busy" if e.errno in (errno.EAGAIN, errno.EACCES) else errno.errorcode[e.errno]
    os.write(w2, b"1")
    os.waitpid(pid, 0)
    lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
    lock(fd, fcntl.LOCK_UN)
    os.close(fd)
    for x in (r, w, r2, w2):
        os.close(x)
    return res


def large_file(p):
    h = hashlib.sha256()
    block = bytes(range(256)) * 4096  # 1 MiB
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for i in range(48):
        b = bytes([i]) + block[1:]
        os.write(fd, b)
        h.update(b)
    os.pwrite(fd, b"MIDDLE", 20 * 1048576 + 3)
    os.fsync(fd)
    os.close(fd)
    g = hashlib.sha256()
    with open(p, "rb") as f:
        while True:
            c = f.read(300001)
            if not c:
                break
            g.update(c)
    with open(p, "rb") as f:
        f.seek(20 * 1048576)
        mid = f.read(12)
    os.unlink(p)
    return (os.path.getsize(p) if os.path.exists(p) else None, g.hexdigest()[:16], mid)


def many_entries(d, n):
    os.mkdir(d)
    for i in range(n):
        os.close(os.open(os.path.join(d, "entry-%05d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    names = os.listdir(d)
    with os.scandir(d) as it:
        kinds = {e.is_file() for e in it}
    ok = sorted(names) == ["entry-%05d" % i for i in range(n)]
    for i in range(0, n, 2):
        os.unlink(os.path.join(d, "entry-%05d" % i))
    left = len(os.listdir(d))
    return (len(names), ok, kinds, left)


def concurrent(p):
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    chunk = 65536

    def writer(k):
        data = bytes([65 + k]) * chunk
        for r in range(16):
            os.pwrite(fd, data, (r * 8 + k) * chunk)
    ts = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    os.fsync(fd)
    os.close(fd)
    data = read(p)
    good = all(data[i * chunk:(i + 1) * chunk] == bytes([65 + i % 8]) * chunk for i in range(128))
    return (len(data), good)


def appenders(p):
    pids = []
    for k in range(6):
        pid = os.fork()
        if pid == 0:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for i in range(200):
                os.write(fd, ("writer %d line %03d\n" % (k, i)).encode())
            os.close(fd)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    lines = read(p).decode().splitlines()
    return (len(lines), sorted(lines) == sorted("writer %d line %03d" % (k, i) for k in range(6) for i in range(200)))


def run(B):
    out = []
    os.umask(0o022)
    for label, fn in ops(B):
        try:
            v = fn()
            out.append((label, "ok %r" % (v,)))
        except OSError as e:
            out.append((label, errno.errorcode.get(e.errno, str(e.errno))))
    return out


def tree(root):
    res = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for n in sorted(dns + fns):
            p = os.path.join(dp, n)
            s = os.lstat(p)
            c = None
            if stat.S_ISREG(s.st_mode):
                c = hashlib.sha256(read(p)).hexdigest()[:12]
            elif stat.S_ISLNK(s.st_mode):
                c = os.readlink(p)
            res.append((os.path.relpath(p, root), stat.filemode(s.st_mode), s.st_uid, s.st_gid, s.st_size if c is not None and not stat.S_ISLNK(s.st_mode) else 0, c))
    return res


a = run(PLAIN)
b = run(MOUNT)
bad = 0
for (la, ra), (lb, rb) in zip(a, b):
    same = ra == rb
    if not same:
        bad += 1
    print("%s %-34s %s%s" % ("ok  " if same else "DIFF", la, ra, "" if same else "   <> mount: " + rb))
if SHARE:
    ta, tb = tree(MOUNT), tree(SHARE)
    if ta != tb:
        bad += 1
        print("DIFF the tree seen through the mount differs from the host's share")
        for x, y in zip(ta, tb):
            if x != y:
                print("   mount %r\n   host  %r" % (x, y))
                break
    else:
        print("ok   the mount's tree (%d entries) is the host share's, byte for byte" % len(ta))
print("posix_diff: %d operations, %d difference(s)" % (len(a), bad))
sys.exit(1 if bad else 0)
