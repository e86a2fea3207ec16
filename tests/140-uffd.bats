#!/usr/bin/env bats
# fc-uffd, proven without a VM: tests/uffd/client.c (uffd-client) does
# Firecracker's side of the Uffd backend for real - anonymous mappings
# registered with a userfaultfd, the handshake in both JSON versions - and
# checks every page it touches against the snapshot's memory file.

load helpers

setup() {
	[ "$(id -u)" = 0 ] || skip "needs root (userfaultfd of kernel faults)"
	CL="$FCVM_BUILD/test-helpers/uffd-client"
	[ -x "$CL" ] || skip "uffd-client not built"
	fc_setup_root
	W="$BATS_TEST_TMPDIR"
	PIDS=()
	snap t1
}

teardown() {
	local p left=""
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$p" 2>/dev/null && { left="$left stuck $p"; kill -9 "$p"; }
		wait "$p" 2>/dev/null
	done
	for p in $(pgrep -f "uffd-client .*$W" 2>/dev/null); do left="$left client $p"; kill -9 "$p"; done
	[ -z "$(ls "$FCVM_ROOT/run" 2>/dev/null)" ] || left="$left run: $(ls "$FCVM_ROOT/run")"
	[ -z "$(ls "$FCVM_ROOT/state" 2>/dev/null)" ] || left="$left state: $(ls "$FCVM_ROOT/state")"
	[ -z "$left" ] || { echo "LEAK after test: $left" >&2; return 1; }
}

# snap TAG [MiB]: a snapshot whose memory is random bytes (never started).
snap() {
	local d="$FCVM_ROOT/snapshots/$1" mib=${2:-16}
	mkdir -p "$d"
	head -c 4096 /dev/urandom >"$d/vmstate"
	head -c "${mib}M" /dev/urandom >"$d/memory"
	truncate -s 1M "$d/disk.ext4"
	jq -n --arg sum "$(sha256sum <"$d/vmstate" | cut -d' ' -f1)" --arg tag "$1" \
		--argjson mib "$mib" '{
		version: 1, tag: $tag, created: "2026-01-01T00:00:00Z",
		source: {id: "vm-000000000000", name: "x", config: {}, network: null},
		machine: {cpus: 1, memory_mib: $mib, vsock_cid: 3},
		vmm: {program: "fc-qemu", version: "x"}, backends: ["File", "Uffd"],
		files: {vmstate: {name: "vmstate", size: 4096, sha256: $sum},
			memory: {name: "memory", size: ($mib * 1048576)},
			disk: {name: "disk.ext4", size: 1048576}}}' >"$d/manifest.json"
	MEM="$d/memory"
}

# serve TAG [ARGS...]: start fc-uffd, wait for its ready line; sets SOCK, SPID.
serve() {
	local tag=$1 ready="$W/ready.$RANDOM"
	shift
	fc-uffd serve --snapshot "$tag" --ready-fd 5 "$@" 5>"$ready" 2>>"$W/server.log" &
	SPID=$!
	PIDS+=("$SPID")
	wait_line "$ready" "^ready " 20 "$SPID"
	SOCK=$(awk '{print $2}' "$ready")
}

# stat_of FIELD: the server's statistic, after it has written them out.
stat_of() {
	sleep 0.6	# stats are written at most every 100 ms, checked every 200 ms
	jq -r ".$1" "$FCVM_ROOT/run/uffd-t1-$SPID.stats"
}

alive() {
	kill -0 "$SPID" 2>/dev/null || { echo "FAILED: fc-uffd died: $(cat "$W/server.log")" >&2; return 1; }
}

@test "fc-uffd: usage and a missing snapshot" {
	run_fc 2 fc-uffd
	run_fc 0 fc-uffd -h
	assert_contains "$output" "fc-uffd serve --snapshot TAG" "usage"
	run_fc 2 fc-uffd serve
	assert_contains "$output" "--snapshot TAG is needed" "needs a snapshot"
	run_fc 2 fc-uffd serve --snapshot ../x
	assert_contains "$output" "invalid --snapshot" "a tag is a plain name"
	run_fc 2 fc-uffd serve --snapshot t1 --prefetch maybe
	assert_contains "$output" "on or off" "--prefetch"
	run_fc 1 fc-uffd serve --snapshot nosuch
	assert_contains "$output" "nosuch" "a missing snapshot is named"
}

@test "fc-uffd: a serve record, its socket; SIGTERM removes both" {
	serve t1
	local id
	id=$(fc-state ls --json | jq -r '.[] | select(.process_type == "serve") | .id')
	[ -n "$id" ]
	assert_eq "$(jq -r .pid "$FCVM_ROOT/state/$id.json")" "$SPID" "the record holds fc-uffd's own pid"
	assert_eq "$(jq -r .snapshot "$FCVM_ROOT/state/$id.json")" t1 "the record names the snapshot"
	assert_eq "$(jq -r .sockets.uffd "$FCVM_ROOT/state/$id.json")" "$SOCK" "the record names the socket"
	assert_eq "$SOCK" "$FCVM_ROOT/run/uffd-t1-$SPID.sock" "run/uffd-<tag>-<pid>.sock"
	[ -S "$SOCK" ]
	kill -TERM "$SPID"
	for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$SPID" 2>/dev/null; then echo "fc-uffd still runs" >&2; false; fi
	[ ! -e "$SOCK" ]
	[ ! -e "$FCVM_ROOT/state/$id.json" ]
}

@test "fc-uffd: pages equal the memory file, both handshake versions, many regions" {
	serve t1 --prefetch off
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM"
	assert_contains "$output" "ok touched=4096 bad=0" "page_size: every page equals the file"
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --old --regions 5 --stride 3
	assert_contains "$output" "ok touched=" "page_size_kib, 5 regions"
	[ "$(stat_of faults)" -gt 100 ]
	[ "$(stat_of clients_total)" = 2 ]
	alive
}

@test "fc-uffd: guest RAM in a shared memfd (QEMU's vhost-user layout) is served the same way" {
	serve t1 --prefetch off
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --memfd --regions 2
	assert_contains "$output" "ok touched=4096 bad=0" "shmem pages equal the file"
	[ "$(stat -c %a "$SOCK")" = 600 ]
}

@test "fc-uffd: REMOVE (madvise DONTNEED) then touch gives zero pages" {
	serve t1 --prefetch off
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --remove --regions 2
	assert_contains "$output" "ok touched=4096 bad=0" "removed half zero, the rest the file"
	[ "$(stat_of removes)" -ge 1 ]
	[ "$(stat_of pages_zeroed)" -ge 1 ]
}

@test "fc-uffd: 50 concurrent clients; a client killed mid-run does not disturb the others" {
	serve t1 --prefetch off
	"$CL" run "$SOCK" "$MEM" --die-after 300 &
	local k=$!
	run_fc 0 --timeout 120 "$CL" run "$SOCK" "$MEM" --procs 50 --stride 5
	assert_contains "$output" "ok procs=50 failed=0" "50 clients at once"
	wait "$k" || true
	# one that is killed while others fault
	"$CL" run "$SOCK" "$MEM" --hold-ms 5000 &
	k=$!
	sleep 0.5
	kill -9 "$k"
	wait "$k" || true
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM"
	assert_contains "$output" "ok touched=4096" "served after the killed ones"
	[ "$(stat_of clients)" = 0 ]
	[ "$(stat_of clients_total)" = 53 ]
	alive
}

@test "fc-uffd: malformed handshakes are refused without a crash or a stall" {
	serve t1 --handshake-timeout 1000
	local k
	# a silent client must not hold up a good one meanwhile
	"$CL" bad silent "$SOCK" "$MEM" >"$W/silent.out" &
	local s=$!
	run_fc 0 --timeout 30 "$CL" run "$SOCK" "$MEM" --stride 9
	assert_contains "$output" "ok touched=" "served while a silent client waits"
	for k in badjson garbage notarray oversized sizes short unaligned overlap pagesize \
		unknownkey nofd twofds notuffd; do
		run_fc 0 --timeout 30 "$CL" bad "$k" "$SOCK" "$MEM"
		assert_contains "$output" closed "refused: $k"
		alive
	done
	wait "$s"
	assert_contains "$(cat "$W/silent.out")" closed "a silent client is dropped at the timeout"
	assert_contains "$(cat "$W/server.log")" "no handshake within 1000 ms" "the timeout is named"
	assert_contains "$(cat "$W/server.log")" "not a userfaultfd" "a non-uffd fd is named"
	assert_contains "$(cat "$W/server.log")" "2 file descriptors" "two fds"
	assert_contains "$(cat "$W/server.log")" "overlap in memory" "overlap"
	[ "$(stat_of refused)" = 14 ]
	run_fc 0 --timeout 30 "$CL" run "$SOCK" "$MEM" --old
	assert_contains "$output" "ok touched=4096 bad=0" "still serving after all of them"
}

@test "fc-uffd: prefetch copies the recorded working set; the recording persists" {
	serve t1
	# clone 1 touches every 4th page of the file
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --stride 4
	local f1 ws
	f1=$(stat_of faults)
	ws=$(stat_of ws_pages)
	[ "$ws" -ge 1024 ]
	[ "$(stat_of pages_prefetched)" = 0 ]
	# clone 2: the same pages, prefetched before it touches them
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --stride 4 --delay-ms 500
	assert_contains "$output" "ok touched=1024 bad=0" "prefetched pages equal the file"
	[ "$(stat_of pages_prefetched)" -ge 1024 ]
	local f2=$(( $(stat_of faults) - f1 ))
	echo "# faults: first clone $f1, prefetched clone $f2" >&3
	[ "$f2" -le $(( f1 / 10 )) ]
	kill -TERM "$SPID"
	wait "$SPID" || true
	PIDS=()
	[ -s "$FCVM_ROOT/snapshots/t1/workingset" ]
	head -c 11 "$FCVM_ROOT/snapshots/t1/workingset" | grep -q '^fcvm-ws 1 '
	# a new server starts from the saved working set
	serve t1
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --stride 4 --delay-ms 500
	[ "$(stat_of pages_prefetched)" -ge 1024 ]
	# --prefetch off: nothing prefetched
	kill -TERM "$SPID"; wait "$SPID" || true; PIDS=()
	serve t1 --prefetch off
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --stride 4 --delay-ms 200
	[ "$(stat_of pages_prefetched)" = 0 ]
	# a working set of another shape is ignored with a warning
	kill -TERM "$SPID"; wait "$SPID" || true; PIDS=()
	echo junk >"$FCVM_ROOT/snapshots/t1/workingset"
	serve t1
	assert_contains "$(cat "$W/server.log")" "is not one of this memory file" "a bad working set is named"
	run_fc 0 --timeout 60 "$CL" run "$SOCK" "$MEM" --stride 8
}

@test "fc-uffd: SIGTERM stops the clones whose serve_pid is this server" {
	serve t1
	# a stand-in clone: a process with a clone record naming this server
	sleep 300 &
	local cp=$! st id=vm-00000000c10e
	PIDS+=("$cp")
	st=$(awk '{sub(/.*\) /, ""); print $20}' "/proc/$cp/stat")
	jq -n --argjson pid "$cp" --argjson st "$st" --argjson sp "$SPID" --arg id "$id" '{
		version: 1, id: $id, name: "c1", process_type: "clone", pid: $pid, pid_start: $st,
		status: "starting", created: "2026-01-01T00:00:00Z", serve_pid: $sp}' \
		>"$FCVM_ROOT/state/$id.json"
	# and one of another server, left alone
	sleep 300 &
	local op=$!
	PIDS+=("$op")
	kill -TERM "$SPID"
	for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$SPID" 2>/dev/null; then echo "fc-uffd still runs" >&2; false; fi
	if kill -0 "$cp" 2>/dev/null; then echo "the client still runs" >&2; false; fi
	kill -0 "$op"
	assert_contains "$(cat "$W/server.log")" "stopping clone $cp" "the clone is named"
	rm -f "$FCVM_ROOT/state/$id.json"
}

@test "fc-uffd: a SIGKILLed server's record, socket and stats are left for fc-state gc, which removes them" {
	serve t1
	kill -9 "$SPID"
	wait "$SPID" || true
	PIDS=()
	[ -S "$SOCK" ]
	[ -e "$FCVM_ROOT/run/uffd-t1-$SPID.stats" ]
	run_fc 0 fc-state gc
	assert_contains "$output" "uffd-t1-$SPID.sock" "the socket is removed"
	assert_contains "$output" "uffd-t1-$SPID.stats" "the stats file is removed"
	[ -z "$(ls "$FCVM_ROOT/run")" ]
	[ -z "$(ls "$FCVM_ROOT/state")" ]
}
