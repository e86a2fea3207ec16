#!/usr/bin/env bats
# Contract: fc-qemu's answers against Firecracker's API spec
# ($FCVM_SHARED/firecracker/firecracker-v1.16.1.yaml), and the request
# validator (tests/contract/validate-request) the fc-boot tests use.

load helpers

CONTRACT="$BATS_TEST_DIRNAME/contract"

setup() {
	fc_setup_root
	mkdir -p "$FCVM_ROOT/run"
	SOCK="$FCVM_ROOT/run/api.sock"
	FCQ_PID=
	: "${FCVM_SHARED:=$BATS_TEST_DIRNAME/../../shared}"
	export FCVM_SHARED
	[ -f "$FCVM_SHARED/firecracker/firecracker-v1.16.1.yaml" ] ||
		{ echo "Firecracker API spec not found under FCVM_SHARED=$FCVM_SHARED" >&2; return 1; }
}

teardown() {
	if [ -n "$FCQ_PID" ] && kill -0 "$FCQ_PID" 2>/dev/null; then
		kill -TERM "$FCQ_PID"
		wait "$FCQ_PID" || true
	fi
	leak_check
}

start_fcq() {
	local i
	fc-qemu --api-sock "$SOCK" </dev/null >"$BATS_TEST_TMPDIR/console" 2>"$BATS_TEST_TMPDIR/stderr" 3>&- &
	FCQ_PID=$!
	for i in $(seq 100); do
		[ -S "$SOCK" ] && return 0
		sleep 0.1
	done
	return 1
}

@test "contract: validate-request accepts valid and rejects invalid bodies" {
	local b="$BATS_TEST_TMPDIR/body.json"
	echo '{"vcpu_count": 2, "mem_size_mib": 256}' >"$b"
	run_fc 0 "$CONTRACT/validate-request" PUT /machine-config "$b"
	echo '{"vcpu_count": 0, "mem_size_mib": 256}' >"$b"
	run_fc 1 "$CONTRACT/validate-request" PUT /machine-config "$b"
	assert_contains "$output" "minimum" "minimum enforced"
	echo '{"kernel_image_path": "/k", "surprise": true}' >"$b"
	run_fc 1 "$CONTRACT/validate-request" PUT /boot-source "$b"
	assert_contains "$output" "unknown property 'surprise'" "unknown property refused"
	echo '{"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": "yes"}' >"$b"
	run_fc 1 "$CONTRACT/validate-request" PUT /drives/rootfs "$b"
	assert_contains "$output" "expected boolean" "type checked"
	echo '{"action_type": "Reboot"}' >"$b"
	run_fc 1 "$CONTRACT/validate-request" PUT /actions "$b"
	assert_contains "$output" "is not one of" "enum checked"
	: >"$b"
	run_fc 1 "$CONTRACT/validate-request" PUT /actions "$b"
	assert_contains "$output" "body is required" "missing body"
	run_fc 0 "$CONTRACT/validate-request" GET / "$b"
	run_fc 1 "$CONTRACT/validate-request" PUT /nonexistent "$b"
	printf '%s\n' '{"method": "PATCH", "path": "/vm", "body": {"state": "Paused"}}' \
		'{"method": "PUT", "path": "/vsock", "body": "{\"guest_cid\": 3, \"uds_path\": \"/v\"}"}' \
		>"$BATS_TEST_TMPDIR/trace"
	run_fc 0 "$CONTRACT/validate-request" --trace "$BATS_TEST_TMPDIR/trace"
	echo '{"method": "PATCH", "path": "/vm", "body": {"state": "Stopped"}}' >>"$BATS_TEST_TMPDIR/trace"
	run_fc 1 "$CONTRACT/validate-request" --trace "$BATS_TEST_TMPDIR/trace"
	assert_contains "$output" "3 requests, 1 invalid" "trace summary"
	run_fc 2 "$CONTRACT/validate-request" PUT
}

@test "contract: fc-qemu status codes and bodies match the spec (no guest)" {
	start_fcq
	: >"$BATS_TEST_TMPDIR/file.img"
	run_fc 0 "$CONTRACT/check-fc-qemu" "$SOCK" "$BATS_TEST_TMPDIR/file.img"
	assert_contains "$output" "GET / " "checked GET /"
	[[ "$output" != *FAIL* ]]
}

@test "contract: fc-qemu post-boot answers match the spec" {
	need_guest
	start_fcq
	run_fc 0 --timeout 300 "$CONTRACT/check-fc-qemu" --boot "$SOCK" "$FCVM_TEST_KERNEL"
	assert_contains "$output" "PATCH /vm" "checked PATCH /vm"
}
