#!/usr/bin/env bats
# fc-run against a hostile or dying guest (issue 7, items 1, 2 and 9) and
# fc-run --status. Most tests use tests/guest/fake-agent, a scripted agent
# on a Unix socket, so they need no VM; the last ones boot one.

load helpers

FAKE_AGENT="$BATS_TEST_DIRNAME/guest/fake-agent"

setup() {
	fc_setup_root
	RUN="$FCVM_ROOT/run"
	mkdir -p "$RUN"
	SOCK="$RUN/agent.sock"
	PLAN="$BATS_TEST_TMPDIR/p.json"
	echo '{"version":1,"image":{"disk":"/dev/vdb"}}' > "$PLAN"
	export FAKE_LOG="$BATS_TEST_TMPDIR/frames"
	FAKE_PID="" OWNER="" RUN_PID="" VM_ROOT=""
}

teardown() {
	local p r=0
	for p in $RUN_PID $FAKE_PID $OWNER; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -f "$SOCK"
	leak_check || r=$?
	[ -z "${VM_ROOT:-}" ] || rm -rf "$VM_ROOT"
	return $r
}

# fake SCENARIO: the scripted agent on $SOCK, started in the background.
fake() {
	"$FAKE_AGENT" "$SOCK" "$1" 2>"$BATS_TEST_TMPDIR/fake.err" &
	FAKE_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
	cat "$BATS_TEST_TMPDIR/fake.err" >&2
	return 1
}

# owner: a stand-in for the VM's owner (fc-boot), in $OWNER.
owner() {
	sleep 600 &
	OWNER=$!
}

# start_run ARGS...: fc-run in the background ($RUN_PID), output in files.
start_run() {
	fc-run "$@" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	RUN_PID=$!
}

# finish_run WITHIN: wait for fc-run, at most WITHIN seconds; sets $rc, $took.
finish_run() {
	local within=$1 t0=$SECONDS i
	for ((i = 0; i < within * 10; i++)); do
		kill -0 "$RUN_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$RUN_PID" 2>/dev/null; then
		echo "fc-run still running after ${within}s; stderr:" >&2
		cat "$BATS_TEST_TMPDIR/err" >&2
		return 1
	fi
	rc=0
	wait "$RUN_PID" || rc=$?
	RUN_PID=""
	took=$((SECONDS - t0))
}

# wait_frames N: until the fake agent has received N frames.
wait_frames() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ "$(wc -l < "$FAKE_LOG" 2>/dev/null)" -ge "$1" ] 2>/dev/null && return 0
		sleep 0.05
	done
	echo "the fake agent got no $1 frame(s)" >&2
	return 1
}

# big_plan: a 250 KB plan, more than a Unix socket buffers.
big_plan() {
	{ printf '{"version":1,"pad":"'; head -c 250000 /dev/zero | tr '\0' x; printf '"}'; } > "$PLAN"
}

console_with_panic() {
	printf 'Linux version 6.1\r\n[    2.1] Kernel panic - not syncing: \033[31mVFS\033[0m: no root\r\n\r\n' \
		> "$BATS_TEST_TMPDIR/console.log"
}

# --- item 1: the VM's owner dies ---

@test "owner dies while fc-run waits for the agent: exit 125 at once, with the console's last line" {
	owner
	console_with_panic
	start_run --unix "$RUN/nobody.sock" --timeout 100 --owner-pid "$OWNER" \
		--console "$BATS_TEST_TMPDIR/console.log" "$PLAN"
	sleep 0.5
	kill -0 "$RUN_PID"
	kill -KILL "$OWNER"
	finish_run 10
	assert_eq "$rc" 125 "fc-run's own failure code"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/err")" \
		"fc-run: the VM stopped before its agent answered: [    2.1] Kernel panic - not syncing: ?[31mVFS?[0m: no root" \
		"the real cause, sanitised, not a timeout"
}

@test "owner already gone (or its pid reused: other start time): fails at once" {
	run_fc 125 --timeout 10 fc-run --unix "$RUN/nobody.sock" --timeout 100 --owner-pid "$$:1" "$PLAN"
	assert_eq "$output" "fc-run: the VM stopped before its agent answered: its owner (pid $$) exited" \
		"a start time that differs is a dead owner"
	sleep 0 & local gone=$!
	wait "$gone"
	run_fc 125 --timeout 10 fc-run --unix "$RUN/nobody.sock" --timeout 100 --owner-pid "$gone" "$PLAN"
	assert_contains "$output" "the VM stopped before its agent answered" "a pid that is gone"
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	run_fc 125 --timeout 10 fc-run --unix "$RUN/nobody.sock" --owner-pid "$gone" \
		--console "$BATS_TEST_TMPDIR/fifo" "$PLAN"
	assert_contains "$output" "its owner (pid $gone) exited" "a FIFO as the console is not read (no hang)"
	local start
	start=$(awk '{ sub(/.*\) /, ""); print $20 }' /proc/$$/stat)
	run_fc 125 --timeout 30 fc-run --unix "$RUN/nobody.sock" --timeout 1 --owner-pid "$$:$start" "$PLAN"
	assert_contains "$output" "did not answer" "a live owner with the right start time is waited for"
	run_fc 2 fc-run --unix "$SOCK" --owner-pid 12x "$PLAN"
	assert_contains "$output" "invalid --owner-pid '12x'" "a bad pid is a usage error"
	run_fc 2 fc-run --unix "$SOCK" --owner-pid 12:x "$PLAN"
	assert_contains "$output" "--owner-pid start time" "a bad start time is a usage error"
}

@test "owner dies during the session (the VMM keeps the socket open): exit 125 at once" {
	owner
	console_with_panic
	fake heartbeat
	start_run --unix "$SOCK" --owner-pid "$OWNER" --console "$BATS_TEST_TMPDIR/console.log" "$PLAN"
	wait_line "$BATS_TEST_TMPDIR/err" '^up$' 20 "$RUN_PID"
	kill -KILL "$OWNER"
	finish_run 10
	assert_eq "$rc" 125 "fc-run's own failure code"
	assert_eq "$(sed 1d "$BATS_TEST_TMPDIR/err")" \
		"fc-run: the VM stopped: [    2.1] Kernel panic - not syncing: ?[31mVFS?[0m: no root" \
		"the cause, although the connection is still open"
}

@test "owner dies just after the agent sent EXIT: the exit code still wins" {
	owner
	FAKE_OWNER=$OWNER fake exit-kill
	run_fc 3 --timeout 30 fc-run --unix "$SOCK" --owner-pid "$OWNER" "$PLAN"
	assert_eq "$output" bye "the output before EXIT, and no error"
}

@test "an agent silent for seconds is probed with a heartbeat, and one that wakes up goes on" {
	# (seen under TCG: an idle guest oversleeping its timers until an
	# interrupt arrives; 90 s of silence ended runs that were fine)
	fake oversleep
	run_fc 0 --timeout 60 fc-run --unix "$SOCK" --heartbeat-timeout 30 "$PLAN"
	assert_eq "$output" "woken by 10" "the agent got a HEARTBEAT frame (type 10) and answered"
}

# --- item 2: signals are served whatever the guest does ---

@test "a guest that sends a frame header then 1 byte/s: SIGINT twice ends fc-run" {
	fake trickle
	start_run --unix "$SOCK" "$PLAN"
	wait_frames 1
	sleep 1.5
	kill -INT "$RUN_PID"
	sleep 0.3
	kill -INT "$RUN_PID"
	finish_run 5
	assert_eq "$rc" 130 "the second SIGINT ended it"
}

@test "a guest that sends a frame header then 1 byte/s: the frame must be whole within the bound" {
	fake trickle
	start_run --unix "$SOCK" --heartbeat-timeout 4 "$PLAN"
	finish_run 20
	assert_eq "$rc" 125 "fc-run's own failure code"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "the agent stopped in the middle of a frame" \
		"names the stall"
	[ "$took" -lt 15 ] || { echo "took ${took}s" >&2; false; }
}

@test "a guest that never reads a large plan: SIGTERM ends fc-run at once (nothing runs yet)" {
	big_plan
	fake noread
	start_run --unix "$SOCK" "$PLAN"
	sleep 1
	kill -0 "$RUN_PID"
	kill -TERM "$RUN_PID"
	finish_run 5
	assert_eq "$rc" 143 "ended by SIGTERM"
}

@test "a guest that never reads a large plan: given up after the bound" {
	big_plan
	fake noread
	start_run --unix "$SOCK" --heartbeat-timeout 3 "$PLAN"
	finish_run 20
	assert_eq "$rc" 125 "fc-run's own failure code"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "the agent stopped reading" "names the stall"
}

@test "a stdout nobody reads: signals are still served, and it is not the agent's silence" {
	head -c 1048576 /dev/urandom > "$BATS_TEST_TMPDIR/blob"
	export FAKE_BLOB="$BATS_TEST_TMPDIR/blob"
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	# The reader holds the fifo open but reads nothing for 6 s, longer than
	# the heartbeat timeout: our own blocked output must not trip it.
	(exec 0<"$BATS_TEST_TMPDIR/fifo"; sleep 6; exec cat > "$BATS_TEST_TMPDIR/got") &
	local reader=$!
	fake flood
	fc-run --unix "$SOCK" --heartbeat-timeout 3 "$PLAN" >"$BATS_TEST_TMPDIR/fifo" \
		2>"$BATS_TEST_TMPDIR/err" &
	RUN_PID=$!
	finish_run 40
	wait "$reader"
	assert_eq "$rc" 0 "the run completed: $(cat "$BATS_TEST_TMPDIR/err")"
	assert_eq "$(sha256sum < "$BATS_TEST_TMPDIR/got")" "$(sha256sum < "$BATS_TEST_TMPDIR/blob")" \
		"every byte arrived"
	# Now a reader that never reads: SIGINT (forwarded), then SIGINT ends it.
	fake flood
	(exec 0<"$BATS_TEST_TMPDIR/fifo"; exec sleep 60) &
	reader=$!
	fc-run --unix "$SOCK" "$PLAN" >"$BATS_TEST_TMPDIR/fifo" 2>"$BATS_TEST_TMPDIR/err" &
	RUN_PID=$!
	sleep 1.5
	kill -INT "$RUN_PID"
	sleep 0.3
	kill -INT "$RUN_PID"
	finish_run 5
	kill "$reader"; wait "$reader" || true
	assert_eq "$rc" 130 "the second SIGINT ended it while stdout was full"
}

# --- item 9: guest text never reaches the terminal raw ---

@test "an ERROR frame in place of HELLO is shown sanitised" {
	fake hello-error
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$PLAN"
	assert_eq "$output" "fc-run: the agent refused the connection: no ?]0;pwned? ?[2J ?31m ?evil" \
		"ESC, BEL, C1 CSI and RLO each shown as '?'"
	[[ "$output" != *$'\e'* ]] || { echo "an escape byte reached stderr" >&2; false; }
}

@test "an ERROR frame with a C1 CSI (U+009B) and bidi controls (U+202E, U+2066/9) is sanitised" {
	fake error-c1
	run_fc 125 --timeout 30 fc-run --unix "$SOCK" "$PLAN"
	assert_eq "$output" "fc-run: bad ?2J thing ?txt.exe ?x?" "each control shown as '?'"
	[[ "$output" != *$'\xc2\x9b'* && "$output" != *$'\xe2\x80\xae'* ]] ||
		{ echo "a control reached stderr" >&2; false; }
}

# --- fc-run --status ---

@test "--status: one STATUS_REQ, the answer as JSON on stdout, safe for a terminal" {
	fake status
	run_fc 0 --timeout 30 fc-run --status --unix "$SOCK"
	assert_eq "$(echo "$output" | jq -r .state)" running "the agent's state"
	assert_eq "$(echo "$output" | jq -r .sessions)" 2 "its sessions"
	assert_eq "$(echo "$output" | jq -r .container)" "$(printf 'web\033[31m\342\200\256')" \
		"the value itself is kept"
	[[ "$output" != *$'\e'* && "${output,,}" == *'\u001b[31m\u202e'* ]] ||
		{ echo "control characters not escaped: $output" >&2; false; }
	assert_eq "$(cat "$FAKE_LOG")" "12 0" "exactly one empty STATUS_REQ frame was sent"
}

@test "--status: no answer within --timeout is exit 1; usage" {
	fake status-silent
	run_fc 1 --timeout 30 fc-run --status --unix "$SOCK" --timeout 2
	assert_contains "$output" "agent did not answer the status request on unix socket" "says what"
	run_fc 1 --timeout 30 fc-run --status --unix "$RUN/nobody.sock" --timeout 1
	assert_contains "$output" "did not answer" "nobody listening"
	run_fc 2 fc-run --status --unix "$SOCK" "$PLAN"
	assert_contains "$output" "--status takes no PLAN.json" "no plan with --status"
}

# --- in a VM ---

@test "vm: the owner killed while the VM boots: fc-run fails within seconds, not at --timeout" {
	fc_vm_root client
	VM_ROOT=$FCVM_ROOT
	local rootfs owner
	rootfs=$(fc-disk rootfs --vm dying)
	owner=$(fc-boot --name dying --id dying --rootfs "$rootfs" --detach 3>&-)
	start_run --vsock "$FCVM_ROOT/run/dying/vsock.sock" --timeout 180 --owner-pid "$owner" \
		--console "$FCVM_ROOT/vm-disks/dying/console.log" "$PLAN"
	sleep 1
	kill -KILL "$owner"
	finish_run 15
	assert_eq "$rc" 125 "fc-run's own failure code"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "fc-run: the VM stopped before its agent answered" \
		"the cause"
	# fc-boot's janitor stops the VMM and removes the record.
	local i
	for ((i = 0; i < 100; i++)); do
		[ -z "$(leaked_procs)" ] && [ -z "$(ls "$FCVM_ROOT/state" 2>/dev/null)" ] && break
		sleep 0.1
	done
}

@test "vm: --status from the real agent while it is idle" {
	fc_vm_root client
	VM_ROOT=$FCVM_ROOT
	local rootfs owner status
	rootfs=$(fc-disk rootfs --vm st)
	owner=$(fc-boot --name st --id st --rootfs "$rootfs" --detach 3>&-)
	OWNER=$owner
	run_fc 0 --timeout 200 fc-run --status --vsock "$FCVM_ROOT/run/st/vsock.sock" --timeout 180 \
		--owner-pid "$owner"
	status=$output
	assert_eq "$(echo "$status" | jq -r .version)" 1 "status version"
	assert_eq "$(echo "$status" | jq -r .state)" idle "nothing runs yet"
	kill -TERM "$owner"
	local i
	for ((i = 0; i < 100; i++)); do kill -0 "$owner" 2>/dev/null || break; sleep 0.1; done
	OWNER=""
}
