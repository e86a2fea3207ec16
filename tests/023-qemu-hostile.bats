#!/usr/bin/env bats
# fc-qemu's API socket under a hostile client (issue 7, items 7 and 8):
# pipelining without reading, slow headers, many idle connections, and the
# owner still served while all of that goes on. Most of it needs no guest:
# fc-qemu answers the API before InstanceStart.
#
# The limits tested are fc-qemu's (fc-qemu(1) LIMITS): 32 connections
# (+8 linger slots for 503 answers), 5 s to send a request, 10 s idle,
# 5 s for a client to read anything of its answers, 1 s before a quiet
# connection gives way to a newcomer. Every wait here is bounded with a
# margin well above those.

load helpers

setup() {
	fc_setup_root
	mkdir -p "$FCVM_ROOT/run"
	SOCK="$FCVM_ROOT/run/api.sock"
	FCQ_PID=
	HOSTILE_PIDS=()
	HOSTILE="$BATS_TEST_TMPDIR/hostile.py"
	write_hostile "$HOSTILE"
}

teardown() {
	local p
	for p in "${HOSTILE_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [ -n "$FCQ_PID" ] && kill -0 "$FCQ_PID" 2>/dev/null; then
		kill -TERM "$FCQ_PID" 2>/dev/null
		wait "$FCQ_PID" 2>/dev/null || true
	fi
	leak_check
}

start_fcq() {
	local in=${1:-/dev/null} i
	fc-qemu --api-sock "$SOCK" --id hostile-test -v \
		<"$in" >"$BATS_TEST_TMPDIR/console" 2>"$BATS_TEST_TMPDIR/stderr" 3>&- &
	FCQ_PID=$!
	for i in $(seq 100); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$FCQ_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "fc-qemu did not create its API socket: $(cat "$BATS_TEST_TMPDIR/stderr")" >&2
	return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
nfds() { ls "/proc/$1/fd" | wc -l; }

# api METHOD PATH [JSON]: sets $code and $body (a normal client: curl).
api() {
	local args=(-s --max-time 20 --unix-socket "$SOCK" -X "$1" -o "$BATS_TEST_TMPDIR/body"
		-w '%{http_code}' "http://localhost$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
	rm -f "$BATS_TEST_TMPDIR/body"
	code=$(curl "${args[@]}") || true
	body=$(cat "$BATS_TEST_TMPDIR/body" 2>/dev/null) || body=
}

# wait_for SECS CMD...: until CMD succeeds, at most SECS seconds.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# A newcomer to a full server is answered: 503 with a fault_message, or
# (when ours had been quiet for a second already) served. Never dropped.
extra_answered() {
	local st
	st=$(jq -r .extra_status <<<"$1")
	case "$st" in
	*" 503 "*)
		assert_contains "$(jq -r .extra_body <<<"$1" | jq -r .fault_message)" \
			"Too many open connections" "503 with a fault_message" ;;
	*" 200 "*) ;;
	*) echo "newcomer to a full server got '$st'" >&2; return 1 ;;
	esac
}

fds_at_most() { [ "$(nfds "$FCQ_PID")" -le "$1" ]; }
file_has() { [ -s "$1" ]; }

# The hostile client, one mode per attack; results as JSON lines on stdout.
write_hostile() {
	cat >"$1" <<'PY'
import json, os, select, socket, sys, time

def conn(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s

def rss(pid):
    with open("/proc/%s/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0

def drain(s, wait):
    """What the server sent within `wait` s, and whether it closed."""
    s.settimeout(wait)
    data, eof = b"", False
    try:
        while True:
            b = s.recv(65536)
            if not b:
                eof = True
                break
            data += b
    except (socket.timeout, BlockingIOError):
        pass
    except (ConnectionResetError, BrokenPipeError):
        eof = True
    return data, eof

def out(**kw):
    print(json.dumps(kw), flush=True)

mode, path = sys.argv[1], sys.argv[2]

if mode == "pipeline":
    # pipelined requests as fast as the server takes them; never read
    pid, secs = sys.argv[3], float(sys.argv[4])
    s = conn(path)
    s.setblocking(False)
    chunk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 256
    sent, peak, closed, t0 = 0, 0, False, time.time()
    while time.time() - t0 < secs:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        peak = max(peak, rss(pid))
    out(sent=sent, rss_peak_kb=peak, closed=closed, after=round(time.time() - t0, 1))

elif mode == "slow":
    # a request head at one byte per second: never complete
    s = conn(path)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    t0, data, eof = time.time(), b"", False
    for i in range(len(head)):
        try:
            s.send(head[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            eof = True
            break
        d, eof = drain(s, 1.0)
        data += d
        if eof or time.time() - t0 > 30:
            break
    out(elapsed=round(time.time() - t0, 1), closed=eof,
        status=data.split(b"\r\n")[0].decode(errors="replace"),
        body=data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace"))

elif mode in ("idle", "fill"):
    # idle: N connections that send nothing. fill: N that each send an
    # unfinished request head (a byte every 0.5 s). Then proof that the
    # server is full (idle: one more connection is answered 503), a wait of
    # EVICT (so that each of ours may give way to a newcomer), the ready
    # file, and HOLD seconds watching which of ours the server closed.
    n, ready, hold = int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    socks = []
    for i in range(n):
        s = conn(path)
        if mode == "fill":
            s.send(b"PUT /machine-config HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    # idle: one more, at once: a full server answers it 503 (or, had
    # ours been quiet for EVICT already, serves it)
    # (fill: not done, so that every slot stays ours: 32 of ours held
    # is the proof that the server is full)
    d = b""
    if mode == "idle":
        extra = conn(path)
        extra.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        d, eof = drain(extra, 5)
        extra.close()
    # what the server told ours meanwhile (0.5 s, all at once)
    got = {s: b"" for s in socks}
    gone = set()
    t0 = time.time()
    while time.time() - t0 < 0.5:
        r, _, _ = select.select([s for s in socks if s not in gone], [], [], 0.1)
        for s in r:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                b = b""
            if b:
                got[s] += b
            else:
                gone.add(s)
    refused = sum(1 for s in socks
                  if b" 503 " in got[s].split(b"\r\n")[0] and b"Too many open connections" in got[s])
    alive = [s for s in socks if s not in gone and not got[s]]
    out(phase="full", opened=n, refused_503=refused, held=len(alive),
        extra_status=d.split(b"\r\n")[0].decode(errors="replace"),
        extra_body=d.split(b"\r\n\r\n", 1)[-1].decode(errors="replace"))
    time.sleep(1.5)
    open(ready, "w").write("ready\n")
    t0, closed, answers = time.time(), set(), {}
    while time.time() - t0 < hold and len(closed) < len(alive):
        for i, s in enumerate(alive):
            if i in closed:
                continue
            if mode == "fill":
                try:
                    s.send(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            d, eof = drain(s, 0.01)
            if d:
                st = d.split(b"\r\n")[0].decode(errors="replace")
                answers[st] = answers.get(st, 0) + 1
            if eof:
                closed.add(i)
        time.sleep(0.5)
    out(phase="end", held=len(alive), closed=len(closed), answers=answers,
        after=round(time.time() - t0, 1))
PY
}

@test "hostile: a client that pipelines and never reads costs bounded memory and is closed" {
	start_fcq
	api GET /
	assert_eq "$code" 200 "served before"
	local rss0 res peak sent
	rss0=$(rss_kb "$FCQ_PID")
	res=$(timeout 60 python3 "$HOSTILE" pipeline "$SOCK" "$FCQ_PID" 12)
	echo "before: ${rss0} kB; $res" >&2
	peak=$(jq -r .rss_peak_kb <<<"$res")
	sent=$(jq -r .sent <<<"$res")
	# the old server queued every answer: 1.5 MB -> 298 MB in 8 s
	[ "$((peak - rss0))" -lt 20480 ] || { echo "RSS grew from $rss0 to $peak kB" >&2; return 1; }
	# it stops reading: the kernel's socket buffers fill, the sender blocks
	[ "$sent" -lt 8388608 ] || { echo "server kept reading: $sent bytes taken" >&2; return 1; }
	assert_eq "$(jq -r .closed <<<"$res")" true "a client that reads nothing for 5 s is closed"
	api GET /machine-config
	assert_eq "$code" 200 "served after"
	[ "$(rss_kb "$FCQ_PID")" -lt "$((rss0 + 20480))" ]
}

@test "hostile: a normal client is served while a pipelining client does not read" {
	start_fcq
	timeout 60 python3 "$HOSTILE" pipeline "$SOCK" "$FCQ_PID" 4 >"$BATS_TEST_TMPDIR/p.json" &
	HOSTILE_PIDS+=($!)
	sleep 1
	api GET /
	assert_eq "$code" 200 "GET / while the pipeliner's answers back up"
	wait "${HOSTILE_PIDS[0]}"
}

@test "hostile: slow headers (1 byte/s) are answered 408 and closed within the request timeout" {
	start_fcq
	local res el
	res=$(timeout 60 python3 "$HOSTILE" slow "$SOCK")
	echo "$res" >&2
	assert_eq "$(jq -r .closed <<<"$res")" true "the slow client was closed"
	assert_contains "$(jq -r .status <<<"$res")" "408" "answered 408 Request Timeout"
	assert_contains "$(jq -r .body <<<"$res" | jq -r .fault_message)" "request not complete within 5 s" "fault_message says why"
	el=$(jq -r '.elapsed | floor' <<<"$res")
	# 5 s request timeout (+1 s linger); not at once, and not much later
	[ "$el" -ge 4 ] && [ "$el" -le 10 ] || { echo "closed after $el s" >&2; return 1; }
	api GET /
	assert_eq "$code" 200 "still serving"
}

@test "hostile: 100 idle connections: fds bounded, 503 when full, newcomers served, idle ones closed" {
	start_fcq
	local fd0 res ready="$BATS_TEST_TMPDIR/ready"
	fd0=$(nfds "$FCQ_PID")
	timeout 90 python3 "$HOSTILE" idle "$SOCK" 100 "$ready" 30 >"$BATS_TEST_TMPDIR/idle.json" &
	HOSTILE_PIDS+=($!)
	wait_for 60 file_has "$ready" || { cat "$BATS_TEST_TMPDIR/idle.json" >&2; return 1; }
	res=$(head -1 "$BATS_TEST_TMPDIR/idle.json")
	echo "fds before: $fd0; $res" >&2
	# 32 slots: the rest were told 503 (or, later, gave way)
	[ "$(jq -r .held <<<"$res")" -le 32 ]
	[ "$(jq -r .refused_503 <<<"$res")" -ge 1 ] || { echo "no 503 for a full server" >&2; return 1; }
	extra_answered "$res"
	# fc-qemu's fds: at most its slots (32 + 8 linger) above what it had
	[ "$(nfds "$FCQ_PID")" -le "$((fd0 + 40))" ] || { ls -l "/proc/$FCQ_PID/fd" >&2; return 1; }
	# a second later the idle ones give way: a normal client is served
	api GET /
	assert_eq "$code" 200 "GET / with 100 idle connections open"
	api GET /machine-config
	assert_eq "$code" 200 "GET /machine-config with idle connections open"
	# and the idle ones are closed after the idle timeout (10 s)
	wait "${HOSTILE_PIDS[0]}"
	res=$(tail -1 "$BATS_TEST_TMPDIR/idle.json")
	echo "$res" >&2
	assert_eq "$(jq -r .closed <<<"$res")" "$(jq -r .held <<<"$res")" "every idle connection was closed"
	[ "$(jq -r '.after | floor' <<<"$res")" -le 20 ]
	wait_for 10 fds_at_most "$fd0" || { ls -l "/proc/$FCQ_PID/fd" >&2; return 1; }
}

@test "hostile: 32 unfinished requests cannot lock the owner out" {
	start_fcq
	local res ready="$BATS_TEST_TMPDIR/ready" disk="$BATS_TEST_TMPDIR/disk.img"
	truncate -s 1M "$disk"
	timeout 90 python3 "$HOSTILE" fill "$SOCK" 32 "$ready" 30 >"$BATS_TEST_TMPDIR/fill.json" &
	HOSTILE_PIDS+=($!)
	wait_for 60 file_has "$ready" || { cat "$BATS_TEST_TMPDIR/fill.json" >&2; return 1; }
	res=$(head -1 "$BATS_TEST_TMPDIR/fill.json")
	echo "$res" >&2
	assert_eq "$(jq -r .held <<<"$res")" 32 "all 32 slots held by unfinished requests"
	# the owner's configuration goes through at once, connection by connection
	api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'
	assert_eq "$code" 204 "PUT /machine-config while full of slow clients: $body"
	api PUT /boot-source "{\"kernel_image_path\": \"$disk\"}"
	assert_eq "$code" 204 "PUT /boot-source: $body"
	api GET /machine-config
	assert_eq "$code" 200 "GET /machine-config"
	wait "${HOSTILE_PIDS[0]}"
	res=$(tail -1 "$BATS_TEST_TMPDIR/fill.json")
	echo "$res" >&2
	# each was either told 503 (gave way) or 408 (timed out), and closed
	assert_eq "$(jq -r .closed <<<"$res")" 32 "every slow connection was closed"
	[ "$(jq -r '[.answers | to_entries[] | select(.key | test(" (408|503) ")) | .value] | add' <<<"$res")" -ge 3 ]
}

@test "hostile: a guest boots through the API while hostile clients hold every slot" {
	need_guest
	start_fcq
	local res fd0 ready="$BATS_TEST_TMPDIR/ready"
	fd0=$(nfds "$FCQ_PID")
	timeout 120 python3 "$HOSTILE" fill "$SOCK" 32 "$ready" 60 >"$BATS_TEST_TMPDIR/fill.json" &
	HOSTILE_PIDS+=($!)
	wait_for 60 file_has "$ready" || { cat "$BATS_TEST_TMPDIR/fill.json" >&2; return 1; }
	assert_eq "$(head -1 "$BATS_TEST_TMPDIR/fill.json" | jq -r .held)" 32 "all slots held"
	# and more of them: one that pipelines without reading, 100 idle ones
	timeout 120 python3 "$HOSTILE" pipeline "$SOCK" "$FCQ_PID" 20 >"$BATS_TEST_TMPDIR/p.json" &
	HOSTILE_PIDS+=($!)
	timeout 120 python3 "$HOSTILE" idle "$SOCK" 100 "$BATS_TEST_TMPDIR/ready2" 30 \
		>"$BATS_TEST_TMPDIR/idle.json" &
	HOSTILE_PIDS+=($!)
	wait_for 60 file_has "$BATS_TEST_TMPDIR/ready2" || { cat "$BATS_TEST_TMPDIR/idle.json" >&2; return 1; }
	[ "$(nfds "$FCQ_PID")" -le "$((fd0 + 40))" ] || { ls -l "/proc/$FCQ_PID/fd" >&2; return 1; }
	# the owner: the same requests fc-boot makes
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256}'
	assert_eq "$code" 204 "machine-config: $body"
	api PUT /boot-source "{\"kernel_image_path\": \"$FCVM_TEST_KERNEL/vmlinux\", \"initrd_path\": \"$FCVM_TEST_KERNEL/initrd.img\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off\"}"
	assert_eq "$code" 204 "boot-source: $body"
	api PUT /actions '{"action_type": "InstanceStart"}'
	assert_eq "$code" 204 "InstanceStart: $body"
	api GET /
	assert_eq "$(jq -r .state <<<"$body")" "Running" "state after InstanceStart"
	wait_line "$BATS_TEST_TMPDIR/console" 'fcvm-dev: ready|fcvm-init:|fc-agent: ready' 90 "$FCQ_PID" ||
		{ cat "$BATS_TEST_TMPDIR/stderr" >&2; return 1; }
	kill -TERM "$FCQ_PID"
	local st=0
	wait "$FCQ_PID" || st=$?
	assert_eq "$st" 0 "fc-qemu exit after SIGTERM"
	FCQ_PID=
}

# An FCVM_VMM for fc-boot: fc-qemu, but on a hidden path first, so that 32
# slow clients hold every API slot before fc-boot can see the socket; only
# then is the socket moved where fc-boot waits for it.
write_hostile_vmm() {
	cat >"$1" <<-'SH'
	#!/bin/bash
	args=("$@") sock=
	for ((i = 0; i < $#; i++)); do
		[ "${args[i]}" = --api-sock ] && { sock=${args[i + 1]}; args[i + 1]="$sock.h"; }
	done
	[ -n "$sock" ] || { echo "hostile-vmm: no --api-sock" >&2; exit 2; }
	trap 'kill -TERM $qp 2>/dev/null' TERM INT HUP
	# fc-qemu dies with this wrapper (which dies with fc-boot)
	setpriv --pdeathsig KILL fc-qemu "${args[@]}" & qp=$!
	for ((i = 0; i < 100; i++)); do [ -S "$sock.h" ] && break; sleep 0.1; done
	timeout 120 python3 "$HOSTILE" fill "$sock.h" 32 "$HOSTILE_READY" 60 >"$HOSTILE_OUT" &
	echo $! >"$HOSTILE_OUT.pid"
	for ((i = 0; i < 300; i++)); do [ -s "$HOSTILE_READY" ] && break; sleep 0.1; done
	mv "$sock.h" "$sock"
	st=0
	while kill -0 "$qp" 2>/dev/null; do wait "$qp"; st=$?; done
	rm -f "$sock"
	exit "$st"
	SH
	chmod +x "$1"
}

@test "hostile: fc-boot boots a VM through fc-qemu whose every slot a slow client holds" {
	need_guest
	command -v setpriv >/dev/null || skip "needs setpriv (util-linux)"
	local vmm="$BATS_TEST_TMPDIR/hostile-vmm" res
	write_hostile_vmm "$vmm"
	export HOSTILE HOSTILE_READY="$BATS_TEST_TMPDIR/ready" HOSTILE_OUT="$BATS_TEST_TMPDIR/fill.json"
	FCVM_VMM="$vmm" run_fc 0 --timeout 150 fc-boot --name hostile \
		--kernel "$FCVM_TEST_KERNEL/vmlinux" --initrd "$FCVM_TEST_KERNEL/initrd.img" \
		--console "$BATS_TEST_TMPDIR/console.log"
	[ -s "$HOSTILE_OUT.pid" ] && HOSTILE_PIDS+=("$(cat "$HOSTILE_OUT.pid")")
	res=$(head -1 "$HOSTILE_OUT")
	echo "$res" >&2
	# the slow clients really held every slot before fc-boot connected
	assert_eq "$(jq -r .held <<<"$res")" 32 "all 32 slots held by unfinished requests"
	grep -q "fcvm-init: ready (no root)" "$BATS_TEST_TMPDIR/console.log" ||
		{ cat "$BATS_TEST_TMPDIR/console.log" >&2; false; }
}
