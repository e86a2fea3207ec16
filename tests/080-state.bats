#!/usr/bin/env bats
# fc-state: ls, get, wait and gc over state records - hand-made records
# owned by helper processes (fast, no VM), and one real VM whose whole
# process group is SIGKILLed (what gc is for).

load helpers

setup() {
	fc_setup_root
	HELPERS=()
}

teardown() {
	local p
	for p in "${HELPERS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	# hand-made records are the test's own: leak_check counts the rest
	rm -f "$FCVM_ROOT"/state/vm-t*.json "$FCVM_ROOT"/state/vm-t*.pid
	leak_check
}

start_of() {
	awk '{sub(/.*\) /, ""); print $20}' "/proc/$1/stat"
}

# owner: a process to own records; its pid in $OWNER.
owner() {
	sleep 1000 &
	OWNER=$!
	HELPERS+=("$OWNER")
}

# mkrec ID NAME PID STATUS: a record as lib/state writes it (atomically).
mkrec() {
	local id=$1 name=$2 pid=$3 status=$4 start
	start=$(start_of "$pid" 2>/dev/null || echo 1)
	jq -n --arg id "$id" --arg name "$name" --argjson pid "$pid" --argjson start "$start" \
		--arg status "$status" --arg root "$FCVM_ROOT" \
		'{version: 1, id: $id, name: $name, process_type: "vm", pid: $pid, pid_start: $start,
		  status: $status, created: "2026-12-01T21:00:00Z"} +
		 (if $status == "starting" then {} else
		  {vmm_pid: $pid, vmm_pid_start: $start,
		   config: {cpus: 1, memory_mib: 256, kernel: ($root + "/kernels/default/vmlinux"),
			    initrd: null, rootfs: null, drives: [], tap: null, vmm: "/usr/bin/fc-qemu"},
		   sockets: {api: ($root + "/run/" + $id + "/api.sock"), vsock: null},
		   console: ($root + "/vm-disks/" + $id + "/console.log"),
		   disk_dir: ($root + "/vm-disks/" + $id)} end)' >"$FCVM_ROOT/state/.$id.json.tmp"
	mv "$FCVM_ROOT/state/.$id.json.tmp" "$FCVM_ROOT/state/$id.json"
	echo "$pid" >"$FCVM_ROOT/state/$id.pid"
}

# A pid that surely does not run.
dead_pid() {
	sh -c 'echo $$'
}

@test "fc-state: -h prints the synopsis; bad usage exits 2" {
	run_fc 0 fc-state -h
	for c in "ls [-a] [--json]" "get [--field NAME] KEY" \
		"wait [--timeout SEC] [--pid PID[:START]] KEY STATUS" "gc [-n] [--json]"; do
		assert_contains "$output" "fc-state $c" "synopsis names $c"
	done
	run_fc 2 fc-state frob
	assert_contains "$output" "unknown command 'frob'" "names the bad command"
	run_fc 2 fc-state wait web
	run_fc 2 fc-state wait web sleeping
	assert_contains "$output" "invalid STATUS 'sleeping'" "names the bad status"
	run_fc 2 fc-state wait --timeout 1x web running
	assert_contains "$output" "--timeout" "names the bad option"
	run_fc 2 fc-state get
	run_fc 2 fc-state ls --bogus
	assert_contains "$output" "unknown option '--bogus'" "names the bad option"
}

@test "fc-state ls/get: live records only; -a adds dead records and kept disk dirs" {
	owner
	mkrec vm-t1 web "$OWNER" running
	mkrec vm-t2 old "$(dead_pid)" running
	mkdir -p "$FCVM_ROOT/vm-disks/vm-t3"
	run_fc 0 fc-state ls
	[[ "${lines[0]}" =~ ^ID\ +NAME\ +TYPE\ +PID\ +STATUS\ +CREATED$ ]] || { echo "header: ${lines[0]}" >&2; false; }
	assert_eq "${#lines[@]}" 2 "one live record"
	assert_contains "${lines[1]}" "vm-t1  web   vm    $OWNER" "the live one"
	run_fc 0 fc-state ls --json
	assert_eq "$(jq -r 'map(.id) | join(",")' <<<"$output")" vm-t1 "JSON: the live record"
	assert_eq "$(jq -r '.[0].live' <<<"$output")" null "no 'live' field without -a"
	run_fc 0 fc-state ls -a --json
	assert_eq "$(jq -c 'map([.id, .live, .status])' <<<"$output")" \
		'[["vm-t1",true,"running"],["vm-t2",false,"running"],["vm-t3",false,"stopped"]]' "-a: all three"
	assert_eq "$(jq -r '.[2].disk_dir' <<<"$output")" "$FCVM_ROOT/vm-disks/vm-t3" "kept disk dir"
	run_fc 0 fc-state ls -a
	grep -qE '^vm-t2 +old +vm +[0-9]+ +dead ' <<<"$output"
	grep -qE '^vm-t3 +- +- +- +stopped +-$' <<<"$output"

	run_fc 0 fc-state get web
	assert_eq "$(jq -r .id <<<"$output")" vm-t1 "by name"
	run_fc 0 fc-state get vm-t1
	assert_eq "$(jq -r .name <<<"$output")" web "by id"
	run_fc 0 fc-state get --field pid web
	assert_eq "$output" "$OWNER" "a number field"
	run_fc 0 fc-state get --field config.kernel web
	assert_eq "$output" "$FCVM_ROOT/kernels/default/vmlinux" "a nested string, raw"
	run_fc 0 fc-state get --field config.drives web
	assert_eq "$output" "[]" "non-strings as compact JSON"
	run_fc 1 fc-state get --field sockets.vsock web
	assert_eq "$output" "fc-state: VM 'web' has no field 'sockets.vsock'" "null is no value"
	run_fc 1 fc-state get old
	assert_eq "$output" "fc-state: no running VM named 'old'" "a dead owner's record is not running"
	run_fc 1 fc-state get nope
	assert_eq "$output" "fc-state: no running VM named 'nope'" "the agreed message"
}

@test "fc-state: malformed, foreign and oversized records are skipped with a warning" {
	owner
	mkrec vm-t1 web "$OWNER" running
	echo '{"version": 1, "id": ' >"$FCVM_ROOT/state/vm-t4.json"
	jq '.id = "vm-t9"' "$FCVM_ROOT/state/vm-t1.json" >"$FCVM_ROOT/state/vm-t5.json"
	jq '.status = "running" | del(.config)' "$FCVM_ROOT/state/vm-t1.json" | jq '.id = "vm-t6"' \
		>"$FCVM_ROOT/state/vm-t6.json"
	head -c 1100000 /dev/zero | tr '\0' ' ' >"$FCVM_ROOT/state/vm-t7.json"
	assert_eq "$(fc-state ls --json 2>/dev/null | jq -r 'map(.id) | join(",")')" vm-t1 "only the valid record"
	run_fc 0 fc-state ls
	assert_contains "$output" "skipping state record 'vm-t4'" "malformed JSON named"
	assert_contains "$output" "foreign: its id is 'vm-t9'" "foreign record named"
	assert_contains "$output" "field 'config' is missing" "schema violation named"
	assert_contains "$output" "larger than" "oversized record named"
	rm -f "$FCVM_ROOT"/state/vm-t[4-7].json
}

@test "fc-state wait: returns once the status is reached, woken at once" {
	owner
	mkrec vm-t1 web "$OWNER" starting
	(sleep 1; mkrec vm-t1 web "$OWNER" running) &
	local t0=$SECONDS
	run_fc 0 --timeout 30 fc-state wait --timeout 20 web running
	[ $((SECONDS - t0)) -lt 10 ]
	run_fc 0 fc-state wait --timeout 0 vm-t1 running
	run_fc 1 fc-state wait --timeout 5 web starting
	assert_contains "$output" "is already 'running': it will not become 'starting'" "a status it moved past"
}

@test "fc-state wait: never unbounded; fails at once when the owner dies or the record goes" {
	local t0 dead
	# nothing there: the timeout bounds it
	t0=$SECONDS
	run_fc 1 --timeout 30 fc-state wait --timeout 2 ghost running
	assert_eq "$output" "fc-state: no VM named 'ghost' appeared within 2 s" "timeout message"
	[ $((SECONDS - t0)) -lt 10 ]
	# --pid: an expected owner that is dead before any record appeared
	dead=$(dead_pid)
	t0=$SECONDS
	run_fc 1 --timeout 30 fc-state wait --timeout 60 --pid "$dead" ghost running
	assert_contains "$output" "(pid $dead) exited before it made a record" "names the cause"
	[ $((SECONDS - t0)) -lt 10 ]
	# the owner dies while the VM is starting
	owner
	mkrec vm-t1 web "$OWNER" starting
	(sleep 1; kill -9 "$OWNER") &
	t0=$SECONDS
	run_fc 1 --timeout 30 fc-state wait --timeout 60 web running
	assert_contains "$output" "(pid $OWNER) died while it was 'starting'" "a dead owner"
	[ $((SECONDS - t0)) -lt 15 ]
	# the record is removed (the owner stopped) while starting
	owner
	mkrec vm-t2 db "$OWNER" starting
	(sleep 1; rm -f "$FCVM_ROOT/state/vm-t2.json") &
	t0=$SECONDS
	run_fc 1 --timeout 30 fc-state wait --timeout 60 db running
	assert_contains "$output" "stopped while it was 'starting' (its record was removed)" "a removed record"
	[ $((SECONDS - t0)) -lt 15 ]
	# --pid of a process that does not match its start time (pid reuse)
	run_fc 1 --timeout 30 fc-state wait --timeout 60 --pid "$OWNER:1" db running
	assert_contains "$output" "(pid $OWNER) exited" "start time checked"
}

@test "fc-state gc: removes what dead owners left, keeps what live ones use; -n only prints" {
	owner
	local dead k
	dead=$(dead_pid)
	mkrec vm-t1 web "$OWNER" running
	mkrec vm-t2 old "$dead" running
	mkdir -p "$FCVM_ROOT/run/vm-t1" "$FCVM_ROOT/run/vm-t2" "$FCVM_ROOT/run/vm-t8"
	touch "$FCVM_ROOT/run/vm-t1/api.sock" "$FCVM_ROOT/run/vm-t2/api.sock" "$FCVM_ROOT/run/vm-t8/vsock.sock_1024"
	echo "$dead" >"$FCVM_ROOT/state/vm-t9.pid"
	touch "$FCVM_ROOT/state/.vm-t1.json.tmp-$dead-0a0b0c0d" "$FCVM_ROOT/images/.sha.tmp-$dead-01020304"
	# builds: the default, one a live VM's config uses, one nothing uses
	for k in aaaa bbbb cccc; do mkdir -p "$FCVM_ROOT/kernels/$k"; touch "$FCVM_ROOT/kernels/$k/vmlinux"; done
	ln -s aaaa "$FCVM_ROOT/kernels/default"
	jq --arg k "$FCVM_ROOT/kernels/bbbb/vmlinux" '.config.kernel = $k' "$FCVM_ROOT/state/vm-t1.json" \
		>"$FCVM_ROOT/state/.x" && mv "$FCVM_ROOT/state/.x" "$FCVM_ROOT/state/vm-t1.json"
	mkdir -p "$FCVM_ROOT/rootfs/.tmp-0123456789abcdef-$dead" "$FCVM_ROOT/vm-disks/vm-t2"
	# snapshots fc-snap was making (and removing) when it died; a live one's stays
	mkdir -p "$FCVM_ROOT/snapshots/.tmp-warm-$dead" "$FCVM_ROOT/snapshots/.tmp-rm-old-$dead" \
		"$FCVM_ROOT/snapshots/.tmp-busy-$OWNER"

	run_fc 0 fc-state gc -n
	assert_contains "$output" "would remove record state/vm-t2.json" "dry run lists the dead record"
	[ -f "$FCVM_ROOT/state/vm-t2.json" ]
	[ -d "$FCVM_ROOT/kernels/cccc" ]

	run_fc 0 fc-state gc --json
	local removed
	removed=$(jq -r '.[] | .kind + " " + (.path | ltrimstr(env.FCVM_ROOT + "/"))' <<<"$output" | sort)
	assert_eq "$removed" "$(printf '%s\n' "build kernels/cccc" "pidfile state/vm-t2.pid" \
		"pidfile state/vm-t9.pid" "record state/vm-t2.json" "sockets run/vm-t2" "sockets run/vm-t8" \
		"temporary snapshots/.tmp-warm-$dead" "temporary snapshots/.tmp-rm-old-$dead" \
		"temporary images/.sha.tmp-$dead-01020304" "temporary rootfs/.tmp-0123456789abcdef-$dead" \
		"temporary state/.vm-t1.json.tmp-$dead-0a0b0c0d" | sort)" "exactly what dead owners left"
	[ -f "$FCVM_ROOT/state/vm-t1.json" ]
	[ -d "$FCVM_ROOT/run/vm-t1" ]
	[ -d "$FCVM_ROOT/kernels/aaaa" ]
	[ -d "$FCVM_ROOT/kernels/bbbb" ]
	[ -d "$FCVM_ROOT/vm-disks/vm-t2" ]	# the user's logs stay
	[ -d "$FCVM_ROOT/snapshots/.tmp-busy-$OWNER" ]
	run_fc 0 fc-state gc
	assert_eq "$output" "" "a second gc finds nothing"
	rm -rf "$FCVM_ROOT/run/vm-t1" "$FCVM_ROOT/snapshots/.tmp-busy-$OWNER"
}

@test "fc-state gc: keeps builds and their temporaries while a build holds the lock" {
	local dead
	dead=$(dead_pid)
	mkdir -p "$FCVM_ROOT/rootfs/old" "$FCVM_ROOT/rootfs/new" "$FCVM_ROOT/rootfs/.tmp-feedfacefeedface-$$" \
		"$FCVM_ROOT/rootfs/.tmp-0123456789abcdef-$dead"
	ln -s new "$FCVM_ROOT/rootfs/default"
	# the lock holder is the sleep itself (exec), so killing it frees the lock
	(exec 9>"$FCVM_ROOT/locks/rootfs.lock"; flock 9; exec sleep 1000) &
	HELPERS+=("$!")
	local i
	for ((i = 0; i < 100; i++)); do
		flock -n "$FCVM_ROOT/locks/rootfs.lock" true || break
		sleep 0.05
	done
	run_fc 0 fc-state gc
	assert_contains "$output" "removed temporary rootfs/.tmp-0123456789abcdef-$dead" "a dead builder's temporary goes"
	[ -d "$FCVM_ROOT/rootfs/old" ]
	[ -d "$FCVM_ROOT/rootfs/.tmp-feedfacefeedface-$$" ]
	rm -rf "$FCVM_ROOT/rootfs/.tmp-feedfacefeedface-$$"
}

@test "fc-boot on a full data root says the root is full, and where (issue 7, item 13)" {
	need_guest	# fc-boot checks its kernel: the fixture's
	local full="$BATS_TEST_TMPDIR/full"
	mkdir -p "$full"
	mount -t tmpfs -o size=512k tmpfs "$full" || skip "cannot mount a tmpfs here"
	FCVM_ROOT="$full" fc-setup storage --dir "$full" --without-reflink >/dev/null 2>&1 || { umount "$full"; false; }
	head -c 1M /dev/zero >"$full/fill" 2>/dev/null || true
	# fc-boot's first write is its record: the message must name the full root
	local k="$FCVM_TEST_KERNEL/vmlinux"
	FCVM_ROOT="$full" FCVM_VMM="$BATS_TEST_DIRNAME/lib/dying-vmm" run timeout 60 fc-boot --name full \
		--id vm-full1 --kernel "$k"
	umount "$full"
	[ "$status" -eq 1 ] || { echo "fc-boot exited $status: $output" >&2; false; }
	assert_contains "$output" "data root '$full' is full (ENOSPC writing state/vm-full1.json): free space or move FCVM_ROOT" \
		"says the root is full, and where"
}

# descendants PID: PID's children, grandchildren, ... (one a line)
descendants() {
	local c
	for c in $(pgrep -P "$1"); do
		echo "$c"
		descendants "$c"
	done
}

@test "fc-state gc: collects a VM whose owner, janitor and VMM were all SIGKILLed at once" {
	need_rootfs
	local rootfs="$BATS_TEST_TMPDIR/rootfs.ext4" pid i all
	cp --reflink=auto --sparse=always "$FCVM_TEST_ROOTFS/rootfs.ext4" "$rootfs"
	FCVM_VMM=fc-qemu setsid fc-boot --name grp --kernel "$FCVM_TEST_KERNEL/vmlinux" \
		--initrd "$FCVM_TEST_KERNEL/initrd.img" --rootfs "$rootfs" \
		--console "$BATS_TEST_TMPDIR/console.log" >/dev/null 2>"$BATS_TEST_TMPDIR/boot.err" 3>&- &
	pid=$!
	run_fc 0 --timeout 150 fc-state wait --timeout 120 --pid "$pid" grp running
	local id; id=$(fc-state get --field id grp)
	# what an OOM killer or a cgroup kill does: every process at once,
	# the janitor (in its own session) included
	all="$pid $(descendants "$pid" | tr '\n' ' ')"
	# kill(1) signals one pid after another; a janitor still running when
	# fc-boot's pipe end closes would clean up before its own SIGKILL
	# arrives. Stopped first, nobody runs between the two kills.
	kill -STOP $all
	kill -9 $all
	for ((i = 0; i < 100; i++)); do
		[ -z "$(leaked_procs)" ] && break
		sleep 0.1
	done
	assert_eq "$(leaked_procs)" "" "every process is gone"
	run_fc 1 fc-state get grp
	[ -e "$FCVM_ROOT/state/$id.json" ] || { echo "nothing was left for gc to collect" >&2; false; }
	run_fc 0 fc-state ls -a --json
	assert_eq "$(jq -r --arg id "$id" '.[] | select(.id == $id) | .live' <<<"$output")" false "listed as dead"
	run_fc 0 fc-state gc
	assert_contains "$output" "removed record state/$id.json (owner pid $pid is dead)" "gc names the record"
	assert_contains "$output" "removed sockets run/$id" "and its sockets"
	[ ! -e "$FCVM_ROOT/state/$id.json" ]
	[ ! -e "$FCVM_ROOT/state/$id.pid" ]
	[ ! -e "$FCVM_ROOT/run/$id" ]
	rm -rf "$FCVM_ROOT/vm-disks/$id"
}
