#!/usr/bin/env bats
# fc-qemu: the Firecracker API on its Unix socket (no guest needed), then a
# real TCG guest booted through the API (needs the test kernel + initrd).

load helpers

setup() {
	fc_setup_root
	mkdir -p "$FCVM_ROOT/run"
	SOCK="$FCVM_ROOT/run/api.sock"
	FCQ_PID=
}

teardown() {
	[ -z "${TAP:-}" ] || ip link del "$TAP" 2>/dev/null || true
	if [ -n "$FCQ_PID" ] && kill -0 "$FCQ_PID" 2>/dev/null; then
		kill -TERM "$FCQ_PID" 2>/dev/null
		wait "$FCQ_PID" 2>/dev/null || true
	fi
	leak_check
}

# Start fc-qemu in the background; stdin from $1 if given (the guest console).
start_fcq() {
	local in=${1:-/dev/null} i
	fc-qemu --api-sock "$SOCK" --id fcq-test \
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

# fc-qemu's private dir for QMP/vhost-user sockets (made beside the API
# socket) must be gone once it exited.
no_private_dir() {
	local left
	left=$(ls -d "$FCVM_ROOT"/run/fc-qemu.* 2>/dev/null) || true
	[ -z "$left" ] || { echo "private dir left behind: $left" >&2; return 1; }
}

# api METHOD PATH [JSON]: sets $code and $body.
api() {
	local args=(-s --max-time 120 --unix-socket "$SOCK" -X "$1" -o "$BATS_TEST_TMPDIR/body"
		-w '%{http_code}' "http://localhost$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
	code=$(curl "${args[@]}")
	body=$(cat "$BATS_TEST_TMPDIR/body")
}

# expect_fault STATUS NEEDLE "what": last answer was STATUS with a fault_message containing NEEDLE.
expect_fault() {
	assert_eq "$code" "$1" "$3: status" || return 1
	local msg
	msg=$(jq -er .fault_message <<<"$body") || { echo "no fault_message in: $body" >&2; return 1; }
	assert_contains "$msg" "$2" "$3: fault_message"
}

# raw BYTES: send raw bytes on a new connection, print the answer.
raw() {
	printf "$1" | timeout 10 socat -t 2 - UNIX-CONNECT:"$SOCK"
}

@test "fc-qemu: usage, unknown options and ignored Firecracker flags" {
	run_fc 0 fc-qemu -h
	assert_contains "$output" "--api-sock PATH" "usage text"
	run_fc 2 fc-qemu --bogus
	assert_contains "$output" "usage:" "unknown option prints usage"
	run_fc 2 fc-qemu
	assert_contains "$output" "--api-sock is required" "missing socket"
	run_fc 2 fc-qemu --api-sock "$SOCK" --config-file x.json
	assert_contains "$output" "not supported by fc-qemu" "unsupported Firecracker option"
	run_fc 2 fc-qemu --api-sock "$SOCK" --id 'bad id'
	assert_contains "$output" "invalid --id" "id validated"
}

@test "fc-qemu: GET /, /version and /machine-config before boot" {
	start_fcq
	api GET /
	assert_eq "$code" 200 "GET / status"
	assert_eq "$(jq -r .state <<<"$body")" "Not started" "state before boot"
	assert_eq "$(jq -r .app_name <<<"$body")" "Firecracker" "app_name"
	assert_eq "$(jq -r .id <<<"$body")" "fcq-test" "id from --id"
	api GET /version
	assert_eq "$code" 200 "GET /version"
	jq -e '.firecracker_version | length > 0' <<<"$body" >/dev/null
	api GET /machine-config
	assert_eq "$(jq -c '[.vcpu_count,.mem_size_mib,.smt]' <<<"$body")" "[1,128,false]" "defaults"
}

@test "fc-qemu: pre-boot PUTs are 204 and stored" {
	start_fcq
	: >"$BATS_TEST_TMPDIR/disk.img"
	truncate -s 1M "$BATS_TEST_TMPDIR/disk.img"
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "track_dirty_pages": false}'
	assert_eq "$code" 204 "PUT /machine-config"
	api PATCH /machine-config '{"mem_size_mib": 512}'
	assert_eq "$code" 204 "PATCH /machine-config"
	api GET /machine-config
	assert_eq "$(jq -c '[.vcpu_count,.mem_size_mib]' <<<"$body")" "[2,512]" "PATCH merged"
	api PUT /boot-source "{\"kernel_image_path\": \"$BATS_TEST_TMPDIR/disk.img\", \"boot_args\": \"console=ttyS0\"}"
	assert_eq "$code" 204 "PUT /boot-source"
	api PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": true, \"is_read_only\": false}"
	assert_eq "$code" 204 "PUT /drives/rootfs"
	api PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": true, \"io_engine\": \"Sync\", \"cache_type\": \"Writeback\"}"
	assert_eq "$code" 204 "PUT /drives/rootfs again (update)"
	api PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}'
	assert_eq "$code" 204 "PUT /network-interfaces/eth0"
	api PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$FCVM_ROOT/run/v.sock\"}"
	assert_eq "$code" 204 "PUT /vsock"
}

@test "fc-qemu: invalid bodies are 400 with a fault_message" {
	start_fcq
	: >"$BATS_TEST_TMPDIR/disk.img"
	api PUT /machine-config '{"vcpu_count": 2,'
	expect_fault 400 "invalid JSON" "truncated JSON"
	api PUT /machine-config '[1]'
	expect_fault 400 "JSON object" "not an object"
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "bogus": 1}'
	expect_fault 400 "unknown field 'bogus'" "unknown field"
	api PUT /machine-config '{"vcpu_count": 0, "mem_size_mib": 256}'
	expect_fault 400 "vcpu_count" "vcpu_count 0"
	api PUT /machine-config '{"vcpu_count": 33, "mem_size_mib": 256}'
	expect_fault 400 "vcpu_count" "vcpu_count 33"
	api PUT /machine-config '{"vcpu_count": "2", "mem_size_mib": 256}'
	expect_fault 400 "must be an integer" "vcpu_count as a string"
	api PUT /machine-config '{"vcpu_count": 2}'
	expect_fault 400 "mem_size_mib" "PUT without mem_size_mib"
	api PUT /machine-config '{"vcpu_count": 3, "mem_size_mib": 256, "smt": true}'
	expect_fault 400 "SMT" "odd vcpus with smt"
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "track_dirty_pages": true}'
	expect_fault 400 "not supported by fc-qemu" "track_dirty_pages true"
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "huge_pages": "2M"}'
	expect_fault 400 "not supported by fc-qemu" "huge pages"
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "T2"}'
	expect_fault 400 "not supported by fc-qemu" "cpu template"
	api PUT /boot-source '{"kernel_image_path": "/nonexistent/vmlinux"}'
	expect_fault 400 "cannot open kernel image" "missing kernel file"
	api PUT /boot-source '{"initrd_path": "/x"}'
	expect_fault 400 "kernel_image_path" "boot-source without kernel"
	api PUT /drives/a "{\"drive_id\": \"b\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": false}"
	expect_fault 400 "does not match" "drive id mismatch"
	api PUT /drives/a-b "{\"drive_id\": \"a-b\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": false}"
	expect_fault 400 "invalid drive id" "drive id with a dash"
	api PUT /drives/a "{\"drive_id\": \"a\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": false, \"io_engine\": \"Async\"}"
	expect_fault 400 "not supported by fc-qemu" "Async io engine"
	api PUT /drives/a "{\"drive_id\": \"a\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": false, \"rate_limiter\": {\"bandwidth\": {\"size\": 1, \"refill_time\": 1}}}"
	expect_fault 400 "rate_limiter" "rate limiter"
	api PUT /drives/a '{"drive_id": "a", "path_on_host": "/nonexistent.img", "is_root_device": false}'
	expect_fault 400 "cannot open drive" "missing drive file"
	api PUT /drives/r1 "{\"drive_id\": \"r1\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": true}"
	assert_eq "$code" 204 "first root drive"
	api PUT /drives/r2 "{\"drive_id\": \"r2\", \"path_on_host\": \"$BATS_TEST_TMPDIR/disk.img\", \"is_root_device\": true}"
	expect_fault 400 "root block device already exists" "second root drive"
	api PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "zz"}'
	expect_fault 400 "guest_mac" "bad MAC"
	api PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "a,b"}'
	expect_fault 400 "host_dev_name" "bad tap name"
	api PUT /vsock '{"guest_cid": 2, "uds_path": "/tmp/x"}'
	expect_fault 400 "guest_cid" "guest_cid below 3"
	api PUT /actions '{"action_type": "Reboot"}'
	expect_fault 400 "action_type" "unknown action"
	api PUT /actions '{"action_type": "FlushMetrics"}'
	expect_fault 400 "not supported by fc-qemu" "FlushMetrics"
	api PUT /actions '{"action_type": "InstanceStart"}'
	expect_fault 400 "without a kernel" "start without boot source"
	api PATCH /vm '{"state": "Paused"}'
	expect_fault 400 "before starting" "pause before boot"
	api PATCH /vm '{"state": "Stopped"}'
	expect_fault 400 "state" "bad vm state"
	api PUT /machine-config ''
	expect_fault 400 "" "empty body"
	api GET /
	assert_eq "$code" 200 "server still answers"
}

@test "fc-qemu: unsupported endpoints are 400 naming them, never a silent success" {
	start_fcq
	local ep
	for ep in "PUT /balloon" "GET /balloon/statistics" "PUT /logger" "PUT /metrics" "PUT /mmds" \
		  "GET /mmds" "GET /snapshot/create" "PUT /cpu-config" \
		  "PUT /entropy" "GET /vm/config" "PATCH /drives/rootfs" "PATCH /network-interfaces/eth0" \
		  "GET /nonexistent" "DELETE /" "POST /actions" "GET /drives/x"; do
		api ${ep% *} "${ep#* }" '{}'
		expect_fault 400 "unsupported by fc-qemu" "$ep"
	done
}

@test "fc-qemu: malformed HTTP is refused and does not kill the server" {
	start_fcq
	local out
	out=$(raw 'GARBAGE\r\n\r\n')
	assert_contains "$out" "HTTP/1.1 400" "garbage request line"
	assert_contains "$out" "fault_message" "error body"
	out=$(raw 'PUT /machine-config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
	assert_contains "$out" "HTTP/1.1 411" "chunked refused"
	out=$(raw 'PUT /machine-config HTTP/1.1\r\n\r\n')
	assert_contains "$out" "HTTP/1.1 411" "body without Content-Length"
	out=$(raw 'GET / HTTP/3.0\r\n\r\n')
	assert_contains "$out" "HTTP/1.1 505" "HTTP/3.0"
	out=$(raw 'PUT /vm HTTP/1.1\r\nContent-Length: 100000\r\n\r\n')
	assert_contains "$out" "HTTP/1.1 413" "oversized body"
	out=$(head -c 20000 /dev/zero | tr '\0' 'a' | timeout 10 socat -t 2 - UNIX-CONNECT:"$SOCK")
	assert_contains "$out" "HTTP/1.1 4" "oversized head"
	# a connection that sends half a request and goes away
	printf 'PUT /vm HTTP/1.1\r\nContent-Length: 50\r\n\r\n{"st' | timeout 5 socat -t 0.2 - UNIX-CONNECT:"$SOCK" || true
	# keep-alive + pipelining: two requests in one write, two answers
	out=$(raw 'GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
	assert_eq "$(grep -c 'HTTP/1.1 200' <<<"$out")" 2 "two pipelined answers"
	kill -0 "$FCQ_PID"
	api GET /
	assert_eq "$code" 200 "server alive after malformed input"
}

@test "fc-qemu: SIGTERM before boot removes the API socket and exits 0" {
	start_fcq
	kill -TERM "$FCQ_PID"
	local st=0
	wait "$FCQ_PID" || st=$?
	assert_eq "$st" 0 "exit status"
	FCQ_PID=
	[ ! -e "$SOCK" ]
}

@test "fc-qemu: QEMU exiting before QMP is reported at once, its words sanitised" {
	# a stand-in QEMU: escape sequences and a bidi override on stderr, then exit 5
	local fake="$BATS_TEST_TMPDIR/fake-qemu" t0 el
	cat >"$fake" <<-'EOF'
	#!/bin/sh
	sleep 0.5
	printf 'qemu: \033[31mboom\033]0;owned\007 \342\200\256evil\302\233[2J\n' >&2
	exit 5
	EOF
	chmod +x "$fake"
	FCVM_QEMU="$fake" FCVM_QEMU_ACCEL=tcg start_fcq
	echo "not a kernel" >"$BATS_TEST_TMPDIR/k"
	api PUT /boot-source "{\"kernel_image_path\": \"$BATS_TEST_TMPDIR/k\"}"
	t0=$SECONDS
	api PUT /actions '{"action_type": "InstanceStart"}'
	el=$((SECONDS - t0))
	expect_fault 400 "QEMU exited (5): qemu: ?[31mboom?]0;owned? ?evil?[2J" "QEMU's exit code and last line, controls replaced"
	# noticed while waiting for QMP, not at the 30 s start timeout
	[ "$el" -lt 15 ] || { echo "InstanceStart took $el s" >&2; return 1; }
	# what fc-qemu forwards of QEMU's stderr is sanitised too
	if LC_ALL=C grep -qP '[\x1b\x07]|\xe2\x80\xae|\xc2\x9b' "$BATS_TEST_TMPDIR/stderr"; then
		echo "raw control bytes forwarded:" >&2; cat -v "$BATS_TEST_TMPDIR/stderr" >&2; return 1
	fi
	grep -q 'boom' "$BATS_TEST_TMPDIR/stderr"
	api GET /
	assert_eq "$(jq -r .state <<<"$body")" "Not started" "still not started"
	no_private_dir
}

@test "fc-qemu: QEMU failing at start is a 400 with its error" {
	command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
	start_fcq
	echo "not a kernel" >"$BATS_TEST_TMPDIR/bad-kernel"
	api PUT /boot-source "{\"kernel_image_path\": \"$BATS_TEST_TMPDIR/bad-kernel\"}"
	assert_eq "$code" 204 "boot-source"
	api PUT /actions '{"action_type": "InstanceStart"}'
	expect_fault 400 "QEMU exited" "InstanceStart with a bad kernel"
	api GET /
	assert_eq "$(jq -r .state <<<"$body")" "Not started" "still not started"
	no_private_dir
}

# Readiness lines: the dev initrd prints "fcvm-dev: ready", fc-setup's init
# "fcvm-init: ..." lines and the agent "fc-agent: ready".
READY_RE='fcvm-dev: ready|fcvm-init:|fc-agent: ready'

wait_console() {
	wait_line "$BATS_TEST_TMPDIR/console" "$READY_RE" 90 "$FCQ_PID" ||
		{ cat "$BATS_TEST_TMPDIR/stderr" >&2; return 1; }
}

boot_guest() {
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256}'
	assert_eq "$code" 204 "machine-config"
	api PUT /boot-source "{\"kernel_image_path\": \"$FCVM_TEST_KERNEL/vmlinux\", \"initrd_path\": \"$FCVM_TEST_KERNEL/initrd.img\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off\"}"
	assert_eq "$code" 204 "boot-source"
	api PUT /actions '{"action_type": "InstanceStart"}'
	assert_eq "$code" 204 "InstanceStart: $body"
}

@test "fc-qemu: boots a guest, pauses and resumes it" {
	need_guest
	start_fcq
	boot_guest
	api GET /
	assert_eq "$(jq -r .state <<<"$body")" "Running" "state after InstanceStart"
	# QMP and vhost-user are connected: their socket paths are gone already
	no_private_dir
	api PATCH /vm '{"state": "Paused"}'
	assert_eq "$code" 204 "pause"
	api GET /
	assert_eq "$(jq -r .state <<<"$body")" "Paused" "state after pause"
	# while paused the guest cannot power off under us (fc-setup's init
	# powers off when it finds no root disk)
	api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'
	expect_fault 400 "after starting" "pre-boot resource after start"
	api PUT /drives/x "{\"drive_id\": \"x\", \"path_on_host\": \"$FCVM_TEST_KERNEL/vmlinux\", \"is_root_device\": false, \"is_read_only\": true}"
	expect_fault 400 "after starting" "drive after start"
	api PUT /actions '{"action_type": "InstanceStart"}'
	expect_fault 400 "already running" "second InstanceStart"
	api PATCH /vm '{"state": "Resumed"}'
	assert_eq "$code" 204 "resume"
	api GET /
	assert_eq "$(jq -r .state <<<"$body")" "Running" "state after resume"
	wait_console
	kill -TERM "$FCQ_PID" 2>/dev/null || true
	local st=0
	wait "$FCQ_PID" || st=$?
	assert_eq "$st" 0 "fc-qemu exit after SIGTERM"
	FCQ_PID=
	[ ! -e "$SOCK" ]
	no_private_dir
}

@test "fc-qemu: guest poweroff ends fc-qemu with status 0 and cleans up" {
	need_guest
	mkfifo "$BATS_TEST_TMPDIR/in"
	exec 4<>"$BATS_TEST_TMPDIR/in"
	start_fcq "$BATS_TEST_TMPDIR/in"
	boot_guest
	wait_console
	# the dev initrd leaves a shell on the console; fc-setup's powers off by itself
	echo "poweroff -f" >&4
	run timeout 120 tail --pid="$FCQ_PID" -f /dev/null
	exec 4>&-
	local st=0
	wait "$FCQ_PID" || st=$?
	assert_eq "$st" 0 "fc-qemu exit status after guest poweroff"
	FCQ_PID=
	[ ! -e "$SOCK" ]
	no_private_dir
}

@test "fc-qemu: kill -9 leaves no QEMU behind" {
	need_guest
	start_fcq
	boot_guest
	local qemu i
	qemu=$(pgrep -P "$FCQ_PID" -x qemu-system-x86)
	[ -n "$qemu" ] || { echo "no QEMU child found" >&2; false; }
	kill -9 "$FCQ_PID"
	for i in $(seq 100); do
		kill -0 "$qemu" 2>/dev/null || break
		sleep 0.1
	done
	run kill -0 "$qemu"
	[ "$status" -ne 0 ] || { echo "QEMU $qemu survived fc-qemu's SIGKILL" >&2; false; }
	wait "$FCQ_PID" 2>/dev/null || true
	FCQ_PID=
	# like Firecracker, a SIGKILLed fc-qemu leaves its API socket, but nothing else
	no_private_dir
	assert_eq "$(find "$FCVM_ROOT" -type s)" "$SOCK" "only the API socket is left"
	rm -f "$SOCK"
}

@test "fc-qemu: PUT /vsock gives a working hybrid vsock (fc-vsock), removed on exit" {
	need_guest
	local initrd uds="$FCVM_ROOT/run/v.sock" i
	"$BATS_TEST_DIRNAME/guest/vsock-initrd" "$FCVM_TEST_KERNEL" "$BATS_TEST_TMPDIR/vi" >/dev/null ||
		{ echo "could not build the vsock test initrd" >&2; false; }
	initrd="$BATS_TEST_TMPDIR/vi/initrd.img"
	start_fcq
	api PUT /boot-source "{\"kernel_image_path\": \"$FCVM_TEST_KERNEL/vmlinux\", \"initrd_path\": \"$initrd\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off\"}"
	assert_eq "$code" 204 "boot-source"
	api PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$uds\"}"
	assert_eq "$code" 204 "vsock"
	api PUT /actions '{"action_type": "InstanceStart"}'
	assert_eq "$code" 204 "InstanceStart: $body"
	[ -S "$uds" ] || { echo "uds_path not created" >&2; false; }
	for i in $(seq 900); do
		grep -q "vsock-peer: listening" "$BATS_TEST_TMPDIR/console" && break
		sleep 0.1
	done
	run timeout 300 "$BATS_TEST_DIRNAME/guest/vsock-drive" "$uds" echo 5000 65536 2
	assert_eq "$status" 0 "vsock-drive: $output"
	assert_contains "$output" "ok: 2 concurrent echo streams" "echo through fc-qemu's vsock"
	kill -TERM "$FCQ_PID"
	wait "$FCQ_PID"
	FCQ_PID=
	[ ! -e "$uds" ] || { echo "uds_path left behind" >&2; false; }
	no_private_dir
}

@test "fc-qemu: the root drive is /dev/vda and announced like Firecracker (boots to fc-agent)" {
	need_rootfs
	local dir="${FCVM_TEST_BTRFS:-$BATS_TEST_TMPDIR}" disk i
	disk="$dir/fcq-root-$BATS_TEST_NUMBER-$$.ext4"
	cp --reflink=auto --sparse=always "$FCVM_TEST_ROOTFS/rootfs.ext4" "$disk"
	: >"$BATS_TEST_TMPDIR/scratch.img"
	truncate -s 16M "$BATS_TEST_TMPDIR/scratch.img"
	start_fcq
	api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 512}'
	assert_eq "$code" 204 "machine-config"
	# no root= here: fc-qemu adds "root=/dev/vda rw" for the root drive, as Firecracker does
	api PUT /boot-source "{\"kernel_image_path\": \"$FCVM_TEST_KERNEL/vmlinux\", \"initrd_path\": \"$FCVM_TEST_KERNEL/initrd.img\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off\"}"
	assert_eq "$code" 204 "boot-source"
	# a non-root drive put first must still come after the root drive
	api PUT /drives/scratch "{\"drive_id\": \"scratch\", \"path_on_host\": \"$BATS_TEST_TMPDIR/scratch.img\", \"is_root_device\": false, \"is_read_only\": true}"
	assert_eq "$code" 204 "scratch drive"
	api PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$disk\", \"is_root_device\": true, \"is_read_only\": false}"
	assert_eq "$code" 204 "root drive"
	api PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$FCVM_ROOT/run/v.sock\"}"
	assert_eq "$code" 204 "vsock"
	api PUT /actions '{"action_type": "InstanceStart"}'
	assert_eq "$code" 204 "InstanceStart: $body"
	for i in $(seq 1800); do
		grep -q "fc-agent: ready" "$BATS_TEST_TMPDIR/console" && break
		grep -q "fcvm-init: error" "$BATS_TEST_TMPDIR/console" && break
		kill -0 "$FCQ_PID" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "fc-agent: ready" "$BATS_TEST_TMPDIR/console" ||
		{ echo "no 'fc-agent: ready':" >&2; tail -30 "$BATS_TEST_TMPDIR/console" >&2; rm -f "$disk"; false; }
	kill -TERM "$FCQ_PID"
	wait "$FCQ_PID" || true
	FCQ_PID=
	rm -f "$disk"
}

@test "fc-qemu: PUT /network-interfaces attaches QEMU to the tap" {
	need_guest
	command -v ip >/dev/null || skip "iproute2 not installed"
	[ -w /dev/net/tun ] || skip "no /dev/net/tun access"
	TAP="fcq$(($$ % 100000))"
	ip tuntap add "$TAP" mode tap
	ip link set "$TAP" up
	# carrier is up only while a process has the tap open
	assert_eq "$(cat /sys/class/net/$TAP/carrier)" 0 "carrier before start"
	start_fcq
	api PUT /boot-source "{\"kernel_image_path\": \"$FCVM_TEST_KERNEL/vmlinux\", \"initrd_path\": \"$FCVM_TEST_KERNEL/initrd.img\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off\"}"
	assert_eq "$code" 204 "boot-source"
	api PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"$TAP\", \"guest_mac\": \"06:00:ac:10:00:02\", \"mtu\": 1400}"
	assert_eq "$code" 204 "network-interfaces"
	api PUT /actions '{"action_type": "InstanceStart"}'
	assert_eq "$code" 204 "InstanceStart: $body"
	assert_eq "$(cat /sys/class/net/$TAP/carrier)" 1 "QEMU holds the tap"
	kill -TERM "$FCQ_PID"
	wait "$FCQ_PID" || true
	FCQ_PID=
	assert_eq "$(cat /sys/class/net/$TAP/carrier)" 0 "tap released after exit"
}
