# tests/lib/agent-test.bash - fc-agent in test mode for bats files (load it
# after helpers): the agent on a Unix socket with tests/lib/fake-podman.
#
#   agent_test_setup   sets RUN, SOCK, FAKE, DISK, AGENT_PID="" (call in setup)
#   start_agent        starts it; returns once it printed its ready line
#   stop_agent         SIGTERM and wait, if it still runs (call in teardown)

agent_test_setup() {
	RUN="$FCVM_ROOT/run"
	mkdir -p "$RUN"
	SOCK="$RUN/agent.sock"
	FAKE="$BATS_TEST_DIRNAME/lib/fake-podman"
	DISK="$BATS_TEST_TMPDIR/disk.img"
	AGENT_PID=""
	echo "an image" > "$DISK"
}

start_agent() {
	FAKE_ARGS="$BATS_TEST_TMPDIR/args" FAKE_WARM_ARGS="$BATS_TEST_TMPDIR/warm" fc-agent --listen-unix "$SOCK" --runner "$FAKE" \
		2>"$BATS_TEST_TMPDIR/agent.log" &
	AGENT_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		grep -qx "fc-agent: ready" "$BATS_TEST_TMPDIR/agent.log" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$BATS_TEST_TMPDIR/agent.log" >&2
	return 1
}

stop_agent() {
	if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
		kill "$AGENT_PID"
		wait "$AGENT_PID" 2>/dev/null || true
	fi
	AGENT_PID=""
	rm -f "$SOCK"
}
