#!/usr/bin/env bats
# Startup snapshots (fcvm podman run -d --health-check): the first run of
# a service, once healthy, is snapshotted; a later run of the same VM and
# configuration restores it instead of booting, as its own VM: its own
# name as hostname, fresh randomness, the host's clock, this run's
# environment and arguments (a different configuration is another key).

load helpers
load lib/snapshot
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root startup
	PIDS=()
}

teardown() {
	snap_teardown
}

# svc NAME [OPTIONS...]: a detached service whose health check passes once
# it has written /tmp/ready; prints its id.
svc() {
	local n=$1
	shift
	# shellcheck disable=SC2016
	run_fc 0 --timeout 400 fcvm podman run -d --name "$n" --network none "$@" \
		--health-check 'test -e /tmp/ready' "$IMG" sh -c 'echo "$GREETING $*" > /tmp/said; touch /tmp/ready; exec sleep 86400' svc one two 3>&-
	PIDS+=("$(fc-state get --field pid "$n")")
}

@test "startup snapshot: the second run restores the first's snapshot, with its own identity and this run's configuration" {
	need_snap_qemu
	svc s1 -e GREETING=hello
	assert_eq "$(fc-state get --field process_type s1)" vm "the first run boots"
	run_fc 0 fcvm snapshot ls --json
	local tag; tag=$(jq -r '.[] | select(.tag | startswith("startup-")) | .tag' <<<"$output")
	[ -n "$tag" ] || { echo "no startup snapshot: $output" >&2; false; }
	[ -f "$FCVM_ROOT/startup/${tag#startup-}.json" ]

	svc s2 -e GREETING=hello
	assert_eq "$(fc-state get --field process_type s2)" clone "the second run restores"
	assert_eq "$(fc-state get --field snapshot s2)" "$tag" "from the startup snapshot"
	run_fc 0 --timeout 120 fcvm exec s2 -- cat /tmp/said
	assert_eq "$output" "hello one two" "this run's environment and arguments"
	run_fc 0 --timeout 120 fcvm exec s2 -- cat /proc/sys/kernel/hostname
	assert_eq "$output" s2 "its own name as hostname"
	run_fc 0 --timeout 120 fcvm exec s1 -- cat /proc/sys/kernel/hostname
	local h1=$output
	[ "$h1" != s2 ]
	run_fc 0 --timeout 120 fcvm exec s1 -- cat /proc/sys/kernel/random/uuid
	local u1=$output
	run_fc 0 --timeout 120 fcvm exec s2 -- cat /proc/sys/kernel/random/uuid
	[ "$output" != "$u1" ] || { echo "the same uuid in both: $u1" >&2; false; }
	run_fc 0 --timeout 120 fcvm exec s2 -- head -c 16 /dev/urandom
	local r2=$output
	run_fc 0 --timeout 120 fcvm exec s1 -- head -c 16 /dev/urandom
	[ "$output" != "$r2" ]
	local before after guest
	before=$(date +%s)
	run_fc 0 --timeout 120 fcvm exec --vm s2 -- date +%s
	guest=$output after=$(date +%s)
	[ "$guest" -ge $((before - 1)) ] && [ "$guest" -le $((after + 1)) ] ||
		{ echo "guest clock $guest, host $before..$after" >&2; false; }

	# Another configuration is another key: a cold start, its own snapshot.
	svc s3 -e GREETING=other
	assert_eq "$(fc-state get --field process_type s3)" vm "other env: boots"
	run_fc 0 --timeout 120 fcvm exec s3 -- cat /tmp/said
	assert_eq "$output" "other one two" "with its own environment"
	# --no-snapshot: boots even though a snapshot exists.
	svc s4 -e GREETING=hello --no-snapshot
	assert_eq "$(fc-state get --field process_type s4)" vm "--no-snapshot boots"
	local n; n=$(fcvm snapshot ls --json | jq '[.[] | select(.tag | startswith("startup-"))] | length')
	assert_eq "$n" 2 "one snapshot per key"

	# gc: a snapshot is kept while its inputs exist and a clone uses it;
	# once its rootfs is gone (as after a new rootfs build) it goes.
	run_fc 0 fcvm gc -n
	[[ "$output" != *startup-snapshot* ]] || { echo "gc would remove a usable one: $output" >&2; false; }
	for s in s1 s2 s3 s4; do run_fc 0 --timeout 60 fcvm stop "$s"; done
	local rec="$FCVM_ROOT/startup/${tag#startup-}.json"
	jq '.rootfs = "/nonexistent/rootfs"' "$rec" > "$rec.new" && mv "$rec.new" "$rec"
	run_fc 0 fcvm gc
	assert_contains "$output" "removed startup-snapshot $tag (its kernel, rootfs or image is gone)" "gc says what it removed"
	[ "$(grep -c startup-snapshot <<<"$output")" = 1 ] || { echo "gc removed more: $output" >&2; false; }
	[ ! -e "$FCVM_ROOT/snapshots/$tag" ] && [ ! -e "$rec" ]
	run_fc 0 fcvm snapshot ls --json
	assert_eq "$(jq '[.[] | select(.tag | startswith("startup-"))] | length' <<<"$output")" 1 "the other stays"

	# A startup snapshot that cannot be restored costs only the speed.
	local other; other=$(jq -r '.[] | select(.tag | startswith("startup-")) | .tag' <<<"$output")
	truncate -s 4096 "$FCVM_ROOT/snapshots/$other/memory"
	svc s5 -e GREETING=other
	assert_contains "$output" "startup snapshot '$other' could not be restored: booting" "says so"
	assert_eq "$(fc-state get --field process_type s5)" vm "and boots"
	run_fc 0 --timeout 120 fcvm exec s5 -- cat /tmp/said
	assert_eq "$output" "other one two" "the service runs"
}

@test "startup snapshot: --health-check needs -d; a check that never passes fails the run and leaves nothing" {
	run_fc 125 fcvm podman run --health-check true "$IMG" true
	assert_contains "$output" "--health-check is for a detached service (-d)" "usage"
	need_snap_qemu
	run_fc 125 --timeout 400 fcvm podman run -d --name bad --network none --timeout 40 \
		--health-check false "$IMG" sleep 86400 3>&-
	assert_contains "$output" "did not pass --health-check within 40s" "says why"
	assert_eq "$(fc-state ls --json | jq 'length')" 0 "no VM left"
	assert_eq "$(ls "$FCVM_ROOT/snapshots" 2>/dev/null | wc -l)" 0 "no snapshot taken"
}
