#!/usr/bin/env bats
# fc-snap and fc-clone on top of the VMM layer (tests/100): snapshot a
# running container VM, start clones that carry its memory (a process
# started before the snapshot) with a disk each, the source unharmed;
# refusals (stopped VM, existing tag, tampered snapshot) start nothing;
# kill -9 of fc-clone leaves nothing; rm refuses while clones use it.

load helpers
load lib/snapshot
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root snap
	PIDS=()
}

teardown() {
	snap_teardown
}

# A crafted snapshot whose files and manifest agree (never started: only
# the tampering tests use it).
craft_snapshot() {
	local d="$FCVM_ROOT/snapshots/$1"
	mkdir -p "$d"
	head -c 4096 /dev/urandom >"$d/vmstate"
	truncate -s 16M "$d/memory"
	truncate -s 1M "$d/disk.ext4"
	jq -n --arg sum "$(sha256sum <"$d/vmstate" | cut -d' ' -f1)" --arg tag "$1" '{
		version: 1, tag: $tag, created: "2026-01-01T00:00:00Z",
		source: {id: "vm-000000000000", name: "x", config: {}, network: null},
		machine: {cpus: 1, memory_mib: 16, vsock_cid: 3},
		vmm: {program: "fc-qemu", version: "x"}, backends: ["File"],
		files: {vmstate: {name: "vmstate", size: 4096, sha256: $sum},
			memory: {name: "memory", size: 16777216},
			disk: {name: "disk.ext4", size: 1048576}}}' >"$d/manifest.json"
}

# nothing_started: no record, no VM directory, no socket directory.
nothing_started() {
	assert_eq "$(ls "$FCVM_ROOT/state" 2>/dev/null | wc -l)" 0 "no state record: $1"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" 2>/dev/null | wc -l)" 0 "no VM directory: $1"
	assert_eq "$(ls "$FCVM_ROOT/run" 2>/dev/null | wc -l)" 0 "no run directory: $1"
}

@test "fc-snap, fc-clone: usage; a missing VM or snapshot; tampered snapshots start nothing" {
	run_fc 2 fc-snap
	run_fc 0 fc-snap -h
	assert_contains "$output" "fc-snap create" "usage"
	run_fc 2 fc-snap create --tag t
	assert_contains "$output" "exactly one of --vm and --pid" "needs a VM"
	run_fc 2 fc-snap create --vm x --tag ../t
	assert_contains "$output" "invalid --tag" "a tag is a plain name"
	run_fc 1 fc-snap create --vm nosuch --tag t
	assert_contains "$output" "no running VM named 'nosuch'" "a VM that does not run"
	run_fc 1 fc-snap create --pid $$ --tag t
	assert_contains "$output" "no running VM is owned by pid $$" "--pid of no VM owner"
	run_fc 2 fc-clone --snapshot t
	assert_contains "$output" "--name is required" "a clone needs a name"
	run_fc 1 fc-clone --snapshot nosuch --name c
	assert_contains "$output" "no snapshot 'nosuch'" "a missing snapshot"
	run_fc 1 fc-snap rm nosuch
	assert_contains "$output" "no snapshot 'nosuch'" "rm of a missing snapshot"

	craft_snapshot good
	run_fc 0 fc-snap ls --json
	assert_eq "$(jq -r '.[0].tag + " " + (.[0].error // "ok")' <<<"$output")" "good ok" \
		"a consistent snapshot validates"

	craft_snapshot trunc
	truncate -s 8M "$FCVM_ROOT/snapshots/trunc/memory"
	run_fc 1 fc-clone --snapshot trunc --name c
	assert_contains "$output" "has 8388608 bytes, the manifest says 16777216" "truncated memory"
	nothing_started "truncated memory"

	craft_snapshot sum
	# flip byte 100 (a fixed byte would already be there once in 256 runs)
	local b; b=$(od -An -tu1 -j100 -N1 "$FCVM_ROOT/snapshots/sum/vmstate")
	printf "\\$(printf '%03o' $(( b ^ 255 )))" |
		dd of="$FCVM_ROOT/snapshots/sum/vmstate" bs=1 seek=100 conv=notrunc 2>/dev/null
	run_fc 1 fc-clone --snapshot sum --name c
	assert_contains "$output" "sha256 mismatch" "a changed vmstate"
	nothing_started "vmstate checksum"

	local t
	for t in '../../../etc/passwd' '/etc/passwd' 'sub/vmstate'; do
		craft_snapshot out
		jq --arg p "$t" '.files.vmstate.name = $p' "$FCVM_ROOT/snapshots/out/manifest.json" \
			>"$BATS_TEST_TMPDIR/m" && mv "$BATS_TEST_TMPDIR/m" "$FCVM_ROOT/snapshots/out/manifest.json"
		run_fc 1 fc-clone --snapshot out --name c
		assert_contains "$output" "inside its directory, nothing else" "a path outside: $t"
		nothing_started "path $t"
	done

	craft_snapshot extra
	jq '.evil = 1' "$FCVM_ROOT/snapshots/extra/manifest.json" >"$BATS_TEST_TMPDIR/m" &&
		mv "$BATS_TEST_TMPDIR/m" "$FCVM_ROOT/snapshots/extra/manifest.json"
	run_fc 1 fc-clone --snapshot extra --name c
	assert_contains "$output" "unknown field 'evil'" "an unknown manifest field"

	craft_snapshot link
	rm "$FCVM_ROOT/snapshots/link/memory"
	truncate -s 16M "$BATS_TEST_TMPDIR/elsewhere"
	ln -s "$BATS_TEST_TMPDIR/elsewhere" "$FCVM_ROOT/snapshots/link/memory"
	run_fc 1 fc-clone --snapshot link --name c
	assert_contains "$output" "snapshot memory" "a symlinked memory file is refused"
	nothing_started "symlink"

	run_fc 0 fc-snap ls
	assert_contains "$output" "damaged" "ls marks a damaged snapshot"
	run_fc 0 fc-snap rm trunc
	[ ! -e "$FCVM_ROOT/snapshots/trunc" ]
}

@test "snapshot: 3 clones carry the source's memory, each its own disk; the source runs on" {
	need_snap_qemu
	start_source
	local bgpid
	run_fc 0 --timeout 120 fc-exec --name src -- cat /tmp/bgpid
	bgpid=$output
	[ -n "$bgpid" ]

	local owner; owner=$(fc-state get --field pid src)
	run_fc 0 --timeout 300 fcvm snapshot create --pid "$owner" --tag t1
	assert_eq "$output" "$FCVM_ROOT/snapshots/t1" "create (by the owner's pid) prints the snapshot directory"
	local m="$FCVM_ROOT/snapshots/t1/manifest.json"
	assert_eq "$(jq -r .source.name "$m")" src "manifest: the source"
	assert_eq "$(jq -r .files.vmstate.sha256 "$m")" \
		"$(sha256sum <"$FCVM_ROOT/snapshots/t1/vmstate" | cut -d' ' -f1)" "manifest: vmstate hash"
	assert_eq "$(jq -r .files.memory.size "$m")" "$(stat -c %s "$FCVM_ROOT/snapshots/t1/memory")" \
		"manifest: memory size"
	ls -a "$FCVM_ROOT/snapshots" | grep -q '^\.tmp' && { echo "a temporary was left" >&2; false; }
	run_fc 125 fcvm snapshot create --name src --tag t1
	assert_contains "$output" "snapshot 't1' already exists" "an existing tag is refused"
	ls -a "$FCVM_ROOT/snapshots" | grep -q '^\.tmp' && { echo "a refused create left a temporary" >&2; false; }

	# the source keeps running and answers
	run_fc 0 --timeout 120 fc-exec --name src -- cat /disk-state
	assert_eq "$output" on-disk "the source answers after the snapshot"

	local c
	clone c1
	clone c2
	run_fc 0 --timeout 300 fcvm snapshot run --snapshot t1 --name c3 -d 3>&-
	assert_eq "$output" "$(fc-state get --field id c3)" "snapshot run -d prints the clone's id"
	PIDS+=("$(fc-state get --field pid c3)")
	run_fc 0 fcvm snapshot ls --json
	assert_eq "$(jq -r '.[] | select(.tag == "t1") | .clones' <<<"$output")" 3 "ls counts the clones"
	run_fc 0 fc-state ls --json
	assert_eq "$(jq '[.[] | select(.process_type == "clone" and .snapshot == "t1")] | length' <<<"$output")" 3 \
		"three clone records with their snapshot"
	for c in c1 c2 c3; do
		run_fc 0 --timeout 120 fc-exec --name $c -- sh -c "cat /proc/$bgpid/cmdline | tr '\\0' ' '"
		assert_contains "$output" "sleep 86400" "$c: the process started before the snapshot runs"
		run_fc 0 --timeout 120 fc-exec --name $c -- cat /disk-state
		assert_eq "$output" on-disk "$c: the snapshot's disk"
	done
	run_fc 0 --timeout 120 fc-exec --name c1 -- sh -c 'echo mine >/only-c1; sync'
	for c in c2 c3 src; do
		run_fc 1 --timeout 120 fc-exec --name $c -- cat /only-c1
	done
	run_fc 0 --timeout 120 fc-exec --name c1 -- cat /only-c1
	assert_eq "$output" mine "c1 keeps its own file"
	# each clone's disk is its own reflinked file
	local ids; ids=$(fc-state ls --json | jq -r '.[] | select(.process_type == "clone") | .config.rootfs' | sort -u | wc -l)
	assert_eq "$ids" 3 "three distinct clone disks"

	# memory: the clones map the snapshot's memory privately and share its pages
	local pss=0 rss=0 q
	for q in $(pgrep -f "qemu-system-x86_64"); do
		grep -q "$FCVM_ROOT/snapshots/t1/memory" "/proc/$q/maps" 2>/dev/null || continue
		pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$q/smaps_rollup")))
		rss=$((rss + $(awk '/^Rss:/ {print $2}' "/proc/$q/smaps_rollup")))
	done
	local img=$(( $(stat -c %s "$FCVM_ROOT/snapshots/t1/memory") / 1024 ))
	echo "# 3 clones: PSS ${pss} KiB, RSS ${rss} KiB, image ${img} KiB" >&3
	[ "$pss" -gt 0 ] || { echo "no clone QEMU maps the snapshot's memory" >&2; false; }
	[ "$pss" -lt "$rss" ] || { echo "clones share no pages (PSS $pss >= RSS $rss)" >&2; false; }
	[ "$pss" -lt $((3 * img)) ] || { echo "PSS $pss KiB not under 3 x the image" >&2; false; }

	# rm refuses while clones use the snapshot; --force stops them
	run_fc 125 fcvm snapshot rm t1
	assert_contains "$output" "used by 3 clone(s)" "rm refuses"
	[ -d "$FCVM_ROOT/snapshots/t1" ]
	run_fc 0 --timeout 120 fcvm snapshot rm --force t1
	[ ! -e "$FCVM_ROOT/snapshots/t1" ]
	run_fc 0 fc-state ls --json
	assert_eq "$(jq '[.[] | select(.process_type == "clone")] | length' <<<"$output")" 0 "clones stopped"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" | grep -vx "$SRC_ID" | wc -l)" 0 "clones left no disk dir"
	run_fc 0 --timeout 120 fc-exec --name src -- cat /disk-state
	assert_eq "$output" on-disk "the source still answers"
}

@test "snapshot: a stopped VM is refused; kill -9 of fc-clone at any point leaves nothing" {
	need_snap_qemu
	start_source
	run_fc 0 --timeout 300 fc-snap create --vm src --tag t1
	run_fc 0 fcvm stop src
	timeout 60 tail --pid="$SRC_PID" -f /dev/null
	run_fc 1 fc-snap create --vm src --tag t2
	assert_contains "$output" "no running VM named 'src'" "a stopped VM"
	[ ! -e "$FCVM_ROOT/snapshots/t2" ]
	fcvm rm "$SRC_ID" >/dev/null

	local delay before
	before=$(ls "$FCVM_ROOT/snapshots" | wc -l)
	for delay in 0.3 1 3 running; do
		fc-clone --snapshot t1 --name k >/dev/null 2>"$BATS_TEST_TMPDIR/err" 3>&- &
		local pid=$! i
		if [ "$delay" = running ]; then
			for ((i = 0; i < 1500; i++)); do
				[ "$(fc-state get --field status k 2>/dev/null)" = running ] && break
				sleep 0.2
			done
			assert_eq "$(fc-state get --field status k)" running "the clone came up"
		else
			sleep "$delay"
		fi
		kill -KILL "$pid"
		wait "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			[ -z "$(ls "$FCVM_ROOT/state" "$FCVM_ROOT/vm-disks" "$FCVM_ROOT/run" 2>/dev/null | grep -v ':$' | grep .)" ] &&
				[ -z "$(leaked_procs)" ] && break
			sleep 0.1
		done
		nothing_started "kill -9 after $delay"
		assert_eq "$(leaked_procs)" "" "no process left after kill -9 at $delay"
	done
	assert_eq "$(ls "$FCVM_ROOT/snapshots" | wc -l)" "$before" "the snapshot is untouched"
}
