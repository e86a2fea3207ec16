#!/usr/bin/env bats
# Memory sharing of File-backend clones: N = 1, 5, 10 clones of one
# snapshot map its memory file privately, so the pages they only read stay
# in the page cache once for all of them. Total PSS (smaps_rollup of each
# clone's VMM and its helpers) must stay near one memory image plus what
# each clone dirtied, far from N images. Prints the table (also printed by
# 'make bench-clone').

load helpers
load lib/snapshot
load lib/clonepss.sh
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root pss
	PIDS=()
}

teardown() {
	snap_teardown
}

@test "clone memory: N = 1, 5, 10 File-backend clones share the snapshot's memory (PSS table)" {
	need_snap_qemu
	# A small guest keeps 10 TCG clones within this machine's 2 cores.
	start_source --memory 256 --cpus 1
	run_fc 0 --timeout 300 fc-snap create --vm src --tag t1
	local img=$(( $(stat -c %s "$FCVM_ROOT/snapshots/t1/memory") / 1024 ))
	local i=0 n row pss rss dirty
	declare -A PSS RSS
	echo "# $(pss_header)" >&3
	for n in 1 5 10; do
		while [ "$i" -lt "$n" ]; do
			i=$((i + 1))
			clone "m$i"
		done
		# every clone answers before it is measured
		run_fc 0 --timeout 120 fc-exec --name "m$n" --vm -- true
		row=$(clone_pss t1)
		assert_eq "${row%% *}" "$n" "$n clones of t1 are running"
		read -r _ pss rss dirty <<<"$row"
		PSS[$n]=$pss RSS[$n]=$rss
		echo "# $(pss_row "$n" "$pss" "$rss" "$dirty" "$img")" >&3
	done
	# Sharing: 10 clones cost well under half of 10 private images, and
	# what they share (RSS - PSS) is real.
	[ "${PSS[10]}" -lt $((10 * img / 2)) ] ||
		{ echo "PSS of 10 clones ${PSS[10]} KiB not under 10 x image / 2 = $((10 * img / 2)) KiB" >&2; false; }
	[ "${PSS[10]}" -lt "${RSS[10]}" ] ||
		{ echo "10 clones share nothing: PSS ${PSS[10]} >= RSS ${RSS[10]} KiB" >&2; false; }
	# and the tenth clone costs less than the first did alone
	[ $(( (PSS[10] - PSS[5]) / 5 )) -lt "${PSS[1]}" ] ||
		{ echo "a clone added to 5 costs $(( (PSS[10] - PSS[5]) / 5 )) KiB, the first alone ${PSS[1]}" >&2; false; }
}
