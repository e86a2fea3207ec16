#!/usr/bin/env bats
# Volumes across a snapshot (fcvm snapshot create / run): a clone's
# volumes are served again - from the directory a -v names, or else from
# the snapshot's own directory, read-only - and what the guest held open
# before the snapshot (a shell's cwd and an open file inside the volume)
# goes on working against the clone's server. tests/110 covers the
# client's side of a new server without a VM.

load helpers
load lib/snapshot
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root volsnap
	PIDS=()
	SRC="$BATS_TEST_TMPDIR/src" NEW="$BATS_TEST_TMPDIR/new"
	mkdir -p "$SRC" "$NEW"
}

teardown() {
	local r=0 p i left
	snap_teardown || r=$?
	# no volume server or keeper of this data root, after up to 10 s
	for ((i = 0; i < 50; i++)); do
		left=""
		for p in $(pgrep -f "fc-volume serve|fcvm _volkeeper" 2>/dev/null); do
			tr '\0' ' ' 2>/dev/null < /proc/$p/cmdline | grep -qF "$FCVM_ROOT/" && left="$left $p"
		done
		[ -z "$left" ] && break
		sleep 0.2
	done
	[ -z "$left" ] || { echo "LEAK: volume processes left:$left" >&2; kill -9 $left; r=1; }
	return $r
}

# The source: its shell's cwd is the volume and its fd 3 an open file in
# it, written every 0.2 s (errors on stderr, the loop goes on).
start_vol_source() {
	echo one > "$SRC/f"
	SRC_SCRIPT='cd /data && exec 3>>log && echo started-ok && while :; do echo tick >&3; sleep 0.2; done' \
		start_source -v "$SRC:/data"
	wait_until 60 test -s "$SRC/log"
}

@test "volume snapshot: clones serve the snapshot's directory read-only or a -v one; open files and cwd carried; refusals" {
	need_snap_qemu
	start_vol_source
	run_fc 0 --timeout 300 fcvm snapshot create --name src --tag vs
	local m="$FCVM_ROOT/snapshots/vs/manifest.json"
	assert_eq "$(jq -cS '.source.config.volumes' "$m")" \
		"[{\"guest\":\"/data\",\"host\":\"$SRC\",\"port\":5100,\"read_only\":false}]" \
		"the manifest keeps the volumes (host directory included)"

	# A -v for a path the snapshot has no volume at: refused, nothing made.
	run_fc 125 fcvm snapshot run --snapshot vs --name bad -v "$NEW:/other"
	assert_contains "$output" "snapshot 'vs' has no volume at '/other'" "names the path"
	assert_contains "$output" "/data" "and the snapshot's volumes"
	assert_eq "$(fc-state ls --json | jq '[.[] | select(.name == "bad")] | length')" 0 "no clone started"

	# c1, no -v: the snapshot's directory, read-only.
	run_fc 0 --timeout 300 fcvm snapshot run --snapshot vs --name c1 -d 3>&-
	PIDS+=("$(fc-state get --field pid c1)")
	assert_eq "$(fc-state get --field config c1 | jq -c '.volumes[0] | [.host, .read_only]')" \
		"[\"$SRC\",true]" "c1's record: the snapshot's directory, read-only"
	run_fc 0 --timeout 120 fcvm exec c1 -- cat /data/f
	assert_eq "$output" one "c1 reads the snapshot's directory"
	run_fc 0 --timeout 120 fcvm exec c1 -- sh -c 'echo x > /data/from-c1; echo "rc=$?"'
	assert_contains "$output" "Read-only file system" "c1 cannot write it"
	[ ! -e "$SRC/from-c1" ]
	run_fc 0 --timeout 60 fcvm stop c1

	# c2, -v NEW:/data: a copy with other content; the shell's open file
	# (opened before the snapshot) now writes into NEW.
	cp -a "$SRC/." "$NEW/"
	echo two > "$NEW/f"
	: > "$NEW/log"
	run_fc 0 --timeout 300 fcvm snapshot run --snapshot vs --name c2 -d -v "$NEW:/data" 3>&-
	PIDS+=("$(fc-state get --field pid c2)")
	wait_until 60 test -s "$NEW/log"
	run_fc 0 --timeout 120 fcvm exec c2 -- cat /data/f
	assert_eq "$output" two "c2 reads the directory given at snapshot run"
	run_fc 0 --timeout 120 fcvm exec c2 -- sh -c 'echo from-c2 > /data/c2.txt'
	assert_eq "$(cat "$NEW/c2.txt")" from-c2 "c2 writes into it"
	[ ! -e "$SRC/c2.txt" ]
	# the source runs on with its own directory and server
	local n; n=$(wc -l < "$SRC/log")
	wait_until 30 lines_over "$SRC/log" "$n"
	run_fc 0 --timeout 60 fcvm stop c2

	# c3 from a memory server (--pid): the snapshot's volumes all the same.
	fcvm snapshot serve vs >"$BATS_TEST_TMPDIR/serve.out" 2>"$BATS_TEST_TMPDIR/serve.err" 3>&- &
	PIDS+=($!)
	wait_line "$BATS_TEST_TMPDIR/serve.out" '^[0-9]+$' 120 "$!"
	local spid; spid=$(head -1 "$BATS_TEST_TMPDIR/serve.out")
	run_fc 0 --timeout 300 fcvm snapshot run --pid "$spid" --name c3 -d 3>&-
	PIDS+=("$(fc-state get --field pid c3)")
	run_fc 0 --timeout 120 fcvm exec c3 -- cat /data/f
	assert_eq "$output" one "a clone of a memory server reads the snapshot's directory"
	run_fc 0 --timeout 60 fcvm stop c3
}

@test "volume snapshot: fc-boot and fc-clone refuse a bad --volumes file before anything starts" {
	local v="$BATS_TEST_TMPDIR/v.json"
	echo '[{"port":5100,"guest":"/d/../x","host":"/h","read_only":false}]' > "$v"
	run_fc 1 fc-boot --name vb --volumes "$v"
	assert_contains "$output" "volumes[0].guest: want an absolute path" "fc-boot names the field"
	run_fc 1 fc-clone --snapshot nosuch --name vc --volumes "$v"
	assert_contains "$output" "volumes[0].guest" "fc-clone too"
	run_fc 1 fc-boot --name vb --volumes "$BATS_TEST_TMPDIR/none.json"
	assert_contains "$output" "none.json" "a missing file is named"
	assert_eq "$(ls "$FCVM_ROOT/state" 2>/dev/null | wc -l)" 0 "no record"
}
