#!/usr/bin/env bats
# fc-vsock: Firecracker's hybrid vsock host side as a vhost-user-vsock back-end,
# end to end against a real guest kernel under QEMU (TCG).
#
# Fixture: FCVM_TEST_KERNEL (from tests/run-tests: fc-setup's kernels/<hash>
# dir with vmlinux + initrd.img), or FCVM_TEST_KERNEL_DIR (any dir with vmlinux
# and the vsock modules below it, e.g. an unpacked kernel .deb). The guest runs
# tests/guest/vsock-peer from an initrd built by tests/guest/vsock-initrd; the
# host side is driven by tests/guest/vsock-drive (python3).

load helpers

GUEST_PORT=5000

setup_file() {
	local k="${FCVM_TEST_KERNEL:-${FCVM_TEST_KERNEL_DIR:-}}"

	export VSOCK_KDIR="$k" VSOCK_INITRD=""
	[ -n "$k" ] && [ -f "$k/vmlinux" ] || return 0
	command -v qemu-system-x86_64 >/dev/null || return 0
	VSOCK_INITRD=$("$BATS_TEST_DIRNAME/guest/vsock-initrd" "$k" "$BATS_FILE_TMPDIR") || VSOCK_INITRD=""
	export VSOCK_INITRD
}

setup() {
	fc_setup_root
	DRIVE="$BATS_TEST_DIRNAME/guest/vsock-drive"
	RUN="$FCVM_ROOT/run/vm"
	mkdir -p "$RUN"
	UDS="$RUN/v.sock"
	VU="$RUN/vu.sock"
	VSOCK_PID="" QEMU_PID=""
}

teardown() {
	[ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
	[ -n "$VSOCK_PID" ] && kill "$VSOCK_PID" 2>/dev/null && wait "$VSOCK_PID" 2>/dev/null
	rm -f "${RUN:-/nonexistent}/qmp.sock"
	leak_check
}

need_vsock_guest() {
	local why=""
	command -v python3 >/dev/null || why="python3 not installed"
	command -v qemu-system-x86_64 >/dev/null || why="qemu-system-x86_64 not installed"
	[ -n "$VSOCK_KDIR" ] && [ -f "$VSOCK_KDIR/vmlinux" ] ||
		why="${why:-no kernel fixture (FCVM_TEST_KERNEL or FCVM_TEST_KERNEL_DIR)}"
	[ -n "$why" ] || [ -n "$VSOCK_INITRD" ] || why="could not build the vsock initrd from $VSOCK_KDIR"
	if [ -n "$why" ]; then
		[ -n "${CI:-}" ] && { echo "CI must not skip: $why" >&2; return 1; }
		skip "$why"
	fi
}

# Start fc-vsock (checking its ready line) and nothing else.
start_vsock() {
	mkfifo "$RUN/ready"
	fc-vsock --vhost-socket "$VU" --uds-path "$UDS" --cid 3 --ready-fd 4 \
		4>"$RUN/ready" 2>"$RUN/fc-vsock.log" 3>&- &
	VSOCK_PID=$!
	local line=""
	read -r -t 10 line <"$RUN/ready" || true
	rm -f "$RUN/ready"
	assert_eq "$line" "ready" "fc-vsock writes 'ready' to --ready-fd once listening"
	[ -S "$UDS" ] && [ -S "$VU" ]
}

start_vm() {
	local khz i
	start_vsock
	khz=$(awk '/cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
	timeout 900 qemu-system-x86_64 -M microvm -accel tcg -cpu max -nodefaults -no-reboot \
		-m 256 -smp 2 -display none \
		-object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem \
		-global virtio-mmio.force-legacy=false \
		-kernel "$VSOCK_KDIR/vmlinux" -initrd "$VSOCK_INITRD" \
		-append "console=ttyS0 reboot=k panic=1 pci=off quiet tsc_early_khz=$khz" \
		-serial "file:$RUN/console.log" -qmp "unix:$RUN/qmp.sock,server=on,wait=off" \
		-chardev "socket,id=vsock0,path=$VU" -device vhost-user-vsock-device,chardev=vsock0 \
		>"$RUN/qemu.log" 2>&1 3>&- &
	QEMU_PID=$!
	wait_line "$RUN/console.log" "vsock-peer: listening" 120 "$QEMU_PID" ||
		{ cat "$RUN/qemu.log" "$RUN/fc-vsock.log" >&2; return 1; }
}

# Stop QEMU; fc-vsock must then exit 0 by itself and remove its sockets.
stop_vm() {
	kill "$QEMU_PID"
	wait "$QEMU_PID" || true
	QEMU_PID=""
	rm -f "$RUN/qmp.sock"	# QEMU's own; not what this test checks
	local rc=0
	if ! timeout 20 tail --pid="$VSOCK_PID" -f /dev/null; then
		echo "fc-vsock still running 20 s after QEMU exited" >&2
		cat "$RUN/fc-vsock.log" >&2
		return 1
	fi
	wait "$VSOCK_PID" || rc=$?
	VSOCK_PID=""
	assert_eq "$rc" 0 "fc-vsock exits 0 when the front-end disconnects"
	[ ! -e "$UDS" ] || { echo "uds_path left behind" >&2; return 1; }
	[ ! -e "$VU" ] || { echo "vhost-user socket left behind" >&2; return 1; }
}

drive() {
	run timeout 600 "$DRIVE" "$UDS" "$@"
	echo "$output"
	[ "$status" -eq 0 ] || { cat "$RUN/fc-vsock.log" >&2; return 1; }
}

nfds() { ls "/proc/$VSOCK_PID/fd" | wc -l; }

@test "fc-vsock: usage, bad arguments, no leftovers" {
	run_fc 0 fc-vsock -h
	assert_contains "$output" "usage: fc-vsock --vhost-socket PATH" "-h prints the synopsis"
	run_fc 2 fc-vsock --uds-path "$UDS" --cid 3
	assert_contains "$output" "required" "missing --vhost-socket is a usage error"
	run_fc 2 fc-vsock --vhost-socket "$VU" --uds-path "$UDS" --cid 2
	assert_contains "$output" "invalid --cid '2'" "cid 2 (the host) is refused"
	run_fc 2 fc-vsock --vhost-socket "$VU" --uds-path "$UDS" --cid 3x
	touch "$UDS"
	run_fc 1 fc-vsock --vhost-socket "$VU" --uds-path "$UDS" --cid 3
	assert_contains "$output" "is not a socket" "an existing non-socket uds_path is not clobbered"
	[ -f "$UDS" ] && [ ! -e "$VU" ]
	rm -f "$UDS"
}

@test "fc-vsock: SIGTERM before any front-end removes both sockets, exit 0" {
	start_vsock
	kill -TERM "$VSOCK_PID"
	wait "$VSOCK_PID"
	local rc=$?
	VSOCK_PID=""
	assert_eq "$rc" 0 "exit status after SIGTERM"
	[ ! -e "$UDS" ] && [ ! -e "$VU" ]
}

@test "fc-vsock: protocol checks against a fake front-end and guest (no VM)" {
	command -v python3 >/dev/null || skip "python3 not installed"
	start_vsock
	run timeout 60 "$BATS_TEST_DIRNAME/guest/vu-frontend" "$VU" "$UDS" 3
	echo "$output"
	[ "$status" -eq 0 ] || { cat "$RUN/fc-vsock.log" >&2; return 1; }
	assert_contains "$output" "malformed requests refused" "bad vhost-user requests refused"
	assert_contains "$output" "REQUEST to host port without listener answered with RST" "RST"
	assert_contains "$output" "guest that overruns the credit is reset" "credit enforced"
	assert_contains "$output" "early bytes kept, half-close, shutdown, RST" "host CONNECT life cycle"
	assert_contains "$output" "malicious descriptors dropped, device keeps working" "bad rings"
	local rc=0
	timeout 20 tail --pid="$VSOCK_PID" -f /dev/null
	wait "$VSOCK_PID" || rc=$?
	VSOCK_PID=""
	assert_eq "$rc" 0 "fc-vsock exits 0 when the front-end disconnects"
	[ ! -e "$UDS" ] && [ ! -e "$VU" ]
}

@test "vsock: host->guest CONNECT, echo and 8 MiB each way with sha256" {
	need_vsock_guest
	start_vm
	drive echo $GUEST_PORT 1048576 1
	assert_contains "$output" "ok: 1 concurrent echo streams" "echo over CONNECT"
	drive sink $GUEST_PORT $((8 << 20))
	assert_contains "$output" "guest sha256 matches" "8 MiB host->guest"
	drive source $GUEST_PORT $((8 << 20))
	assert_contains "$output" "sha256 matches the guest's" "8 MiB guest->host"
	stop_vm
}

@test "vsock: guest->host connection arrives on the <uds>_P listener" {
	need_vsock_guest
	start_vm
	drive dial $GUEST_PORT 6000 $((4 << 20))
	assert_contains "$output" "guest-initiated connection to host port 6000 echoes" "guest connect + echo"
	assert_contains "$output" "guest connect to a host port nobody listens on fails" "no listener: RST"
	stop_vm
}

@test "vsock: 32 concurrent connections, 8 MiB each, sha256 both ways; a stalled reader blocks no one" {
	need_vsock_guest
	start_vm
	drive echo $GUEST_PORT $((8 << 20)) 32
	assert_contains "$output" "ok: 32 concurrent echo streams of 8388608 bytes" "32 x 8 MiB echoed intact"
	drive echo $GUEST_PORT 262144 100
	assert_contains "$output" "ok: 100 concurrent echo streams" "100 connections at once"
	drive slow $GUEST_PORT
	assert_contains "$output" "echo completes while another connection's reader stalls" "no head-of-line blocking"
	assert_contains "$output" "stalled stream then delivers all" "stalled stream intact"
	stop_vm
}

@test "vsock: peer resets from either side free the connection" {
	need_vsock_guest
	start_vm
	local base i n
	drive echo $GUEST_PORT 1024 1
	base=$(nfds)
	drive reset-guest $GUEST_PORT
	assert_contains "$output" "guest close seen by host as EOF" "guest close"
	drive reset-host $GUEST_PORT
	assert_contains "$output" "host closed mid-transfer" "host close"
	# Connection state (one fd each) must go away once the reset handshakes end.
	for i in $(seq 60); do
		n=$(nfds)
		[ "$n" -le "$base" ] && break
		sleep 0.5
	done
	assert_eq "$n" "$base" "fc-vsock holds no fd of reset connections"
	drive echo $GUEST_PORT 65536 4
	assert_contains "$output" "ok: 4 concurrent echo streams" "still works after resets"
	stop_vm
}

@test "vsock: CONNECT to an unused port and garbage CONNECT lines fail cleanly" {
	need_vsock_guest
	start_vm
	drive refused 5001
	assert_contains "$output" "closed without OK" "unused guest port"
	drive garbage $GUEST_PORT
	assert_contains "$output" "malformed CONNECT lines rejected, a good one still works" "garbage"
	stop_vm
}

@test "vsock: a connection survives pause/resume of the VM" {
	need_vsock_guest
	start_vm
	drive pause $GUEST_PORT "$RUN/qmp.sock"
	assert_contains "$output" "survives pause/resume" "stream across QMP stop/cont"
	stop_vm
}
