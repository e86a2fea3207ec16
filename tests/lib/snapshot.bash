# tests/lib/snapshot.bash - what the snapshot and clone tests share (load it
# after helpers).
#
#   snap_teardown             the files' teardown: stop every owner in PIDS
#                             and every recorded one, then leak_check
#   need_snap_qemu            skip (fail in CI) without fcvm's QEMU
#   start_source [ARGS...]    a container VM "src" (fcvm podman run ARGS)
#                             whose shell started a background process
#                             (its pid in /tmp/bgpid) and wrote /disk-state
#                             (or ran $SRC_SCRIPT, which says started-ok);
#                             sets SRC_PID (its fcvm), SRC_ID
#   clone NAME [TAG]          fc-clone --detach of TAG (t1); adds its pid to PIDS

need_snap_qemu() {
	if [ -z "${FCVM_TEST_QEMU:-}" ] || [ ! -x "$FCVM_TEST_QEMU" ]; then
		local why="fcvm's QEMU could not be built (${FCVM_TEST_QEMU_WHY:-see fc-setup qemu})"
		[ -n "${CI:-}" ] && { echo "CI must not skip: $why" >&2; return 1; }
		skip "$why"
	fi
	export FCVM_QEMU="$FCVM_TEST_QEMU"
}

start_source() {
	# In the foreground, in the background of the test: its output is the
	# container's (teardown stops it).
	fcvm podman run --network none --name src "$@" "$IMG" sh -c \
		"${SRC_SCRIPT:-echo on-disk >/disk-state; sleep 86400 & echo \$! >/tmp/bgpid; echo started-ok; wait}" \
		>"$BATS_TEST_TMPDIR/src.out" 2>"$BATS_TEST_TMPDIR/src.err" 3>&- &
	SRC_PID=$!
	PIDS+=("$SRC_PID")
	wait_line "$BATS_TEST_TMPDIR/src.out" started-ok 300 "$SRC_PID" ||
		{ cat "$BATS_TEST_TMPDIR/src.err" >&2; return 1; }
	SRC_ID=$(fc-state get --field id src)
}

clone() {
	run_fc 0 --timeout 300 fc-clone -q --snapshot "${2:-t1}" --name "$1" --detach 3>&-
	PIDS+=("$output")
}

snap_teardown() {
	local p r=0
	# every owner still recorded (clones a failed test left), then ours
	PIDS+=($(fc-state ls --json 2>/dev/null | jq -r '.[].pid' 2>/dev/null))
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		timeout 30 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null
	done
	fcvm stop src >/dev/null 2>&1 || true
	leak_check || r=$?
	rm -rf "$FCVM_ROOT"
	return $r
}
