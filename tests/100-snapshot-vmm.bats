#!/usr/bin/env bats
# Snapshots under fc-qemu, the VMM layer: fcvm's own QEMU (fc-setup qemu),
# PATCH /vm, PUT /snapshot/create and /snapshot/load through the Firecracker
# API, restore into new fc-qemu processes (File backend, share=off) whose
# agents answer a hybrid-vsock CONNECT; fc-vsock's VMM-address-space path;
# a stock-QEMU-only setup answered with 400.
#
# fcvm's QEMU comes from tests/lib/fixtures.sh (FCVM_TEST_QEMU, built once
# and cached). Where it could not be built the guest tests skip with the
# reason; in CI that is a failure.

load helpers

setup() {
	fc_setup_root
	N=0
	PIDS=()
	SNAP="${FCVM_TEST_BTRFS:-$BATS_TEST_TMPDIR}/snap-$$-$BATS_TEST_NUMBER"
	mkdir -p "$SNAP"
}

teardown() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		timeout 20 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null || true
	done
	rm -rf "${SNAP:-/nonexistent}"
	leak_check
}

need_snap_qemu() {
	need_rootfs
	local why=""
	[ -n "${FCVM_TEST_QEMU:-}" ] && [ -x "$FCVM_TEST_QEMU" ] ||
		why="fcvm's QEMU could not be built (${FCVM_TEST_QEMU_WHY:-see fc-setup qemu})"
	if [ -n "$why" ]; then
		[ -n "${CI:-}" ] && { echo "CI must not skip: $why" >&2; return 1; }
		skip "$why"
	fi
	export FCVM_QEMU="$FCVM_TEST_QEMU"
}

# start_fcq NAME: an fc-qemu with its API socket in run/NAME/; sets
# SOCK_<NAME>-style globals through the helpers below.
start_fcq() {
	local n=$1 i
	mkdir -p "$FCVM_ROOT/run/$n"
	fc-qemu --api-sock "$FCVM_ROOT/run/$n/api.sock" --id "$n" \
		</dev/null >"$FCVM_ROOT/run/$n/console" 2>"$FCVM_ROOT/run/$n/stderr" 3>&- &
	PIDS+=($!)
	eval "PID_$n=$!"
	for ((i = 0; i < 100; i++)); do
		[ -S "$FCVM_ROOT/run/$n/api.sock" ] && return 0
		sleep 0.1
	done
	echo "fc-qemu $n did not create its API socket: $(cat "$FCVM_ROOT/run/$n/stderr")" >&2
	return 1
}

# api NAME METHOD PATH [JSON]: sets $code and $body.
api() {
	local n=$1
	shift
	local args=(-s --max-time 300 --unix-socket "$FCVM_ROOT/run/$n/api.sock" -X "$1"
		-o "$BATS_TEST_TMPDIR/body" -w '%{http_code}' "http://localhost$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
	code=$(curl "${args[@]}")
	body=$(cat "$BATS_TEST_TMPDIR/body")
	# every request we send must be valid Firecracker API (tests/contract)
	if [ $# -ge 3 ]; then
		printf '%s' "$3" >"$BATS_TEST_TMPDIR/req"
		"$BATS_TEST_DIRNAME/contract/validate-request" "$1" "$2" "$BATS_TEST_TMPDIR/req" >&2 ||
			{ echo "request not valid against the Firecracker API: $1 $2 $3" >&2; return 1; }
	fi
}

expect_fault() {
	assert_eq "$code" "$1" "$3: status" || return 1
	local msg
	msg=$(jq -er .fault_message <<<"$body") || { echo "no fault_message in: $body" >&2; return 1; }
	assert_contains "$msg" "$2" "$3: fault_message"
}

# boot NAME: configure through the API (rootfs copy, vsock) and start.
boot() {
	local n=$1
	cp --reflink=auto --sparse=always "$FCVM_TEST_ROOTFS/rootfs.ext4" "$FCVM_ROOT/run/$n/rootfs.ext4"
	api "$n" PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 512}'
	assert_eq "$code" 204 "machine-config: $body"
	api "$n" PUT /boot-source "{\"kernel_image_path\": \"$FCVM_TEST_KERNEL/vmlinux\", \"initrd_path\": \"$FCVM_TEST_KERNEL/initrd.img\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off\"}"
	assert_eq "$code" 204 "boot-source: $body"
	api "$n" PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$FCVM_ROOT/run/$n/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	assert_eq "$code" 204 "drive: $body"
	api "$n" PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$FCVM_ROOT/run/$n/v.sock\"}"
	assert_eq "$code" 204 "vsock: $body"
	api "$n" PUT /actions '{"action_type": "InstanceStart"}'
	assert_eq "$code" 204 "InstanceStart: $body"
}

# hello UDS [TIMEOUT]: CONNECT 1024 over hybrid vsock and read the agent's
# hello; prints "hello <agent version field>".
hello() {
	PYTHONPATH="$BATS_TEST_DIRNAME/lib" timeout "${2:-180}" python3 - "$1" "${2:-180}" <<'EOF'
import sys, time
from agentproto import *
uds, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs - 5
while True:
    try:
        s = vconn(uds, 1024, timeout=30)
        h = hello(s)
        print("hello", sorted(h))
        break
    except Exception as e:
        if time.time() > end:
            print("no hello:", e)
            sys.exit(1)
        time.sleep(0.5)
EOF
}

# clone_disk NAME: the clone's own copy of the snapshot's disk, given as a
# drive override before the load (each clone writes its own disk).
clone_disk() {
	cp --reflink=auto --sparse=always "$SNAP/disk.ext4" "$FCVM_ROOT/run/$1/rootfs.ext4"
	api "$1" PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$FCVM_ROOT/run/$1/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	assert_eq "$code" 204 "drive override for $1: $body"
}

state_of() {
	api "$1" GET /
	jq -r .state <<<"$body"
}

@test "fc-vsock: a fake front-end with private guest memory is served through its address space" {
	command -v python3 >/dev/null || skip "python3 not installed"
	local run="$FCVM_ROOT/run/vu"
	mkdir -p "$run"
	fc-vsock --vhost-socket "$run/vu.sock" --uds-path "$run/v.sock" --cid 3 -v \
		2>"$run/log" 3>&- &
	PIDS+=($!)
	local i
	for ((i = 0; i < 100; i++)); do [ -S "$run/vu.sock" ] && break; sleep 0.05; done
	run timeout 60 "$BATS_TEST_DIRNAME/guest/vu-frontend" "$run/vu.sock" "$run/v.sock" 3 --private
	echo "$output"
	[ "$status" -eq 0 ] || { cat "$run/log" >&2; return 1; }
	assert_contains "$output" "private guest memory reached through our address space (memfd untouched)" \
		"writes went into the front-end's private mapping"
	assert_contains "$output" "guest-initiated stream: RESPONSE, data both ways" "streams work that way"
	assert_contains "$output" "writes to guest memory are marked in the dirty log" "dirty log"
	grep -q "through the VMM's address space" "$run/log" || { cat "$run/log" >&2; false; }
}

@test "fc-setup qemu: the build is cached under its key and reported by preflight" {
	need_snap_qemu
	local out
	out=$(timeout 60 fc-setup qemu --check 2>/dev/null)
	assert_eq "$out" "$FCVM_TEST_QEMU" "--check prints the cached binary without building"
	local dir
	dir=$(dirname "$(dirname "$(readlink -f "$FCVM_TEST_QEMU")")")
	assert_eq "$(jq -r .snapshot_capable "$dir/manifest.json")" true "the manifest marks it"
	local p
	for p in qemu-vhost-user-vsock-migration.patch qemu-uffd-socket.patch; do
		assert_eq "$(jq -r --arg p "$p" '.patches[] | select(.name == $p) | .sha256' "$dir/manifest.json")" \
			"$(sha256sum "$BATS_TEST_DIRNAME/../bin/fc-setup/$p" | cut -d' ' -f1)" \
			"keyed by $p in the tree"
	done
	"$FCVM_TEST_QEMU" -object memory-backend-memfd,help | grep -q uffd-socket
	"$FCVM_TEST_QEMU" -device help | grep -q vhost-user-vsock-device
	local sq='.items[] | select(.name == "snapshot-qemu")'
	run timeout 120 fc-setup preflight --json --no-probe
	assert_eq "$(jq -r "$sq | .status" <<<"$output")" OK "preflight: snapshot-capable QEMU present"
	assert_contains "$(jq -r "$sq | .detail" <<<"$output")" "$FCVM_TEST_QEMU" "preflight names it"
	FCVM_QEMU=/usr/bin/qemu-system-x86_64 run timeout 120 fc-setup preflight --json --no-probe
	assert_eq "$(jq -r "$sq | .status" <<<"$output")" WARN "preflight: a stock QEMU is not"
	assert_contains "$(jq -r "$sq | .fix" <<<"$output")" "fc-setup qemu" "preflight says how to get one"
}

@test "fc-setup qemu: temporaries of dead builds are collected; an interrupted build leaves nothing" {
	need_snap_qemu
	local c="$BATS_TEST_TMPDIR/cache" key
	key=$(basename "$(dirname "$(dirname "$(readlink -f "$FCVM_TEST_QEMU")")")")
	mkdir -p "$c/qemu"
	ln -s "$(dirname "$(dirname "$(readlink -f "$FCVM_TEST_QEMU")")")" "$c/qemu/$key"
	mkdir "$c/qemu/.build-$key-999999" "$c/qemu/.tmp-$key-999999" "$c/qemu/.build-$key-$$"
	FCVM_CACHE="$c" run timeout 120 fc-setup qemu
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	[ ! -e "$c/qemu/.build-$key-999999" ] && [ ! -e "$c/qemu/.tmp-$key-999999" ] ||
		{ echo "a dead build's temporaries were not collected" >&2; false; }
	[ -d "$c/qemu/.build-$key-$$" ] || { echo "a live builder's temporary was removed" >&2; false; }
	rm -rf "$c"

	# a real build, interrupted while it unpacks the source
	mkdir -p "$c"
	FCVM_CACHE="$c" fc-setup qemu --jobs 1 >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" 3>&- &
	local pid=$! i
	PIDS+=($pid)
	for ((i = 0; i < 1200; i++)); do
		ls -d "$c"/qemu/.build-*/src >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! kill -0 "$pid" 2>/dev/null; then
		cat "$BATS_TEST_TMPDIR/err" >&2
		skip "fc-setup qemu could not fetch the source here (no network?)"
	fi
	kill -TERM "$pid"
	local rc=0
	wait "$pid" || rc=$?
	assert_eq "$rc" 130 "an interrupted build exits 130"
	assert_eq "$(ls -A "$c/qemu" | grep -v '^\.lock$' | wc -l)" 0 \
		"nothing left of the interrupted build (no final name, no temporaries)"
	[ ! -s "$BATS_TEST_TMPDIR/out" ] || { echo "it printed a path" >&2; false; }
}

@test "snapshot: pause, create, resume; a new fc-qemu loads it (File) and its agent answers" {
	need_snap_qemu
	start_fcq src
	boot src
	run hello "$FCVM_ROOT/run/src/v.sock"
	assert_contains "$output" "hello" "the source's agent answers before the snapshot"
	api src PUT /snapshot/create "{\"snapshot_path\": \"$SNAP/vmstate\", \"mem_file_path\": \"$SNAP/memory\"}"
	expect_fault 400 "must be paused" "a running VM is not snapshotted"
	api src PATCH /vm '{"state": "Paused"}'
	assert_eq "$code" 204 "pause: $body"
	assert_eq "$(state_of src)" Paused "state after pause"
	api src PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$SNAP/vmstate\", \"mem_file_path\": \"$SNAP/memory\"}"
	assert_eq "$code" 204 "snapshot/create: $body"
	[ -s "$SNAP/vmstate" ] && [ -f "$SNAP/memory" ]
	cp --reflink=auto --sparse=always "$FCVM_ROOT/run/src/rootfs.ext4" "$SNAP/disk.ext4"	# as fc-snap will
	assert_eq "$(stat -c %s "$SNAP/memory")" $((512 << 20)) "memory file: the whole RAM"
	assert_eq "$(head -c 8 "$SNAP/vmstate")" "FCQSNAP" "vmstate: fc-qemu's header"
	local vs; vs=$(stat -c %s "$SNAP/vmstate")
	[ "$vs" -lt $((16 << 20)) ] || { echo "vmstate of $vs bytes: RAM was not left out" >&2; false; }
	ls -a "$SNAP" | grep -q '\.tmp' && { echo "temporary files left in $SNAP" >&2; false; }
	api src PATCH /vm '{"state": "Resumed"}'
	assert_eq "$code" 204 "resume: $body"
	assert_eq "$(state_of src)" Running "state after resume"
	run hello "$FCVM_ROOT/run/src/v.sock"
	assert_contains "$output" "hello" "the source still answers after the snapshot"

	start_fcq clone1
	api clone1 PUT /drives/other "{\"drive_id\": \"other\", \"path_on_host\": \"$SNAP/memory\", \"is_root_device\": false, \"is_read_only\": true}"
	api clone1 PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/vmstate\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$SNAP/memory\"}}"
	expect_fault 400 "overrides nothing" "a drive the snapshot does not have"
	[ "$(state_of clone1)" = "Not started" ]
	kill -TERM "$PID_clone1"; wait "$PID_clone1" || true
	FCVM_LOG=debug start_fcq clone1
	clone_disk clone1
	api clone1 PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/vmstate\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$SNAP/memory\"}, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"$FCVM_ROOT/run/clone1/v.sock\"}}"
	assert_eq "$code" 204 "snapshot/load: $body"
	assert_eq "$(state_of clone1)" Running "clone state after load with resume_vm"
	run hello "$FCVM_ROOT/run/clone1/v.sock"
	assert_contains "$output" "hello" "the restored agent answers a new CONNECT after the vsock reset"
	grep -q "fc-vsock: debug: guest memory: [0-9]* region(s), through the VMM's address space" \
		"$FCVM_ROOT/run/clone1/stderr" ||
		{ echo "the clone's fc-vsock did not reach its private memory through QEMU" >&2
		  grep fc-vsock "$FCVM_ROOT/run/clone1/stderr" >&2; false; }
	local qpid; qpid=$(pgrep -P "$PID_clone1" -f qemu-system | head -1)
	grep -q " rw-p .*$SNAP/memory" "/proc/$qpid/maps" ||
		{ echo "QEMU does not map the snapshot's memory file privately" >&2; false; }
	# the timings, for the record (no assertion on time)
	grep -h -o 'snapshot created in [0-9]* ms\|snapshot .* loaded in [0-9]* ms' \
		"$FCVM_ROOT/run/src/stderr" "$FCVM_ROOT/run/clone1/stderr" | sed 's/^/# /' >&3 || true
	api clone1 GET /machine-config
	assert_eq "$(jq -r .mem_size_mib <<<"$body")" 512 "the clone's machine config came from the snapshot"
	api clone1 PUT /actions '{"action_type": "InstanceStart"}'
	expect_fault 400 "already running" "InstanceStart after a load"
	run hello "$FCVM_ROOT/run/src/v.sock" 60
	assert_contains "$output" "hello" "the source is unharmed by its clone"
}

@test "snapshot: two clones of one snapshot run at once and both answer" {
	need_snap_qemu
	# this source runs from the btrfs data root (its RAM file too): the
	# memory file is then a reflink of the RAM, not a copy
	mkdir -p "$SNAP/run-src" "$FCVM_ROOT/run"
	ln -s "$SNAP/run-src" "$FCVM_ROOT/run/src"
	start_fcq src
	boot src
	run hello "$FCVM_ROOT/run/src/v.sock"
	api src PATCH /vm '{"state": "Paused"}'
	api src PUT /snapshot/create "{\"snapshot_path\": \"$SNAP/vmstate\", \"mem_file_path\": \"$SNAP/memory\"}"
	assert_eq "$code" 204 "snapshot/create: $body"
	cp --reflink=auto --sparse=always "$FCVM_ROOT/run/src/rootfs.ext4" "$SNAP/disk.ext4"
	if [ -n "${FCVM_TEST_BTRFS:-}" ]; then
		filefrag -v "$SNAP/memory" | grep -q shared ||
			{ echo "the memory file on btrfs is not a reflink of the RAM file" >&2; filefrag -v "$SNAP/memory" | head >&2; false; }
	fi
	grep -h -o 'snapshot created in [0-9]* ms' "$FCVM_ROOT/run/src/stderr" | sed 's/^/# reflinked: /' >&3 || true
	local sum0; sum0=$(sha256sum <"$SNAP/memory")
	api src PATCH /vm '{"state": "Resumed"}'
	local c
	for c in c1 c2; do
		start_fcq $c
		clone_disk $c
		api $c PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/vmstate\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$SNAP/memory\"}, \"resume_vm\": false, \"vsock_override\": {\"uds_path\": \"$FCVM_ROOT/run/$c/v.sock\"}}"
		assert_eq "$code" 204 "snapshot/load $c: $body"
		assert_eq "$(state_of $c)" Paused "resume_vm false leaves $c paused"
	done
	for c in c1 c2; do
		api $c PATCH /vm '{"state": "Resumed"}'
		assert_eq "$code" 204 "resume $c: $body"
	done
	for c in c1 c2; do
		run hello "$FCVM_ROOT/run/$c/v.sock"
		assert_contains "$output" "hello" "clone $c answers while the other runs"
	done
	# both ran on private mappings: the snapshot's memory file is unchanged
	assert_eq "$(sha256sum <"$SNAP/memory")" "$sum0" "clones never write into the snapshot's memory file"
	api c1 PATCH /vm '{"state": "Paused"}'
	api c1 PUT /snapshot/create "{\"snapshot_path\": \"$SNAP/again\", \"mem_file_path\": \"$SNAP/again.mem\"}"
	expect_fault 400 "cannot be snapshotted again" "a File-backed clone is not snapshotted"
}

@test "snapshot: bad requests and a stock-QEMU-only setup are refused with 400" {
	need_snap_qemu
	start_fcq a
	api a PUT /snapshot/create "{\"snapshot_path\": \"$SNAP/s\", \"mem_file_path\": \"$SNAP/m\"}"
	expect_fault 400 "before starting" "snapshot before boot"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/nonexistent\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$SNAP/m\"}}"
	expect_fault 400 "nonexistent" "a missing snapshot file"
	printf 'not a snapshot at all' >"$SNAP/junk"
	: >"$SNAP/m"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/junk\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$SNAP/m\"}}"
	expect_fault 400 "not an fc-qemu snapshot" "a file that is no snapshot"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/junk\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"$SNAP/uffd.sock\"}}"
	expect_fault 400 "not an fc-qemu snapshot" "Uffd backend: the snapshot is checked like File's (tests/141 serves one)"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/junk\", \"mem_file_path\": \"$SNAP/m\", \"track_dirty_pages\": true}"
	expect_fault 400 "dirty page tracking" "diff snapshots"
	[ "$(state_of a)" = "Not started" ]
	# a crafted header is checked like API input
	python3 - "$SNAP" <<'EOF'
import json, struct, sys
d = sys.argv[1]
def snap(name, hdr):
    j = json.dumps(hdr).encode()
    open(d + "/" + name, "wb").write(b"FCQSNAP\n" + struct.pack("<II", 1, len(j)) + j)
snap("crafted", {"version": 1, "vcpus": 1, "mem_mib": 16, "kernel": "/nonexistent/k"})
snap("badfield", {"version": 1, "vcpus": 1, "mem_mib": 16, "kernel": "/etc/hostname", "evil": 1})
snap("badver", {"version": 2, "vcpus": 1, "mem_mib": 16, "kernel": "/etc/hostname"})
open(d + "/huge", "wb").write(b"FCQSNAP\n" + struct.pack("<II", 1, 1 << 30))
EOF
	truncate -s 16M "$SNAP/m"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/crafted\", \"mem_file_path\": \"$SNAP/m\"}"
	expect_fault 400 "the snapshot's kernel '/nonexistent/k'" "a header naming a missing kernel"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/badfield\", \"mem_file_path\": \"$SNAP/m\"}"
	expect_fault 400 "unknown field 'evil'" "a header with an unknown field"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/badver\", \"mem_file_path\": \"$SNAP/m\"}"
	expect_fault 400 "version" "a header of another version"
	api a PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/huge\", \"mem_file_path\": \"$SNAP/m\"}"
	expect_fault 400 "bad header length" "a header longer than the file"
	[ "$(state_of a)" = "Not started" ]

	# only a stock QEMU: the snapshot endpoints say so, boots still work
	FCVM_QEMU=/usr/bin/qemu-system-x86_64 start_fcq stock
	api stock PUT /snapshot/load "{\"snapshot_path\": \"$SNAP/junk\", \"mem_file_path\": \"$SNAP/m\"}"
	expect_fault 400 "snapshots need fcvm's QEMU" "load with a stock QEMU"
	boot stock
	api stock PATCH /vm '{"state": "Paused"}'
	assert_eq "$code" 204 "pause works with a stock QEMU"
	api stock PUT /snapshot/create "{\"snapshot_path\": \"$SNAP/s\", \"mem_file_path\": \"$SNAP/m2\"}"
	expect_fault 400 "snapshots need fcvm's QEMU" "create with a stock QEMU"
	assert_contains "$body" "not fcvm's QEMU" "the reason names the binary"
	[ ! -e "$SNAP/s" ] && [ ! -e "$SNAP/m2" ]
}
