#!/usr/bin/env bats
# fc-boot: argument checks, failure paths, and real boots under fc-qemu.

load helpers

setup() {
	fc_setup_root
	export FCVM_API_TRACE="$BATS_TEST_TMPDIR/api-trace.jsonl"
}

teardown() {
	leak_check
}

kernel_args() {
	echo --kernel "$FCVM_TEST_KERNEL/vmlinux" --initrd "$FCVM_TEST_KERNEL/initrd.img"
}

# A private writable copy of the rootfs fixture (reflink where possible).
rootfs_copy() {
	cp --reflink=auto --sparse=always "$FCVM_TEST_ROOTFS/rootfs.ext4" "$BATS_TEST_TMPDIR/rootfs.ext4"
	echo "$BATS_TEST_TMPDIR/rootfs.ext4"
}


count_state() {
	find "$FCVM_ROOT/state" -name '*.json' 2>/dev/null | wc -l
}

@test "fc-boot: -h prints usage and exits 0" {
	run_fc 0 fc-boot -h
	assert_contains "$output" "usage: fc-boot --name NAME" "usage text on -h"
}

@test "fc-boot: missing --name is a usage error" {
	run_fc 2 fc-boot
	assert_contains "$output" "--name is required" "names the missing option"
}

@test "fc-boot: invalid sizes are rejected with the allowed range" {
	run_fc 2 fc-boot --name x --cpus 0
	assert_contains "$output" "invalid --cpus '0': must be a number from 1 to 32" "cpus range"
	run_fc 2 fc-boot --name x --memory 12abc
	assert_contains "$output" "invalid --memory (MiB) '12abc'" "memory must be a number"
	run_fc 2 fc-boot --name '../evil'
	assert_contains "$output" "invalid --name" "names cannot escape the data root"
	run_fc 2 fc-boot --name x --id a_b
	assert_contains "$output" "invalid --id 'a_b'" "ids are what Firecracker accepts"
}

@test "fc-boot: missing kernel names the fix and leaves nothing behind" {
	run_fc 1 fc-boot --name x
	assert_contains "$output" "kernel '$FCVM_ROOT/kernels/default/vmlinux' not found: run 'fc-setup kernel'" "says how to get a kernel"
	assert_eq "$(count_state)" 0 "no state record"
	assert_eq "$(ls "$FCVM_ROOT/run" 2>/dev/null | wc -l)" 0 "no run directory"
}

@test "fc-boot: missing rootfs or drive file is reported" {
	"$BATS_TEST_DIRNAME/lib/tiny-elf" "$BATS_TEST_TMPDIR/k"
	run_fc 1 fc-boot --name x --kernel "$BATS_TEST_TMPDIR/k" --rootfs /nonexistent/root.ext4
	assert_contains "$output" "rootfs '/nonexistent/root.ext4' not found" "rootfs named"
	run_fc 1 fc-boot --name x --kernel "$BATS_TEST_TMPDIR/k" --drive /nonexistent/d.img:ro
	assert_contains "$output" "drive '/nonexistent/d.img' not found" "drive named, :ro stripped"
}

@test "fc-boot: an unknown VMM path is reported" {
	"$BATS_TEST_DIRNAME/lib/tiny-elf" "$BATS_TEST_TMPDIR/k"
	FCVM_VMM=/nonexistent/firecracker run_fc 1 fc-boot --name x --kernel "$BATS_TEST_TMPDIR/k"
	assert_contains "$output" "VMM '/nonexistent/firecracker' (from FCVM_VMM) not found" "names FCVM_VMM"
	assert_eq "$(count_state)" 0 "no state record"
}

@test "fc-boot: a VMM dying during configuration is reported and cleaned up" {
	"$BATS_TEST_DIRNAME/lib/tiny-elf" "$BATS_TEST_TMPDIR/k"
	FCVM_VMM="$BATS_TEST_DIRNAME/lib/dying-vmm" run_fc 1 fc-boot --name x --kernel "$BATS_TEST_TMPDIR/k"
	assert_contains "$output" "exited during configuration" "says the VMM died"
	assert_contains "$output" "simulated crash" "quotes the VMM's last words"
	assert_eq "$(count_state)" 0 "no state record"
	assert_eq "$(find "$FCVM_ROOT/run" -mindepth 1 | wc -l)" 0 "no sockets or run dirs"
}

@test "fc-boot: boots a guest under fc-qemu; guest poweroff ends fc-boot with 0" {
	need_guest
	FCVM_VMM=fc-qemu run_fc 0 --timeout 90 fc-boot --name noroot $(kernel_args) \
		--console "$BATS_TEST_TMPDIR/console.log"
	grep -q "fcvm-init: ready (no root)" "$BATS_TEST_TMPDIR/console.log" ||
		{ cat "$BATS_TEST_TMPDIR/console.log" >&2; false; }
	assert_eq "$(count_state)" 0 "state removed after the guest powered off"
}

@test "fc-boot: every API request validates against Firecracker's spec" {
	need_guest
	FCVM_VMM=fc-qemu run_fc 0 --timeout 90 fc-boot --name contract $(kernel_args) \
		--drive "$FCVM_TEST_KERNEL/initrd.img:ro" --console "$BATS_TEST_TMPDIR/console.log"
	[ -s "$FCVM_API_TRACE" ]
	local n=0
	while IFS= read -r line; do
		method=$(jq -r .method <<<"$line"); path=$(jq -r .path <<<"$line")
		jq -c .body <<<"$line" > "$BATS_TEST_TMPDIR/body.json"
		[ "$(jq -r .body <<<"$line")" = null ] && continue
		run "$BATS_TEST_DIRNAME/contract/validate-request" "$method" "$path" "$BATS_TEST_TMPDIR/body.json"
		[ "$status" -eq 0 ] || { echo "invalid request: $line: $output" >&2; false; }
		n=$((n + 1))
	done < "$FCVM_API_TRACE"
	[ "$n" -ge 5 ] || { echo "only $n requests traced" >&2; false; }
}

@test "fc-boot: rootfs guest reaches readiness; pause/resume; SIGTERM cleans up" {
	need_rootfs
	local rootfs; rootfs=$(rootfs_copy)
	FCVM_VMM=fc-qemu fc-boot --name live $(kernel_args) --rootfs "$rootfs" \
		--console "$BATS_TEST_TMPDIR/console.log" 3>&- &
	local pid=$!
	wait_line "$BATS_TEST_TMPDIR/console.log" "fc-agent: ready" 60 "$pid"
	local rec; rec=$(cat "$FCVM_ROOT"/state/*.json)
	assert_eq "$(jq -r .pid <<<"$rec")" "$pid" "state records fc-boot's own pid"
	assert_eq "$(jq -r .status <<<"$rec")" running "status is running"
	local api; api=$(jq -r .sockets.api <<<"$rec")
	curl -sf --unix-socket "$api" -X PATCH -d '{"state":"Paused"}' http://localhost/vm
	assert_eq "$(curl -sf --unix-socket "$api" http://localhost/ | jq -r .state)" Paused "paused"
	curl -sf --unix-socket "$api" -X PATCH -d '{"state":"Resumed"}' http://localhost/vm
	assert_eq "$(curl -sf --unix-socket "$api" http://localhost/ | jq -r .state)" Running "resumed"
	# A second VM may not take the same name.
	FCVM_VMM=fc-qemu run_fc 1 fc-boot --name live $(kernel_args)
	assert_contains "$output" "name 'live' is already used" "duplicate name refused"
	kill -TERM "$pid"
	wait "$pid" || true
	assert_eq "$(count_state)" 0 "state removed"
	assert_eq "$(leaked_procs)" "" "no VMM left"
}

@test "fc-boot: kill -9 of fc-boot leaves no QEMU, socket or state" {
	need_guest
	local rootfs=""
	[ -n "$FCVM_TEST_ROOTFS" ] && rootfs="--rootfs $(rootfs_copy)"
	# Through a pipe, as scripts use it: --detach must not keep the pipe open.
	local pid
	pid=$(FCVM_VMM=fc-qemu timeout 90 fc-boot --name victim $(kernel_args) $rootfs --detach 3>&-)
	[ -n "$pid" ] && kill -0 "$pid"
	[ "$(count_state)" -eq 1 ]
	kill -9 "$pid"
	local i
	for ((i = 0; i < 50; i++)); do
		[ -z "$(leaked_procs)" ] && [ "$(count_state)" -eq 0 ] && break
		sleep 0.1
	done
	assert_eq "$(leaked_procs)" "" "no QEMU or fc-qemu left"
	assert_eq "$(count_state)" 0 "janitor removed the state"
	assert_eq "$(find "$FCVM_ROOT/run" -type s | wc -l)" 0 "no sockets left"
}

@test "fc-boot: boots under real Firecracker (where KVM runs guests)" {
	need_guest
	need_firecracker
	FCVM_VMM=firecracker run_fc 0 --timeout 90 fc-boot --name realfc $(kernel_args) \
		--console "$BATS_TEST_TMPDIR/console.log"
	grep -q "fcvm-init: ready (no root)" "$BATS_TEST_TMPDIR/console.log"
}
