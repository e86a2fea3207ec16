#!/usr/bin/env bats
# fc-exec / fcvm exec: commands in a VM's container or its guest OS over the
# agent's exec sessions. The first part runs fc-agent in test mode on the
# host (--listen-unix, tests/lib/fake-podman: "podman exec" runs the
# command on the host), the last part a real microVM under fc-qemu.

load helpers
load lib/agent-test
bats_require_minimum_version 1.5.0

setup() {
	fc_setup_root
	agent_test_setup
}

teardown() {
	if [ -n "${RUN_PID:-}" ]; then
		kill "$RUN_PID" 2>/dev/null || true
		wait "$RUN_PID" 2>/dev/null || true
	fi
	stop_agent
	local r=0
	leak_check || r=$?
	return $r
}

# A container "running" in the test-mode agent: fc-run with a plan whose
# command waits for the file go (so the run lasts the test).
start_run() {
	jq -n --arg disk "$DISK" --arg go "$BATS_TEST_TMPDIR/go" '{version: 1, image: {disk: $disk},
		cmd: ["sh", "-c", "echo up >&2; while [ ! -e \"$0\" ]; do sleep 0.05; done", $go],
		container_name: "box"}' > "$BATS_TEST_TMPDIR/p.json"
	fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" >/dev/null 2>"$BATS_TEST_TMPDIR/run.err" &
	RUN_PID=$!
	wait_line "$BATS_TEST_TMPDIR/run.err" '^up$' 20 "$RUN_PID"
}

# xc ARGS...: fc-exec against the test-mode agent, bounded.
xc() {
	timeout --kill-after=5 60 fc-exec --unix "$SOCK" "$@"
}

@test "exec: stdout and stderr separate, the exit code, in the container and with --vm" {
	start_agent
	start_run
	run --separate-stderr xc -- sh -c 'echo a; echo b >&2; exit 3'
	assert_eq "$status" 3 "the command's exit code"
	assert_eq "$output" a "stdout"
	assert_eq "$stderr" b "stderr"
	run --separate-stderr xc --vm -- sh -c 'echo a; echo b >&2; exit 4'
	assert_eq "$status" 4 "--vm: exit code"
	assert_eq "$output:$stderr" "a:b" "--vm: streams"
	run xc --vm -- sh -c 'kill -TERM $$'
	assert_eq "$status" 143 "a signal death is 128+N"
}

@test "exec: podman exec gets -i, -t, -e, -w, -u and the container's name" {
	export FAKE_EXEC_ARGS="$BATS_TEST_TMPDIR/xargs"
	start_agent
	start_run
	run_fc 0 fc-exec --unix "$SOCK" -i -e A=1 -e 'B=two words' -w /tmp -u 0 -- sh -c 'echo "$A $B $(pwd)"'
	assert_eq "$output" "1 two words /tmp" "env and workdir reach the command"
	local args; args=$(cat "$BATS_TEST_TMPDIR/xargs")
	assert_contains "$args" "--interactive" "-i"
	assert_contains "$args" "--user=0" "-u"
	assert_contains "$args" "--workdir=/tmp" "-w"
	assert_contains "$args" "--env=B=two words" "-e, one argument"
	assert_contains "$args" "box" "the container's name"
}

@test "exec: 16 MiB through stdin to sha256sum; 16 MiB back to a slow reader, intact" {
	start_agent
	start_run
	head -c 16777216 /dev/urandom > "$BATS_TEST_TMPDIR/big"
	local want; want=$(sha256sum < "$BATS_TEST_TMPDIR/big" | cut -d' ' -f1)
	run_fc 0 fc-exec --unix "$SOCK" -i -- sha256sum < "$BATS_TEST_TMPDIR/big"
	assert_eq "${output%% *}" "$want" "stdin arrived whole"
	# The reader takes 64 KiB every 20 ms (about 5 s): the agent must
	# hold back, not buffer, and nothing may be lost.
	timeout 120 fc-exec --unix "$SOCK" -- cat "$BATS_TEST_TMPDIR/big" |
		python3 -c '
import sys, time, hashlib
h = hashlib.sha256()
while True:
    b = sys.stdin.buffer.read(65536)
    if not b: break
    h.update(b); time.sleep(0.02)
print(h.hexdigest())' > "$BATS_TEST_TMPDIR/got"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/got")" "$want" "the slow reader got every byte"
	local rss; rss=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT_PID/status")
	[ "$rss" -lt 65536 ] || { echo "agent peak RSS ${rss} KiB: it buffered" >&2; return 1; }
}

@test "exec: 8 execs at once while the container runs, each with its own output" {
	start_agent
	start_run
	local i pids=()
	for i in 1 2 3 4 5 6 7 8; do
		xc -- sh -c "sleep 0.5; seq 1 $((i * 1000)) | tail -1; exit $i" >"$BATS_TEST_TMPDIR/o$i" &
		pids+=($!)
	done
	for i in 1 2 3 4 5 6 7 8; do
		local rc=0
		wait "${pids[$((i - 1))]}" || rc=$?
		assert_eq "$rc" "$i" "exec $i: its exit code"
		assert_eq "$(cat "$BATS_TEST_TMPDIR/o$i")" "$((i * 1000))" "exec $i: its output"
	done
	run fc-run --status --unix "$SOCK"
	assert_eq "$(jq -r .state <<<"$output")" running "the container ran on"
}

@test "exec: SIGINT and SIGTERM reach the command (not just podman); EOF on stdin" {
	start_agent
	start_run
	local sig code
	for sig in INT TERM; do
		# fc-exec itself in the background (not a wrapper that would take
		# the signal), with a watchdog so a hang fails instead of waiting.
		fc-exec --unix "$SOCK" -- sh -c "trap 'echo got-$sig; exit 7' $sig; echo ready; while :; do sleep 0.1; done" \
			>"$BATS_TEST_TMPDIR/out" &
		local pid=$! rc=0
		( sleep 60; kill -9 "$pid" ) 2>/dev/null &
		local dog=$!
		wait_line "$BATS_TEST_TMPDIR/out" ready 20 "$pid"
		kill -"$sig" "$pid"
		wait "$pid" || rc=$?
		kill "$dog" 2>/dev/null || true
		assert_eq "$rc" 7 "$sig: the command's trap ran and its code came back"
		assert_contains "$(cat "$BATS_TEST_TMPDIR/out")" "got-$sig" "it saw SIG$sig"
	done
	run_fc 0 sh -c "printf 'x\ny\n' | fc-exec --unix '$SOCK' -i -- wc -l"
	assert_eq "$(echo $output)" 2 "stdin EOF ends wc"
	run_fc 0 fc-exec --unix "$SOCK" -- cat < /dev/null
	assert_eq "$output" "" "without -i the command's stdin is empty"
}

@test "exec: no container (idle agent), unknown and stopped VMs, command not found, usage" {
	start_agent
	# idle: a plan may be on its way; waited for, bounded by --timeout
	run_fc 125 fc-exec --unix "$SOCK" --timeout 2 -- true
	assert_contains "$output" "no container is running in this VM after 2 s" "idle agent: says so at the bound"
	run_fc 0 fc-exec --unix "$SOCK" --vm -- true
	run_fc 127 fc-exec --unix "$SOCK" --vm -- no-such-command-xyz
	assert_contains "$output" "no-such-command-xyz" "not found: named"
	run_fc 125 fc-exec --name no-such-vm -- true
	assert_contains "$output" "no running VM named 'no-such-vm'" "unknown VM"
	run_fc 125 fc-exec --pid 1 -- true
	assert_contains "$output" "no running VM" "--pid of no VM"
	run_fc 2 fc-exec --name a --pid 1 -- true
	assert_contains "$output" "exactly one of" "two targets"
	run_fc 2 fc-exec --name a
	assert_contains "$output" "no command" "no command"
	run_fc 0 fc-exec -h
	assert_contains "$output" "usage: fc-exec" "help"
}

@test "exec: the agent killed mid-stream: fc-exec fails, bounded, non-zero" {
	start_agent
	xc --vm -- sh -c 'while :; do echo tick; sleep 0.1; done' >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	local pid=$! rc=0
	wait_line "$BATS_TEST_TMPDIR/out" tick 20 "$pid"
	kill -9 "$AGENT_PID"
	wait "$AGENT_PID" 2>/dev/null || true
	AGENT_PID=""
	wait "$pid" || rc=$?
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] ||
		{ echo "fc-exec exit $rc" >&2; return 1; }
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "connection to the agent lost" "says why"
	pkill -f "echo tick" 2>/dev/null || true
}

# pty_py SCRIPT...: a python scenario with fc-exec on a real pseudo-terminal.
pty_py() {
	SOCK="$SOCK" AGENT_PID="$AGENT_PID" timeout 120 python3 - "$@"
}

@test "exec -t: a pty; window size at start and after a resize; Ctrl-C; TERM; the terminal restored" {
	start_agent
	run pty_py <<'EOF'
import os, pty, sys, time, struct, fcntl, termios, select, signal
sock = os.environ["SOCK"]
def spawn(cmd, rows=30, cols=100):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "vt220"
        os.execvp("sh", ["sh", "-c", cmd])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return pid, fd
def read_until(fd, pat, t=30):
    buf, end = b"", time.time() + t
    while pat not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try: d = os.read(fd, 4096)
            except OSError: break
            if not d: break
            buf += d
    return buf
# stty -g before and after, around fc-exec in raw mode
cmd = ('sleep 0.3; stty -g > %s/before; fc-exec --unix %s -i -t --vm -- sh -c '
       '"echo T=\\$TERM; stty size; read x; stty size; sleep 100"; echo rc=$?; stty -g > %s/after'
       % (os.environ["BATS_TEST_TMPDIR"], sock, os.environ["BATS_TEST_TMPDIR"]))
pid, fd = spawn(cmd)
b = read_until(fd, b"30 100")
print("start:", b"T=vt220" in b, b"30 100" in b)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
time.sleep(1.0)
os.write(fd, b"\n")
b = read_until(fd, b"40 120")
print("resized:", b"40 120" in b)
time.sleep(0.5)
os.write(fd, b"\x03")    # Ctrl-C: the sleep in the guest
b = read_until(fd, b"rc=")
b += read_until(fd, b"\n", 2)
print("ctrl-c:", b"rc=130" in b)
os.waitpid(pid, 0)
EOF
	echo "$output"
	assert_contains "$output" "start: True True" "TERM and the initial window size"
	assert_contains "$output" "resized: True" "the new size after SIGWINCH"
	assert_contains "$output" "ctrl-c: True" "Ctrl-C killed the guest's sleep: 130"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/after")" "$(cat "$BATS_TEST_TMPDIR/before")" "terminal modes restored"
}

@test "exec -t: the terminal is restored when the agent is killed -9 mid-session" {
	start_agent
	run pty_py <<'EOF'
import os, pty, sys, time, select, signal
sock, d = os.environ["SOCK"], os.environ["BATS_TEST_TMPDIR"]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", "-c", "stty -g > %s/before; fc-exec --unix %s -i -t --vm -- sh -c 'echo in; sleep 100'; echo rc=$?; stty -g > %s/after" % (d, sock, d)])
buf, end = b"", time.time() + 30
while b"in" not in buf and time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r: buf += os.read(fd, 4096)
os.kill(int(os.environ["AGENT_PID"]), signal.SIGKILL)
end = time.time() + 30
while b"rc=" not in buf and time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try: buf += os.read(fd, 4096)
        except OSError: break
print("ended:", b"rc=125" in buf)
os.waitpid(pid, 0)
EOF
	AGENT_PID=""
	echo "$output"
	assert_contains "$output" "ended: True" "fc-exec failed (125) when the agent died"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/after")" "$(cat "$BATS_TEST_TMPDIR/before")" "terminal modes restored"
	pkill -f "sleep 100" -P 1 2>/dev/null || true
}

@test "run -i/-t (test mode): stdin reaches the main container; -t gives it a terminal with the host's size" {
	start_agent
	jq -n --arg disk "$DISK" '{version: 1, image: {disk: $disk}, cmd: ["wc", "-l"], stdin: true}' \
		> "$BATS_TEST_TMPDIR/p.json"
	run_fc 0 sh -c "printf 'x\ny\n' | fc-run --unix '$SOCK' -i '$BATS_TEST_TMPDIR/p.json'"
	assert_eq "$(echo $output)" 2 "wc saw both lines and the end of input"
	jq -n --arg disk "$DISK" '{version: 1, image: {disk: $disk}, cmd: ["cat"]}' > "$BATS_TEST_TMPDIR/q.json"
	run_fc 0 sh -c "echo ignored | fc-run --unix '$SOCK' '$BATS_TEST_TMPDIR/q.json'"
	assert_eq "$output" "" "without stdin in the plan the container reads nothing"
	jq -n --arg disk "$DISK" '{version: 1, image: {disk: $disk}, stdin: true, tty: true,
		cmd: ["sh", "-c", "test -t 0 && echo is-a-tty; stty size; read a; echo got=$a"]}' > "$BATS_TEST_TMPDIR/t.json"
	run env SOCK="$SOCK" P="$BATS_TEST_TMPDIR/t.json" timeout 60 python3 - <<'EOF2'
import os, pty, time, select, struct, fcntl, termios
pid, fd = pty.fork()
if pid == 0:
    # --foreground: fc-run must stay in the terminal's foreground group
    os.execvp("sh", ["sh", "-c", "timeout --foreground 30 fc-run --unix %s -i -t %s; echo rc=$?" % (os.environ["SOCK"], os.environ["P"])])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
buf, end = b"", time.time() + 20
while time.time() < end and b"33 77" not in buf:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try: buf += os.read(fd, 4096)
        except OSError: break
os.write(fd, b"hello\r")
end = time.time() + 20
while time.time() < end and b"rc=" not in buf:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try: buf += os.read(fd, 4096)
        except OSError: break
print(buf.decode(errors="replace").replace("\r", ""))
os.waitpid(pid, 0)
EOF2
	echo "$output"
	assert_contains "$output" "is-a-tty" "the container's stdin is a terminal"
	assert_contains "$output" "33 77" "with the host terminal's size"
	assert_contains "$output" "got=hello" "keys reach it"
	assert_contains "$output" "rc=0" "and its exit code comes back"
}

# ---- a real microVM ----

@test "exec in a microVM: streams and code, --vm sees the guest OS, the container only itself, not found is 127" {
	fc_vm_root exec
	local img="$BATS_TEST_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$img" --name localhost/fcvm-test:latest >/dev/null
	fcvm podman run --name xvm "$img" sleep 600 >/dev/null 2>"$BATS_TEST_TMPDIR/run.err" 3>&- &
	RUN_PID=$!
	# As soon as the VM has a record (booting, image not yet loaded), an
	# exec waits for the container (bounded).
	local i
	for ((i = 0; i < 1200; i++)); do
		fc-state get xvm >/dev/null 2>&1 && break
		sleep 0.1
	done
	run --separate-stderr timeout 300 fcvm exec xvm -- sh -c 'echo a; echo b >&2; exit 3'
	[ "$status" -eq 3 ] || echo "stderr: $stderr" >&2
	assert_eq "$status" 3 "exit code from the container"
	assert_eq "$output:$stderr" "a:b" "separate streams"
	run_fc 0 --timeout 120 fcvm exec --vm xvm -- cat /proc/1/cmdline
	assert_contains "$output" "fc-agent" "--vm: pid 1 is the agent"
	run_fc 0 --timeout 120 fcvm exec xvm -- cat /proc/1/cmdline
	assert_contains "$output" "sleep" "default: pid 1 is the container's command"
	run_fc 127 --timeout 120 fcvm exec xvm -- no-such-cmd
	assert_contains "$output" "no-such-cmd" "podman's message"
	run_fc 0 --timeout 120 sh -c "printf 'x\ny\n' | fcvm exec -i xvm -- wc -l"
	assert_eq "$(echo $output)" 2 "stdin into the container"
	# -it through a real pty: podman exec -t in the guest, the size, keys, Ctrl-C.
	# podman 4.3 sizes an exec's terminal only after the command started
	# (podman#10710: 'stty size' at once fails 1 time in ~5); the agent gives
	# a still unsized terminal its size, so it must be right a second later.
	run env SOCK=unused timeout 200 python3 - <<'EOF2'
import os, pty, time, select, struct, fcntl, termios
def rd(fd, pat, t):
    buf, end = b"", time.time() + t
    while time.time() < end and pat not in buf:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try: buf += os.read(fd, 4096)
            except OSError: break
    return buf
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", "-c", "stty -g > $BATS_TEST_TMPDIR/b; timeout --foreground 150 fcvm exec -it xvm -- sh -c 'sleep 1; stty size; read x; echo got=$x; sleep 100'; echo rc=$?; stty -g > $BATS_TEST_TMPDIR/a"])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 91, 0, 0))
b = rd(fd, b"31 91", 120)
os.write(fd, b"hi\r")
b += rd(fd, b"got=hi", 30)
time.sleep(1)
os.write(fd, b"\x03")
b += rd(fd, b"rc=", 30)
print(b.decode(errors="replace").replace("\r", ""))
os.waitpid(pid, 0)
EOF2
	echo "$output"
	assert_contains "$output" "31 91" "-it: the host terminal's size in the container"
	assert_contains "$output" "got=hi" "-it: keys reach it"
	assert_contains "$output" "rc=130" "-it: Ctrl-C ended the container's sleep"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/a")" "$(cat "$BATS_TEST_TMPDIR/b")" "-it: terminal modes restored"
	kill -TERM "$RUN_PID"
	wait "$RUN_PID" || true
	RUN_PID=""
	run_fc 125 fcvm exec xvm -- true
	assert_contains "$output" "no running VM named 'xvm'" "a stopped VM"
	rm -rf "$FCVM_ROOT"
}

@test "run in a microVM: -i pipes stdin (wc -l prints 2); -w -u --hostname --env-file --entrypoint reach podman run" {
	fc_vm_root exec
	local img="$BATS_TEST_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$img" --name localhost/fcvm-test:latest >/dev/null
	run_fc 0 --timeout 300 sh -c "printf 'x\ny\n' | fcvm podman run -i --rm '$img' wc -l 3>&-"
	assert_eq "$(echo $output)" 2 "printf 'x\\ny\\n' | fcvm podman run -i ... wc -l"
	printf 'FROMFILE=yes\n# a comment\n\nOTHER=two words\n' > "$BATS_TEST_TMPDIR/envf"
	run_fc 0 --timeout 300 fcvm podman run --rm -w /tmp -u 1234:5678 --hostname hx -l a=b \
		--env-file "$BATS_TEST_TMPDIR/envf" --entrypoint sh "$img" \
		-c 'echo "$(pwd) $(id -u):$(id -g) $(hostname) $FROMFILE $OTHER"' 3>&-
	assert_contains "$output" "/tmp 1234:5678 hx yes two words" "workdir, user, hostname, env file, entrypoint"
	rm -rf "$FCVM_ROOT"
}
