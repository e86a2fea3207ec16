#!/usr/bin/env bats
# fc-agent as one event loop over many connections, in test mode on the host
# (--listen-unix, a fake podman): concurrent status requests while a
# container runs, "busy" for a second plan, a host that never reads stalls
# nobody else, heartbeats per session, the container name; and the refusal
# to run on a host by mistake.

load helpers
load lib/agent-test

setup() {
	fc_setup_root
	agent_test_setup
}

teardown() {
	stop_agent
	if [ -n "${VM_OWNER:-}" ]; then
		kill -TERM "$VM_OWNER" 2>/dev/null || true
		local i
		for ((i = 0; i < 100; i++)); do kill -0 "$VM_OWNER" 2>/dev/null || break; sleep 0.1; done
	fi
	local r=0
	leak_check || r=$?
	[ -z "${VM_ROOT:-}" ] || rm -rf "$VM_ROOT"
	return $r
}

# py [ARGS...]: a python scenario from stdin, with tests/lib/agentproto.py
# importable; argv: SOCK DISK TMPDIR ARGS...
py() {
	AGENT_PID="$AGENT_PID" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$BATS_TEST_DIRNAME/lib" timeout 120 python3 - "$SOCK" "$DISK" "$BATS_TEST_TMPDIR" "$@"
}

# wait_for FILE PATTERN: until FILE contains PATTERN (at most 20 s).
wait_for() {
	local i
	for ((i = 0; i < 400; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "no '$2' in $1 after 20 s:" >&2
	cat "$1" >&2
	return 1
}

@test "agent-multi: 10 concurrent connections during a run: 7 status answers, busy, a mute client, the run unharmed" {
	start_agent
	jq -n --arg disk "$DISK" --arg go "$BATS_TEST_TMPDIR/go" '{version: 1, image: {disk: $disk},
		cmd: ["sh", "-c", "echo up >&2; while [ ! -e \"$0\" ]; do sleep 0.05; done; echo done; exit 3", $go],
		container_name: "multi-1"}' > "$BATS_TEST_TMPDIR/p.json"
	fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" >"$BATS_TEST_TMPDIR/out" \
		2>"$BATS_TEST_TMPDIR/err" &
	local pid=$! rc=0
	wait_for "$BATS_TEST_TMPDIR/err" up
	run py <<'EOF'
import json, socket, sys, time
from agentproto import *
path, disk = sys.argv[1], sys.argv[2]
# Everyone connects first: 7 status clients, a second plan, a mute client
# that never reads nor writes; all hold their connections open at once.
mute = conn(path)
st = [conn(path) for _ in range(7)]
busy = conn(path)
for s in st:
    hello(s)
t0 = time.time()
for s in st:
    s.sendall(frame(STATUS_REQ))
busy.sendall(plan(disk, ["true"]))
for s in st:
    fr = rest(s)
    assert len(fr) == 1 and fr[0][0] == STATUS, fr
    j = json.loads(fr[0][1])
    print("status", j["state"], j["container"], j["sessions"], sorted(j))
fr = rest(busy)
print("busy", [t for t, _ in fr], json.loads(fr[-1][1])["message"])
print("answered within 10 s:", time.time() - t0 < 10)
# The mute client is still connected and the agent still answers.
print("after", status(path)["state"])
mute.close()
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_eq "$(grep -c '^status running multi-1 1 ' <<<"$output")" 7 \
		"7 answers: running, the plan's container name, one session (the run)"
	assert_contains "$output" "['container', 'sessions', 'state', 'version']" \
		"no exit_code while running"
	assert_contains "$output" "busy [1, 9] busy: a container is already running" \
		"a second plan: hello, then ERROR busy"
	assert_contains "$output" "answered within 10 s: True" "nobody waited for the mute client"
	assert_contains "$output" "after running" "served with the mute client connected"
	kill -0 "$pid" || { echo "fc-run ended early" >&2; false; }
	touch "$BATS_TEST_TMPDIR/go"
	wait "$pid" || rc=$?
	assert_eq "$rc" 3 "the run's exit code, undisturbed"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/out")" "done" "the run's output, undisturbed"
	assert_eq "$(sed -n 2p "$BATS_TEST_TMPDIR/args")" "--name=multi-1" "podman run --name"
	run py <<'EOF'
import sys
from agentproto import *
j = status(sys.argv[1])
print(j["state"], j["container"], j["exit_code"], j["sessions"])
EOF
	assert_eq "$output" "exited multi-1 3 0" "after the run: exited, its code, no session"
}

@test "agent-multi: a host that never reads stalls only its own container's output" {
	start_agent
	run py <<'EOF'
import json, os, sys, time
from agentproto import *
path, disk, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
agent_pid = int(os.environ["AGENT_PID"])
def rss_kb():
    for l in open("/proc/%d/status" % agent_pid):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
# 200 MB of output to a host that never reads.
r = conn(path)
hello(r)
r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
r.sendall(plan(disk, ["sh", "-c", "head -c 200000000 /dev/zero; echo finished > $0", tmp + "/fin"]))
time.sleep(3)
t0 = time.time()
j = status(path)
print("status while stalled:", j["state"], "in", "%.1f" % (time.time() - t0), "s")
print("rss bounded:", rss_kb() < 32 * 1024, rss_kb())
print("container blocked:", not os.path.exists(tmp + "/fin"))
# The host goes away: the container runs on, its output discarded.
r.close()
for _ in range(600):
    if status(path)["state"] == "exited":
        break
    time.sleep(0.1)
j = status(path)
print("after the host left:", j["state"], j["exit_code"], os.path.exists(tmp + "/fin"))
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "status while stalled: running" "status answered while a host stalls"
	assert_contains "$output" "rss bounded: True" "the agent does not buffer without bound"
	assert_contains "$output" "container blocked: True" "the container waits for its reader"
	assert_contains "$output" "after the host left: exited 0 True" \
		"without a host the container ran to its end"
}

@test "agent-multi: heartbeats reach the run session while status requests come and go" {
	start_agent
	run py <<'EOF'
import sys, threading, time
from agentproto import *
path, disk = sys.argv[1], sys.argv[2]
r = conn(path)
hello(r)
r.sendall(plan(disk, ["sh", "-c", "sleep 5; echo x"], poweroff=True))
answers = []
def poll():
    for _ in range(8):
        answers.append(status(path)["state"])
        time.sleep(0.4)
th = threading.Thread(target=poll)
th.start()
fr = rest(r)
th.join()
types = [t for t, _ in fr]
print("heartbeats:", types.count(HEARTBEAT) >= 2, types.count(HEARTBEAT))
print("output:", [p for t, p in fr if t == STDOUT])
print("exit:", [p for t, p in fr if t == EXIT])
print("statuses:", set(answers) <= {"starting", "running"} and "running" in answers, len(answers))
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "heartbeats: True" "at least 2 heartbeats in 5 s of silence"
	assert_contains "$output" "output: [b'x\\n']" "the output"
	assert_contains "$output" "exit: [b'{\"code\":0}']" "the exit code"
	assert_contains "$output" "statuses: True 8" "8 status answers meanwhile: starting, then running"
	# poweroff: the test-mode agent exits once the run is over.
	local i
	for ((i = 0; i < 200; i++)); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.05; done
	if kill -0 "$AGENT_PID" 2>/dev/null; then
		echo "the agent still runs 10 s after SIGTERM" >&2
		return 1
	fi
	wait "$AGENT_PID"
	AGENT_PID=""
}

@test "agent-multi: status when idle, after a failed plan, and bad first frames" {
	start_agent
	run py <<'EOF'
import json, sys
from agentproto import *
path, disk = sys.argv[1], sys.argv[2]
print("idle:", json.dumps(status(path), sort_keys=True))
s = conn(path)
hello(s)
s.sendall(frame(STATUS_REQ, b"x"))
print("payload:", [(t, json.loads(p)["message"]) for t, p in rest(s)])
s = conn(path)
hello(s)
s.sendall(frame(HEARTBEAT))
print("other:", [(t, json.loads(p)["message"]) for t, p in rest(s)])
s = conn(path)
hello(s)
s.sendall(frame(PLAN, b'{"version":1,"image":{"disk":"/d"},"container_name":"-bad"}'))
print("bad name:", [(t, json.loads(p)["message"]) for t, p in rest(s)])
j = status(path)
print("after:", j["state"], j["container"], j["exit_code"], j["error"][:28])
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" \
		'idle: {"container": null, "sessions": 0, "state": "idle", "version": 1}' \
		"idle status: no container, no exit code"
	assert_contains "$output" "payload: [(9, 'a status request has no payload')]" \
		"a status request with a payload is refused"
	assert_contains "$output" "other: [(9, 'expected a plan or a status request, got a heartbeat frame')]" \
		"another first frame is refused"
	assert_contains "$output" "bad name: [(9, \"invalid plan: 'container_name' must match" \
		"a bad container_name is refused"
	assert_contains "$output" "after: exited None 125 invalid plan: 'container_na" \
		"status after a failed plan: exited 125 with the reason"
}

@test "agent-multi: a clone fix-up in test mode is checked and answered but not applied; a bad one is refused" {
	start_agent
	local host; host=$(uname -n)
	run py <<'EOF'
import json, sys
from agentproto import *
path = sys.argv[1]
fix = {"version": 1, "id": "vm-0123456789ab", "hostname": "c1", "seed": "ab" * 64,
       "realtime": {"sec": 1800000000, "nsec": 0}}
s = conn(path)
hello(s)
s.sendall(frame(CLONE, json.dumps(fix).encode()))
print("good:", [(t, json.loads(p)) for t, p in rest(s)])
fix["seed"] = "ab" * 8
s = conn(path)
hello(s)
s.sendall(frame(CLONE, json.dumps(fix).encode()))
print("short seed:", [(t, json.loads(p)["message"]) for t, p in rest(s)])
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "good: [(17, {'version': 1, 'hostname': 'c1', 'containers': 0, 'reseeded': False, 'announced': 0})]" \
		"CLONE_DONE, nothing applied in test mode"
	assert_contains "$output" "short seed: [(9, \"clone fix-up: 'seed' must be 32-64 bytes as hex digits\")]" \
		"a seed too short is refused"
	assert_eq "$(uname -n)" "$host" "the host's hostname is untouched"
}

@test "agent-multi: a run connection's protocol error drops that host, the container runs on" {
	start_agent
	run py <<'EOF'
import json, sys, time
from agentproto import *
path, disk, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
r = conn(path)
hello(r)
r.sendall(plan(disk, ["sh", "-c", "echo up >&2; sleep 2; echo ran > $0", tmp + "/ran"]))
while read_frame(r)[0] != STDERR:
    pass
r.sendall(frame(PLAN, b"{}"))
fr = rest(r)
print("dropped:", [json.loads(p)["message"] for t, p in fr if t == ERROR])
print("during:", status(path)["state"])
for _ in range(100):
    if status(path)["state"] == "exited":
        break
    time.sleep(0.1)
print("after:", status(path)["exit_code"], open(tmp + "/ran").read().strip())
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "dropped: ['unexpected plan frame during a run']" "the host is told why"
	assert_contains "$output" "during: running" "the container keeps running"
	assert_contains "$output" "after: 0 ran" "and ends normally"
}

@test "agent-multi: SIGTERM in test mode stops the container and the agent" {
	start_agent
	run py <<'EOF'
import os, signal, sys
from agentproto import *
path, disk = sys.argv[1], sys.argv[2]
r = conn(path)
hello(r)
r.sendall(plan(disk, ["sh", "-c", "echo up >&2; exec sleep 600"]))
while read_frame(r)[0] != STDERR:
    pass
os.kill(int(os.environ["AGENT_PID"]), signal.SIGTERM)
fr = rest(r)
print("exit:", [p for t, p in fr if t == EXIT])
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "exit: [b'{\"signal\":15}']" "the container got SIGTERM, the host its EXIT"
	wait "$AGENT_PID"
	AGENT_PID=""
	[ ! -e "$SOCK" ] || { echo "agent left its socket behind" >&2; false; }
}

@test "fc-agent: refuses to run when not PID 1 and not in test mode, before mounting anything" {
	# In a private mount and UTS namespace, so that a regression mounts
	# nothing on the host itself; what it would have mounted shows in the
	# namespace's mountinfo.
	local agent
	agent=$(command -v fc-agent)
	run timeout 30 unshare --mount --uts --propagation private sh -c '
		cat /proc/self/mountinfo > "$1/before"
		"$2"
		echo "rc=$?"
		cat /proc/self/mountinfo > "$1/after"' sh "$BATS_TEST_TMPDIR" "$agent"
	echo "$output"
	assert_contains "$output" "fc-agent: not PID 1: run it as a microVM's init, or use --listen-unix for tests" \
		"says why"
	assert_contains "$output" "rc=2" "exit 2"
	diff "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after" ||
		{ echo "fc-agent mounted something" >&2; false; }
	run timeout 30 unshare --mount --uts --propagation private sh -c '
		cat /proc/self/mountinfo > "$1/before"
		"$2" --port 1024 -v
		echo "rc=$?"
		cat /proc/self/mountinfo > "$1/after"' sh "$BATS_TEST_TMPDIR" "$agent"
	assert_contains "$output" "rc=2" "--port without --listen-unix: exit 2 too"
	diff "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after"
}

@test "agent-multi (VM): status answers and busy through vsock while a real container runs" {
	fc_vm_root multi
	VM_ROOT=$FCVM_ROOT
	local img="$BATS_TEST_TMPDIR/busybox.oci.tar" disk rootfs
	"$BATS_TEST_DIRNAME/lib/mkimage" "$img" --name localhost/fcvm-test:latest >/dev/null
	disk=$(fc-disk image --json "$img" | jq -r .path)
	rootfs=$(fc-disk rootfs --vm multi)
	VM_OWNER=$(fc-boot --name multi --id multi --rootfs "$rootfs" --drive "$disk:ro" \
		--console "$BATS_TEST_TMPDIR/console.log" --detach 3>&-)
	wait_line "$BATS_TEST_TMPDIR/console.log" "fc-agent: ready" 120 "$VM_OWNER"
	run py "$FCVM_ROOT/run/multi/vsock.sock" <<'EOF'
import json, sys
from agentproto import *
uds = sys.argv[4]
r = vconn(uds)
hello(r)
r.sendall(plan("/dev/vdb", ["sh", "-c", "echo up >&2; sleep 15; echo done"],
               container_name="multi-vm"))
while True:
    t, p = read_frame(r)
    if t == STDERR and b"up" in p:
        break
    assert t in (STARTED, HEARTBEAT, STDERR), (t, p)
# 8 more connections at once while it runs: 7 status requests, one plan.
st = [vconn(uds) for _ in range(7)]
busy = vconn(uds)
for s in st:
    hello(s)
    s.sendall(frame(STATUS_REQ))
hello(busy)
busy.sendall(plan("/dev/vdb", ["true"]))
for s in st:
    j = json.loads(rest(s)[0][1])
    print("status", j["state"], j["container"], j["sessions"])
print("busy", [(t, json.loads(p)["message"]) for t, p in rest(busy)])
fr = rest(r)
print("output", [p for t, p in fr if t == STDOUT])
print("exit", [p for t, p in fr if t == EXIT])
s = vconn(uds)
hello(s)
s.sendall(frame(STATUS_REQ))
j = json.loads(rest(s)[0][1])
print("after", j["state"], j["container"], j["exit_code"])
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	assert_eq "$(grep -c '^status running multi-vm 1$' <<<"$output")" 7 \
		"7 status answers from the guest while its container runs"
	assert_contains "$output" "busy [(9, 'busy: a container is already running')]" "a second plan: busy"
	assert_contains "$output" "output [b'done\\n']" "the container's output"
	assert_contains "$output" 'exit [b'"'"'{"code":0}'"'"']' "the container's exit code"
	assert_contains "$output" "after exited multi-vm 0" "status after the run"
}

@test "agent-multi: fc-run --status gets the real agent's answer, idle and during a run" {
	start_agent
	run_fc 0 --timeout 30 fc-run --status --unix "$SOCK" --timeout 10
	assert_eq "$(jq -c . <<<"$output")" '{"version":1,"state":"idle","container":null,"sessions":0}' \
		"idle"
	jq -n --arg disk "$DISK" --arg go "$BATS_TEST_TMPDIR/go" '{version: 1, image: {disk: $disk},
		cmd: ["sh", "-c", "echo up >&2; while [ ! -e \"$0\" ]; do sleep 0.05; done", $go],
		container_name: "st"}' > "$BATS_TEST_TMPDIR/p.json"
	fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" 2>"$BATS_TEST_TMPDIR/err" &
	local pid=$!
	wait_for "$BATS_TEST_TMPDIR/err" up
	run_fc 0 --timeout 30 fc-run --status --unix "$SOCK" --timeout 10
	assert_eq "$(jq -r '"\(.state) \(.container) \(.sessions)"' <<<"$output")" "running st 1" \
		"running, named, one session"
	touch "$BATS_TEST_TMPDIR/go"
	wait "$pid"
	run_fc 0 --timeout 30 fc-run --status --unix "$SOCK" --timeout 10
	assert_eq "$(jq -r '"\(.state) \(.exit_code)"' <<<"$output")" "exited 0" "exited, its code"
}
