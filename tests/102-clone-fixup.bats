#!/usr/bin/env bats
# The clone fix-up (fc-clone -> fc-agent, MSG_CLONE): clones of one snapshot
# each carry their own name as hostname, in the guest and in the running
# container; their kernel RNGs differ right after the restore (a uuid and
# /dev/urandom bytes); their clock is the host's although the snapshot's
# clock is seconds behind. The source keeps its own. A fix-up the guest
# cannot apply fails the clone with the guest's reason, leaving nothing.

load helpers
load lib/snapshot
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root fixup
	PIDS=()
}

teardown() {
	snap_teardown
}

# in_vm CLONE CMD: run CMD in the guest OS of CLONE (not the container).
in_vm() {
	local c=$1
	shift
	run_fc 0 --timeout 120 fc-exec --name "$c" --vm -- sh -c "$*"
}

@test "clone fix-up: own hostname (guest and container), own RNG, the host's clock" {
	need_snap_qemu
	start_source
	run_fc 0 --timeout 300 fc-snap create --vm src --tag t1
	# The snapshot's guest clock stopped here: a clone that is not fixed
	# up would be at least this far behind the host.
	sleep 4

	local c t0 t1 g
	declare -A uuid rnd
	for c in c1 c2; do
		run_fc 0 --timeout 300 fc-clone -v --snapshot t1 --name "$c" --detach 3>&-
		PIDS+=("$(fc-state get --field pid "$c")")
		assert_contains "$output" "clone fix-up: hostname '$c'" "$c: fc-clone reports the fix-up"
		assert_contains "$output" "RNG reseeded" "$c: the guest's CRNG was reseeded at once"
		# At once: the guest's clock (the host's, within a second, on
		# either side of the exec; measured first because the guest's
		# clocksource under TCG, refined-jiffies, falls behind under
		# load) and the first reads of its RNG after the restore.
		t0=$(date +%s)
		in_vm "$c" 'date +%s; cat /proc/sys/kernel/random/uuid; head -c16 /dev/urandom | od -An -tx1 | tr -d " \n"'
		t1=$(date +%s)
		g=$(sed -n 1p <<<"$output")
		uuid[$c]=$(sed -n 2p <<<"$output")
		rnd[$c]=$(sed -n 3p <<<"$output")
		[[ "$g" =~ ^[0-9]+$ ]] && [ -n "${uuid[$c]}" ] && [ ${#rnd[$c]} = 32 ] ||
			{ echo "$c: no date, uuid or random bytes: $output" >&2; false; }
		if [ "$g" -lt $((t0 - 1)) ] || [ "$g" -gt $((t1 + 1)) ]; then
			echo "$c: guest clock $g, host $t0..$t1 (the snapshot's clock is 4 s behind)" >&2
			false
		fi
	done
	[ "${uuid[c1]}" != "${uuid[c2]}" ] || { echo "both clones drew uuid ${uuid[c1]}" >&2; false; }
	[ "${rnd[c1]}" != "${rnd[c2]}" ] || { echo "both clones read ${rnd[c1]} from /dev/urandom" >&2; false; }

	for c in c1 c2; do
		in_vm "$c" 'cat /proc/sys/kernel/hostname'
		assert_eq "$output" "$c" "$c: the guest's hostname is the clone's name"
		run_fc 0 --timeout 120 fc-exec --name "$c" -- cat /proc/sys/kernel/hostname
		assert_eq "$output" "$c" "$c: the container's hostname too"
		run_fc 0 --timeout 120 fc-exec --name "$c" -- sh -c 'kill -0 $(cat /tmp/bgpid) && echo alive'
		assert_eq "$output" alive "$c: the source's process still runs in the container"
	done

	in_vm src 'cat /proc/sys/kernel/hostname'
	assert_eq "$output" "$SRC_ID" "the source keeps its hostname"
}

@test "clone fix-up: a fix-up the guest cannot apply fails the clone clearly and leaves nothing" {
	need_snap_qemu
	start_source
	# A guest without /dev/urandom cannot take the seed: its agent answers
	# ERROR, and the clone must not come up as a copy of the source.
	in_vm src 'rm /dev/urandom'
	run_fc 0 --timeout 300 fc-snap create --vm src --tag t1
	run_fc 1 --timeout 300 fc-clone --snapshot t1 --name bad --detach 3>&-
	assert_contains "$output" "clone fix-up: open /dev/urandom: No such file or directory" \
		"fc-clone names the step that failed in the guest"
	run_fc 0 fc-state ls --json
	assert_eq "$(jq '[.[] | select(.process_type == "clone")] | length' <<<"$output")" 0 \
		"no clone record"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" | grep -vx "$SRC_ID" | wc -l)" 0 "no clone disk directory"
	assert_eq "$(ls "$FCVM_ROOT/run" | grep -vx "$SRC_ID" | wc -l)" 0 "no clone run directory"
	in_vm src 'mknod -m 666 /dev/urandom c 1 9 && head -c1 /dev/urandom | wc -c'
	assert_eq "$output" 1 "the source runs on"
}
