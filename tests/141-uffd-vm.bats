#!/usr/bin/env bats
# The memory server with real guests, under fc-qemu with fcvm's QEMU (its
# uffd-socket patch): 'fcvm snapshot serve' (fc-uffd) + clones started with
# --pid load with mem_backend Uffd, and every page they touch is copied in
# by the server (its statistics show it); they carry the snapshot's
# in-memory state (a process started before the snapshot, a file on a
# tmpfs, which is on no disk); SIGTERM to the server stops its clones and
# leaves nothing. A missing, dead or refusing server is a 400 and starts
# nothing.
#
# fcvm's QEMU comes from tests/lib/fixtures.sh (FCVM_TEST_QEMU); where it
# could not be built these tests skip with the reason (in CI: a failure).

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root uffdvm
	PIDS=()
}

teardown() {
	local p r=0
	# servers first (they stop their clones), then every owner still recorded
	PIDS+=($(fc-state ls --json 2>/dev/null | jq -r 'sort_by(.process_type != "serve") | .[].pid' 2>/dev/null))
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		timeout 40 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null
	done
	leak_check || r=$?
	rm -rf "$FCVM_ROOT"
	return $r
}

need_snap_qemu() {
	if [ -z "${FCVM_TEST_QEMU:-}" ] || [ ! -x "$FCVM_TEST_QEMU" ]; then
		local why="fcvm's QEMU could not be built (${FCVM_TEST_QEMU_WHY:-see fc-setup qemu})"
		[ -n "${CI:-}" ] && { echo "CI must not skip: $why" >&2; return 1; }
		skip "$why"
	fi
	if ! "$FCVM_TEST_QEMU" -object memory-backend-memfd,help 2>/dev/null | grep -q uffd-socket; then
		echo "fcvm's QEMU '$FCVM_TEST_QEMU' has no uffd-socket (an old build?)" >&2
		return 1
	fi
	export FCVM_QEMU="$FCVM_TEST_QEMU"
}

# snap_source: a container whose shell writes a file on a tmpfs (memory
# only) and starts a background process, snapshotted as t1; the source is
# then stopped, so that the clones depend on the snapshot alone.
snap_source() {
	fcvm podman run --network none --name src "$IMG" sh -c \
		'echo in-memory >/dev/shm/state; sleep 86400 & echo $! >/dev/shm/bgpid; echo started-ok; wait' \
		>"$BATS_TEST_TMPDIR/src.out" 2>"$BATS_TEST_TMPDIR/src.err" 3>&- &
	local src=$!
	PIDS+=("$src")
	wait_line "$BATS_TEST_TMPDIR/src.out" started-ok 300 "$src" ||
		{ cat "$BATS_TEST_TMPDIR/src.err" >&2; return 1; }
	run_fc 0 --timeout 120 fc-exec --name src -- cat /dev/shm/bgpid
	BGPID=$output
	[ -n "$BGPID" ]
	run_fc 0 --timeout 300 fcvm snapshot create --name src --tag t1
	local id; id=$(fc-state get --field id src)
	run_fc 0 fcvm stop src
	timeout 60 tail --pid="$src" -f /dev/null
	fcvm rm "$id" >/dev/null
}

# serve TAG: 'fcvm snapshot serve TAG' in the background; sets SPID (the
# pid it prints: the server's) and FRONT (the front end's).
serve() {
	local out="$BATS_TEST_TMPDIR/serve-$1.out"
	fcvm snapshot serve "$1" >"$out" 2>"$BATS_TEST_TMPDIR/serve-$1.err" 3>&- &
	FRONT=$!
	PIDS+=("$FRONT")
	wait_line "$out" '^[0-9]+$' 60 "$FRONT" || { cat "$BATS_TEST_TMPDIR/serve-$1.err" >&2; return 1; }
	SPID=$(head -1 "$out")
	PIDS+=("$SPID")
}

# stats_until JQ-CONDITION [TAG]: the statistics of server $SPID once they
# satisfy the condition (the file trails the counters by at most 200 ms;
# bounded at 20 s).
stats_until() {
	local f="$FCVM_ROOT/run/uffd-${2:-t1}-$SPID.stats" i
	for ((i = 0; i < 200; i++)); do
		jq -e "$1" "$f" >/dev/null 2>&1 && { cat "$f"; return 0; }
		sleep 0.1
	done
	echo "server statistics never satisfied '$1': $(cat "$f" 2>&1)" >&2
	return 1
}

@test "snapshot serve + 3 clones with --pid: memory served by fc-uffd; SIGTERM stops them, leaves nothing" {
	need_snap_qemu
	snap_source
	serve t1
	run_fc 0 fc-state ls --json
	assert_eq "$(jq -r --argjson p "$SPID" '.[] | select(.pid == $p) | "\(.process_type) \(.status) \(.snapshot)"' <<<"$output")" \
		"serve running t1" "the printed pid is the serve record's"

	local c st
	run_fc 0 --timeout 300 fcvm snapshot run --pid "$SPID" --name c1 -d 3>&-
	assert_eq "$output" "$(fc-state get --field id c1)" "snapshot run --pid -d prints the clone's id"
	st=$(stats_until '.clients == 1 and .faults > 0')
	echo "# after c1: $st" >&3
	assert_eq "$(jq .pages_prefetched <<<"$st")" 0 "nothing to prefetch for the first clone"
	for c in c2 c3; do
		run_fc 0 --timeout 300 fc-clone -q --pid "$SPID" --name $c --detach 3>&-
		PIDS+=("$output")
	done
	st=$(stats_until '.clients == 3')
	echo "# after c3: $st" >&3
	[ "$(jq .pages_prefetched <<<"$st")" -gt 0 ] ||
		{ echo "later clones got no prefetch: $st" >&2; false; }
	[ "$(jq .refused <<<"$st")" = 0 ] || { echo "handshakes refused: $st" >&2; false; }

	run_fc 0 fc-state ls --json
	assert_eq "$(jq -r --argjson p "$SPID" '[.[] | select(.process_type == "clone" and .serve_pid == $p and .snapshot == "t1")] | length' <<<"$output")" \
		3 "three clone records carry serve_pid"
	run_fc 0 fcvm ls
	assert_contains "$output" "serve" "fcvm ls shows the server"
	assert_eq "$(grep ' clone ' <<<"$output" | grep -c " t1@$SPID *\$")" 3 \
		"fcvm ls shows its three clones, FROM the server"

	# each clone's QEMU took its RAM from the server, not from the file
	local q n=0
	for q in $(pgrep -f "qemu-system-x86_64.*uffd-socket=$FCVM_ROOT/run/uffd-t1-$SPID.sock"); do
		n=$((n + 1))
		if grep -q "$FCVM_ROOT/snapshots/t1/memory" "/proc/$q/maps"; then
			echo "QEMU $q maps the memory file" >&2
			false
		fi
	done
	assert_eq "$n" 3 "three QEMUs with uffd-socket"
	# and their vsock back-ends reach guest memory through QEMU, not a
	# mapping of their own (which would bypass the uffd and read zeros)
	assert_eq "$(pgrep -f "fc-vsock .*--uds-path $FCVM_ROOT/.* --memory vmm" | wc -l)" 3 \
		"three fc-vsock with --memory vmm"

	for c in c1 c2 c3; do
		run_fc 0 --timeout 120 fc-exec --name $c -- sh -c "cat /proc/$BGPID/cmdline | tr '\\0' ' '"
		assert_contains "$output" "sleep 86400" "$c: the process started before the snapshot runs"
		run_fc 0 --timeout 120 fc-exec --name $c -- cat /dev/shm/state
		assert_eq "$output" in-memory "$c: the file on the source's tmpfs"
	done
	st=$(stats_until '.faults > 0')
	echo "# after exec in all: $st" >&3

	# SIGTERM to the server: its clones are stopped, then it goes
	local front=$FRONT
	kill -TERM "$SPID"
	timeout 60 tail --pid="$front" -f /dev/null
	if kill -0 "$front" 2>/dev/null; then
		echo "fcvm snapshot serve did not end" >&2
		false
	fi
	run_fc 0 fc-state ls --json
	assert_eq "$(jq length <<<"$output")" 0 "no server or clone record is left"
	assert_eq "$(find "$FCVM_ROOT/run" -type s | wc -l)" 0 "no socket is left"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" | wc -l)" 0 "the clones' disks went with them"
	assert_eq "$(leaked_procs)" "" "no process is left"
	[ -s "$FCVM_ROOT/snapshots/t1/workingset" ] || { echo "no working set saved" >&2; false; }
}

@test "Uffd load: a missing, dead or refusing memory server is a 400 and starts nothing" {
	need_snap_qemu
	snap_source
	local vs="$FCVM_ROOT/snapshots/t1/vmstate" a="$FCVM_ROOT/run/a"
	mkdir -p "$a"
	fc-qemu --api-sock "$a/api.sock" --id a </dev/null >"$a/console" 2>"$a/stderr" 3>&- &
	local fcq=$! i
	PIDS+=("$fcq")
	for ((i = 0; i < 100; i++)); do [ -S "$a/api.sock" ] && break; sleep 0.1; done
	load() {	# load SOCKET: sets code, body
		local req="{\"snapshot_path\": \"$vs\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"$1\"}, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"$a/v.sock\"}}"
		printf '%s' "$req" >"$BATS_TEST_TMPDIR/req"
		"$BATS_TEST_DIRNAME/contract/validate-request" PUT /snapshot/load "$BATS_TEST_TMPDIR/req" >&2
		code=$(curl -s --max-time 300 --unix-socket "$a/api.sock" -X PUT -o "$BATS_TEST_TMPDIR/body" \
			-w '%{http_code}' -H 'Content-Type: application/json' -d "$req" http://localhost/snapshot/load)
		body=$(cat "$BATS_TEST_TMPDIR/body")
	}
	# the source's disk went with it: a copy, as fc-clone gives each clone
	cp --reflink=auto "$FCVM_ROOT/snapshots/t1/disk.ext4" "$a/disk.ext4"
	code=$(curl -s --max-time 30 --unix-socket "$a/api.sock" -X PUT -o /dev/null -w '%{http_code}' \
		-H 'Content-Type: application/json' http://localhost/drives/rootfs \
		-d "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$a/disk.ext4\", \"is_root_device\": true, \"is_read_only\": false}")
	assert_eq "$code" 204 "the drive override"
	load "$FCVM_ROOT/run/nosuch.sock"
	assert_eq "$code" 400 "a missing socket: $body"
	assert_contains "$body" "the memory server's socket" "the fault names the socket"
	load "$vs"
	assert_eq "$code" 400 "a file that is no socket: $body"
	assert_contains "$body" "is not a socket" "the fault says so"
	# a socket nobody listens on (its server died)
	python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$a/dead.sock"
	load "$a/dead.sock"
	rm -f "$a/dead.sock"
	assert_eq "$code" 400 "a dead server: $body"
	assert_contains "$body" "Connection refused" "QEMU's reason is the fault"
	assert_eq "$(pgrep -f "qemu-system-x86_64.*-id a|qemu-system-x86_64.*$a" | wc -l)" 0 "no QEMU is left running"
	curl -s --max-time 10 --unix-socket "$a/api.sock" http://localhost/ >"$BATS_TEST_TMPDIR/info"
	assert_eq "$(jq -r .state "$BATS_TEST_TMPDIR/info")" "Not started" "the fc-qemu is still fresh"
	kill -TERM "$fcq"
	timeout 20 tail --pid="$fcq" -f /dev/null

	# a server of another snapshot whose memory is another size: fc-uffd
	# refuses the handshake (the regions do not cover its file), QEMU
	# notices the closed connection and exits, fc-clone says why
	local d="$FCVM_ROOT/snapshots/t2"
	cp -a "$FCVM_ROOT/snapshots/t1" "$d"
	truncate -s 16M "$d/memory"
	jq '.tag = "t2" | .files.memory.size = 16777216 | .machine.memory_mib = 16' "$FCVM_ROOT/snapshots/t1/manifest.json" >"$d/manifest.json"
	rm -f "$d/workingset"
	local before; before=$(fc-state ls --json | jq length)
	serve t2
	run_fc 1 --timeout 300 fc-clone --pid "$SPID" --name bad 3>&-
	assert_contains "$output" "memory server closed the connection" "fc-clone names the cause"
	run_fc 0 fc-state ls --json
	assert_eq "$(jq '[.[] | select(.process_type == "clone")] | length' <<<"$output")" 0 "no clone record"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" | wc -l)" 0 "no clone disk"
	stats_until '.refused == 1 and .clients_total == 0' t2 >/dev/null
	run_fc 1 fc-clone --pid $$ --name bad2
	assert_contains "$output" "no memory server runs as pid $$" "--pid of no server"
	run_fc 2 fc-clone --pid x --name bad3
	assert_contains "$output" "--pid" "--pid is a number"
	kill -TERM "$SPID"
	timeout 60 tail --pid="$FRONT" -f /dev/null
	assert_eq "$before" 0 "nothing was recorded before the server"
}
