#!/usr/bin/env bats
# Startup snapshots. A service (fcvm podman run -d --health-check): its
# first run, once healthy, is snapshotted; a later run of the same VM and
# configuration restores it instead of booting, as its own VM: its own
# name as hostname, fresh randomness, the host's clock, this run's
# environment and arguments (a different configuration is another key).
# A foreground run: its first run's VM is snapshotted before the plan (the
# image ready, nothing run); a later run with the same VM and image
# restores it and sends its own plan.

load helpers
load lib/snapshot
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root startup
	export FCVM_STARTUP_SNAPSHOTS=1
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

# fg OPTIONS... -- ARGS...: a foreground 'fcvm podman run --rm' of $IMG;
# its output in $output.
fg() {
	local -a o=()
	while [ "$1" != -- ]; do o+=("$1"); shift; done
	shift
	run_fc "${FG_RC:-0}" --timeout 400 fcvm podman run --rm "${o[@]}" "$IMG" "$@"
}

# One line per fact the container sees: its env and args, hostname, the
# kernel's boot id, a fresh uuid, random bytes, the clock.
SEE='echo "$X $*"; hostname; cat /proc/sys/kernel/random/boot_id; cat /proc/sys/kernel/random/uuid; od -An -N16 -tx1 /dev/urandom | tr -d " "; date +%s'

# seen NAME OPTIONS... -- ARGS...: fg of sh -c "$SEE" ARGS (or $SCRIPT,
# which prints $SCRIPT_LINES lines) named NAME, the container held (reading
# its stdin) once it has printed, until its VM's record was read: $kind is
# its process type ("vm": booted, "clone": restored), $lines its output.
seen() {
	local n=$1 pid rc=0
	shift
	local -a o=()
	while [ "$1" != -- ]; do o+=("$1"); shift; done
	shift
	local in="$BATS_TEST_TMPDIR/in-$n" out="$BATS_TEST_TMPDIR/out-$n"
	mkfifo "$in"
	timeout 400 fcvm podman run --rm -i --name "$n" "${o[@]}" "$IMG" sh -c "${SCRIPT:-$SEE}; read x" "$@" \
		<"$in" >"$out" 2>"$BATS_TEST_TMPDIR/err-$n" &
	pid=$!
	exec 7>"$in"
	wait_until 400 lines_over "$out" $((${SCRIPT_LINES:-6} - 1)) || { cat "$BATS_TEST_TMPDIR/err-$n" >&2; exec 7>&-; false; }
	kind=$(fc-state get --field process_type "$n")
	echo go >&7
	exec 7>&-
	wait "$pid" || rc=$?
	assert_eq "$rc" 0 "$n: exit status (stderr: $(cat "$BATS_TEST_TMPDIR/err-$n"))"
	mapfile -t lines < "$out"
}

@test "startup snapshot, foreground: the second run restores the VM the first booted, with this run's plan, identity and clock" {
	need_snap_qemu
	seen r1 --network none -- s first
	assert_eq "$kind" vm "the first run boots"
	assert_eq "${lines[0]}" " first" "the first run's container ran"
	run_fc 0 fcvm snapshot ls --json
	local tag; tag=$(jq -r '.[] | select(.tag | startswith("startup-")) | .tag' <<<"$output")
	[ -n "$tag" ] || { echo "no startup snapshot: $output" >&2; false; }
	assert_eq "$(jq -r .network "$FCVM_ROOT/startup/${tag#startup-}.json")" null "no guest network to keep"

	local before; before=$(date +%s)
	seen r2 --network none -e X=two --hostname h2 -- s a b
	local after; after=$(date +%s)
	assert_eq "$kind" clone "the second run restores"
	assert_eq "${lines[0]}" "two a b" "this run's environment and arguments"
	assert_eq "${lines[1]}" h2 "this run's --hostname"
	local u2=${lines[3]} r2=${lines[4]} b2=${lines[2]}
	[ "${lines[5]}" -ge $((before - 1)) ] && [ "${lines[5]}" -le $((after + 1)) ] ||
		{ echo "guest clock ${lines[5]}, host $before..$after" >&2; false; }

	seen r3 --network none -e X=three -- s c
	assert_eq "$kind" clone "and the next"
	assert_eq "${lines[0]}" "three c" "the next run's own plan"
	[ "${lines[1]}" != h2 ]
	[ "${lines[2]}" != "$b2" ] || { echo "the same boot id twice: $b2" >&2; false; }
	[ "${lines[3]}" != "$u2" ] || { echo "the same uuid twice: $u2" >&2; false; }
	[ "${lines[4]}" != "$r2" ] || { echo "the same random bytes twice: $r2" >&2; false; }

	FG_RC=7 fg --network none -- sh -c 'exit 7'
	seen r4 --network none --no-snapshot -- s
	assert_eq "$kind" vm "--no-snapshot boots"
	seen r5 --network none -m 768 -- s
	assert_eq "$kind" vm "other memory: another VM, another key"
	local n; n=$(fcvm snapshot ls --json | jq '[.[] | select(.tag | startswith("startup-"))] | length')
	assert_eq "$n" 2 "one snapshot per key"
	assert_eq "$(fc-state ls --json | jq length)" 0 "no VM left"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" | wc -l)" 0 "no VM directory left"
}

@test "startup snapshot, foreground: a restored VM gets the guest network of its snapshot, behind its own namespace" {
	need_snap_qemu
	[ "$(id -u)" = 0 ] || skip "bridged networking needs root"
	fg --network bridged -- true
	local rec; rec=$(echo "$FCVM_ROOT"/startup/*.json)
	local gw; gw=$(jq -r .network.gateway "$rec")
	[ -n "$gw" ] && [ "$gw" != null ] || { echo "no network in $(cat "$rec")" >&2; false; }
	# a refused connection is an answer: the gateway is there
	SCRIPT='ip -4 route show default; nc -w 5 '"$gw"' 1 </dev/null 2>&1; echo done' \
		SCRIPT_LINES=3 seen n2 --network bridged -- s
	assert_eq "$kind" clone "restored"
	assert_contains "${lines[0]}" "via $gw" "the snapshot's gateway is the route"
	assert_contains "${lines[1]}" "Connection refused" "and answers (the clone's namespace)"
	assert_eq "$(fc-state ls --json | jq length)" 0 "no VM left"
	run_fc 0 fcvm gc --dry-run	# (an image no VM runs now is fc-state gc's to remove)
	assert_eq "$(grep -v '^would remove image ' <<<"$output")" "" "no network, snapshot or VM left for gc"
}

@test "startup snapshot, foreground: a VMM that cannot snapshot is said once, later runs boot without trying, gc clears the record" {
	local stock; stock=$(command -v qemu-system-x86_64) || skip "no qemu-system-x86_64 on PATH"
	export FCVM_QEMU=$stock	# Debian's QEMU: no migration with vhost-user-vsock
	fg --network none -- echo one
	assert_contains "$output" "no startup snapshot taken" "said on the first run"
	assert_contains "$output" "fc-setup qemu" "with what to do about it"
	assert_contains "$output" one "and the container ran"
	local rec; rec=$(echo "$FCVM_ROOT"/startup/*.json)
	jq -e '.failed | length > 0' "$rec" >/dev/null || { echo "no reason kept: $(cat "$rec")" >&2; false; }
	fg --network none -- echo two
	assert_eq "$output" two "the next run boots without trying (or saying) again"
	run_fc 0 fcvm gc
	assert_contains "$output" "startup-snapshot startup-" "gc removes the record"
	[ ! -e "$rec" ]
}
