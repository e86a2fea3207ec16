#!/usr/bin/env bats
# fc-agent + fc-run on the host: the agent in test mode (--listen-unix) with
# a fake podman (--runner), so the protocol, the streaming and the exit code
# handling are checked without a VM. The in-VM path is covered by the
# fcvm podman run tests.

load helpers
load lib/agent-test

setup() {
	fc_setup_root
	agent_test_setup	# tests/lib/agent-test.bash: SOCK, FAKE (tests/lib/fake-podman), DISK
}

teardown() {
	stop_agent
	[ -n "${FAKE_PID:-}" ] && fake_done
	leak_check
}

# plan FILE CMD_JSON [EXTRA_JSON]: write a plan running CMD_JSON from $DISK.
plan() {
	jq -n --arg disk "$DISK" --argjson cmd "$2" --argjson extra "${3:-{\}}" \
		'{version: 1, image: {disk: $disk}, cmd: $cmd, poweroff: true} + $extra' > "$1"
}

@test "agent: stdout and stderr stay separate, exit code 7 passes through" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" '["sh","-c","echo out; echo err >&2; exit 7"]' \
		'{"env":["A=1","B=two words=x"],"user":"1000","workdir":"/w"}'
	local rc=0
	timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" >"$BATS_TEST_TMPDIR/out" \
		2>"$BATS_TEST_TMPDIR/err" || rc=$?
	assert_eq "$rc" 7 "fc-run exits with the container's code"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/out")" "out" "stdout carries only stdout"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/err")" "err" "stderr carries only stderr"
	assert_eq "$(sed -n '1,8p' "$BATS_TEST_TMPDIR/args" | tr '\n' ' ')" \
		"--rm --name=fcvm --network=none --log-driver=none --env=A=1 --env=B=two words=x --user=1000 --workdir=/w " \
		"podman run options, values glued to their flags, the default container name"
	assert_eq "$(sed -n '9p' "$BATS_TEST_TMPDIR/args")" "localhost/fake:latest" \
		"the image name is taken from podman load's output"
	wait "$AGENT_PID"
	AGENT_PID=""
	[ ! -e "$SOCK" ] || { echo "agent left its socket behind" >&2; false; }
}

@test "agent: 1 MiB of binary output arrives byte-exact" {
	head -c 1048576 /dev/urandom > "$BATS_TEST_TMPDIR/blob"
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" "[\"cat\",\"$BATS_TEST_TMPDIR/blob\"]"
	timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" >"$BATS_TEST_TMPDIR/out"
	assert_eq "$(sha256sum < "$BATS_TEST_TMPDIR/out")" "$(sha256sum < "$BATS_TEST_TMPDIR/blob")" \
		"sha256 of what arrived"
}

@test "agent: a container killed by a signal gives 128+N" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" '["sh","-c","kill -TERM $$"]'
	run_fc 143 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
}

@test "agent: SIGINT to fc-run is forwarded to the container once" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" \
		'["sh","-c","trap \"echo got-int; exit 5\" INT; echo up >&2; while :; do sleep 0.1; done"]'
	fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	local pid=$! i rc=0
	for ((i = 0; i < 200; i++)); do
		grep -q up "$BATS_TEST_TMPDIR/err" && break
		sleep 0.05
	done
	kill -INT "$pid"
	wait "$pid" || rc=$?
	assert_eq "$rc" 5 "the container's trap decided the exit code"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/out")" "got-int" "the container saw SIGINT"
}

@test "agent: a forwarded SIGINT the container ignores ends fc-run after --stop-timeout (130)" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" '["sh","-c","trap \"\" INT; echo up >&2; sleep 30"]'
	fc-run --unix "$SOCK" --stop-timeout 1 "$BATS_TEST_TMPDIR/p.json" \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	local pid=$! i rc=0 t0
	wait_line "$BATS_TEST_TMPDIR/err" '^up$' 20 "$pid"
	t0=$SECONDS
	kill -INT "$pid"
	wait "$pid" || rc=$?
	assert_eq "$rc" 130 "ended as by the signal"
	[ $((SECONDS - t0)) -le 5 ] || { echo "took $((SECONDS - t0)) s" >&2; false; }
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "no exit 1 s after signal 2" "says why"
	run_fc 2 fc-run --unix "$SOCK" --stop-timeout x "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "--stop-timeout" "a bad value is a usage error"
}

@test "agent: --started-fd reports the start" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" '["true"]'
	run_fc 0 --timeout 30 fc-run --unix "$SOCK" --started-fd 3 "$BATS_TEST_TMPDIR/p.json" \
		3>"$BATS_TEST_TMPDIR/started"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/started")" "started" "one 'started' line"
}

@test "agent: a bad plan is refused with a clear error and exit 125" {
	start_agent
	echo '{"version":1,"image":{"disk":"/dev/vdb"},"bogus":1,"poweroff":true}' > "$BATS_TEST_TMPDIR/p.json"
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" "fc-run: invalid plan: unknown key 'bogus'" "the agent's reason, once"
	# poweroff was set: the test-mode agent exits like the VM would power off.
	wait "$AGENT_PID"
	AGENT_PID=""
}

@test "fc-run: a plan that is not JSON is refused before connecting" {
	echo '{"version":1,' > "$BATS_TEST_TMPDIR/p.json"
	run_fc 125 --timeout 10 fc-run --unix "$SOCK" --timeout 60 "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "invalid JSON" "names the problem"
	assert_contains "$output" "p.json" "names the file"
}

@test "agent: podman load failure is reported and the agent powers off" {
	start_agent
	echo corrupt > "$DISK"
	plan "$BATS_TEST_TMPDIR/p.json" '["true"]'
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" "fc-run: podman load: Error: payload does not match any of the supported image formats" \
		"podman's own words"
	wait "$AGENT_PID"
	AGENT_PID=""
}

@test "agent: without poweroff it serves the next session" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p1.json" '["echo","one"]' '{"poweroff":false}'
	plan "$BATS_TEST_TMPDIR/p2.json" '["echo","two"]'
	run_fc 0 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p1.json"
	assert_eq "$output" one "first session"
	run_fc 0 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p2.json"
	assert_eq "$output" two "second session on the same agent"
	wait "$AGENT_PID"
	AGENT_PID=""
}

@test "agent: PREPARE readies the plan's image, runs nothing, and the plan still runs after it" {
	start_agent
	local store='{"image":{"disk":"/dev/vdb","ref":"localhost/fake:latest","store":true}}'
	plan "$BATS_TEST_TMPDIR/p.json" '["echo","ran"]' "$store"
	run_fc 0 --timeout 30 fc-run --prepare --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" "" "a prepare prints nothing"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/warm")" \
		"--storage-opt=overlay.imagestore=/run/fcvm/image image exists localhost/fake:latest" \
		"the warm-up asks podman for the image, through the store"
	[ ! -e "$BATS_TEST_TMPDIR/args" ] || { echo "a prepare ran a container" >&2; false; }
	kill -0 "$AGENT_PID" || { echo "a prepare honoured the plan's poweroff" >&2; false; }
	run_fc 0 --timeout 30 fc-run --status --unix "$SOCK"
	assert_contains "$output" '"state":"idle"' "the agent is idle after a prepare"
	run_fc 0 --timeout 30 fc-run --prepare --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"	# twice: fine
	run_fc 0 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" ran "the plan runs after the prepare"
	wait "$AGENT_PID"
	AGENT_PID=""
}

@test "agent: PREPARE is refused for an archive plan, a missing image and after a run" {
	start_agent
	plan "$BATS_TEST_TMPDIR/a.json" '["true"]' '{"poweroff":false}'
	run_fc 125 --timeout 30 fc-run --prepare --unix "$SOCK" "$BATS_TEST_TMPDIR/a.json"
	assert_contains "$output" "prepare needs a plan whose image is an image store" "archive plan"
	plan "$BATS_TEST_TMPDIR/m.json" '["true"]' \
		'{"image":{"disk":"/dev/vdb","ref":"localhost/missing:1","store":true},"poweroff":false}'
	run_fc 125 --timeout 30 fc-run --prepare --unix "$SOCK" "$BATS_TEST_TMPDIR/m.json"
	assert_contains "$output" "image 'localhost/missing:1' is not in the image store" "missing image"
	run_fc 0 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/a.json"
	plan "$BATS_TEST_TMPDIR/p.json" '["true"]' \
		'{"image":{"disk":"/dev/vdb","ref":"localhost/fake:latest","store":true}}'
	run_fc 125 --timeout 30 fc-run --prepare --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "prepare is for a VM that has run nothing yet" "after a run"
	run_fc 2 fc-run --prepare --status --unix "$SOCK"
}

@test "agent: garbage from the host ends that connection, not the agent" {
	start_agent
	python3 - "$SOCK" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
hdr = s.recv(12)
assert hdr[:4] == b"FCV1" and hdr[5] == 1, hdr          # hello
s.recv(struct.unpack("<I", hdr[8:12])[0])
s.sendall(b"XXXX" + bytes(8))                            # bad magic
while s.recv(4096):                                      # the agent hangs up
    pass
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
hdr = s.recv(12)
s.recv(struct.unpack("<I", hdr[8:12])[0])
s.sendall(struct.pack("<IBBHI", 0x31564346, 1, 8, 0, 2) + b"{}")   # exit, not a plan
data = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    data += d
assert data[5] == 9 and b"expected a plan" in data, data   # error frame
EOF
	kill -0 "$AGENT_PID"
	plan "$BATS_TEST_TMPDIR/p.json" '["echo","still here"]'
	run_fc 0 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" "still here" "the agent still serves"
}

@test "agent: a second plan during a run gets hello and 'busy'" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" '["sh","-c","echo up >&2; while [ ! -e \"$0\" ]; do sleep 0.05; done; echo done","'"$BATS_TEST_TMPDIR/go"'"]'
	fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	local pid=$! i rc=0
	for ((i = 0; i < 200; i++)); do
		grep -q up "$BATS_TEST_TMPDIR/err" && break
		sleep 0.05
	done
	run python3 - "$SOCK" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
plan = b'{"version":1,"image":{"disk":"/d"}}'
s.sendall(struct.pack("<IBBHI", 0x31564346, 1, 2, 0, len(plan)) + plan)
data = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    data += d
types = []
while data:
    t, n = data[5], struct.unpack("<I", data[8:12])[0]
    types.append(t)
    print(data[12:12 + n].decode())
    data = data[12 + n:]
print(types)
EOF
	assert_contains "$output" "[1, 9]" "hello then error"
	assert_contains "$output" "busy" "says why"
	touch "$BATS_TEST_TMPDIR/go"
	wait "$pid" || rc=$?
	assert_eq "$rc" 0 "the first run was not disturbed"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/out")" "done" "its output"
}

@test "fc-run: SIGINT while waiting for the agent ends it at once" {
	# Even as a background job of a script, which starts with SIGINT ignored.
	echo '{"version":1,"image":{"disk":"/d"}}' > "$BATS_TEST_TMPDIR/p.json"
	fc-run --unix "$RUN/nobody.sock" --timeout 100 "$BATS_TEST_TMPDIR/p.json" 2>/dev/null &
	local pid=$! rc=0
	sleep 0.3
	kill -INT "$pid"
	wait "$pid" || rc=$?
	assert_eq "$rc" 130 "ended by SIGINT, not waiting 100 s"
}

@test "fc-run: an agent that never answers times out with a clear message" {
	run_fc 125 --timeout 30 fc-run --unix "$RUN/nobody.sock" "$BATS_TEST_TMPDIR/none.json"
	assert_contains "$output" "none.json': No such file" "a missing plan file is named"
	echo '{"version":1,"image":{"disk":"/d"}}' > "$BATS_TEST_TMPDIR/p.json"
	run_fc 125 --timeout 30 fc-run --unix "$RUN/nobody.sock" --timeout 2 "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" "fc-run: agent did not answer on unix socket '$RUN/nobody.sock' within 2 s (is the VM booting? see its console log)" \
		"timeout message"
	# A listener that accepts but never says hello is no better.
	python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); time.sleep(5)' "$RUN/mute.sock" &
	local py=$!
	run_fc 125 --timeout 30 fc-run --unix "$RUN/mute.sock" --timeout 2 "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "did not answer" "silent agent: timeout message"
	kill "$py"; wait "$py" || true
	rm -f "$RUN/mute.sock"
}

@test "fc-run: the connection dropping mid-run is reported, exit 125" {
	start_agent
	plan "$BATS_TEST_TMPDIR/p.json" '["sh","-c","echo up >&2; while :; do echo x; sleep 0.1; done"]'
	fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json" >/dev/null 2>"$BATS_TEST_TMPDIR/err" &
	local pid=$! i rc=0
	for ((i = 0; i < 200; i++)); do
		grep -q up "$BATS_TEST_TMPDIR/err" && break
		sleep 0.05
	done
	kill -KILL "$AGENT_PID"
	wait "$AGENT_PID" || true
	AGENT_PID=""
	wait "$pid" || rc=$?
	assert_eq "$rc" 125 "fc-run's own failure code"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "fc-run: connection to the agent lost" "message"
	# The fake container dies of SIGPIPE now that nobody reads its output.
	for ((i = 0; i < 100; i++)); do
		pgrep -f "echo up >&2; while" >/dev/null || break
		sleep 0.05
	done
	if pgrep -f "echo up >&2; while" >/dev/null; then
		echo "the runner's child outlived the agent" >&2
		return 1
	fi
}

# fake_agent SCENARIO: a scripted agent on $SOCK (python3) for what the real
# one never does: misbehave.
fake_agent() {
	python3 - "$SOCK" "$1" <<'EOF' &
import json, socket, struct, sys, time
path, scenario = sys.argv[1], sys.argv[2]
def frame(t, p=b""):
    return struct.pack("<IBBHI", 0x31564346, 1, t, 0, len(p)) + p
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(1)
c, _ = srv.accept()
srv.close()
c.sendall(frame(1, json.dumps({"version": 99 if scenario == "version" else 1}).encode()))
hdr = c.recv(12)
c.recv(struct.unpack("<I", hdr[8:12])[0], socket.MSG_WAITALL)
if scenario == "silent":
    time.sleep(40)
elif scenario == "signal":
    c.sendall(frame(4, b"partial") + frame(8, b'{"signal":9}'))
elif scenario == "badexit":
    c.sendall(frame(8, b'{"code":300}'))
elif scenario == "garbage":
    c.sendall(b"FCV2" + bytes(8))
elif scenario == "errorctl":
    c.sendall(frame(9, json.dumps({"message": "bad \x1b[31mthing\x07"}).encode()))
time.sleep(1)
EOF
	FAKE_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
	return 1
}

fake_done() {
	kill "$FAKE_PID" 2>/dev/null || true
	wait "$FAKE_PID" 2>/dev/null || true
	rm -f "$SOCK"
}

@test "fc-run: EXIT with a signal gives 128+N; output before it is kept" {
	echo '{}' > "$BATS_TEST_TMPDIR/p.json"
	fake_agent signal
	run_fc 137 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" partial "stdout before the exit"
	fake_done
}

@test "fc-run: a misbehaving agent is a protocol error, exit 125" {
	echo '{}' > "$BATS_TEST_TMPDIR/p.json"
	fake_agent version
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "protocol version 99" "version mismatch named"
	fake_done
	fake_agent badexit
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "bad exit message" "out-of-range exit code refused"
	fake_done
	fake_agent garbage
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "agent protocol error: bad frame magic" "bad frame refused"
	fake_done
	fake_agent errorctl
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$output" "fc-run: bad ?[31mthing?" "control characters from the guest neutralised"
	fake_done
}

@test "fc-run: an agent that stops sending heartbeats is given up (--heartbeat-timeout)" {
	echo '{}' > "$BATS_TEST_TMPDIR/p.json"
	fake_agent silent
	run_fc 125 --timeout 60 fc-run --unix "$SOCK" --heartbeat-timeout 5 "$BATS_TEST_TMPDIR/p.json"
	assert_contains "$output" "no heartbeat for 5 s" "watchdog message"
	fake_done
}

@test "fc-run: usage errors exit 2, -h prints the synopsis" {
	run_fc 2 fc-run
	assert_contains "$output" "usage: fc-run --vsock UDS" "usage on stderr"
	run_fc 2 fc-run --vsock a --unix b x.json
	run_fc 2 fc-run --unix a --timeout 0 x.json
	assert_contains "$output" "invalid --timeout '0'" "names the bad value"
	run_fc 0 fc-run -h
	assert_contains "$output" "usage: fc-run" "-h"
	run_fc 0 fc-agent -h
	assert_contains "$output" "--listen-unix PATH" "fc-agent -h"
}
