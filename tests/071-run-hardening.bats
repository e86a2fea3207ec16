#!/usr/bin/env bats
# fcvm's own failure paths (issue 7, items 4, 10, 11, 13, 14; issue 6,
# deliverables 3 and 5): --rm honoured however fcvm ends, every argument
# checked before anything is made, option-like operands, a full data root,
# a running VM's files kept, what stays findable (ls -a, rm, gc).

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-hard:1 >/dev/null
}

setup() {
	FCVM_PID="" MNT=""
}

teardown() {
	local r=0
	if [ -n "$FCVM_PID" ]; then
		kill -KILL "$FCVM_PID" 2>/dev/null || true
		wait "$FCVM_PID" 2>/dev/null || true
	fi
	leak_check || r=$?
	if [ -n "$MNT" ]; then
		umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	fi
	[ -n "${FCVM_ROOT:-}" ] && rm -rf "$FCVM_ROOT"
	return $r
}

# vm_disks: how many VM disk directories the data root holds.
vm_disks() { find "$FCVM_ROOT/vm-disks" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# until_gone SECONDS: until no process, record or VM disk of this root is
# left (what a --rm run must end with); fails naming what is left.
until_gone() {
	local i
	for ((i = 0; i < $1 * 5; i++)); do
		[ -z "$(leaked_procs)" ] && [ "$(vm_disks)" = 0 ] &&
			[ -z "$(ls "$FCVM_ROOT/state" 2>/dev/null)" ] && return 0
		sleep 0.2
	done
	echo "left after ${1}s: procs [$(leaked_procs)] vm-disks [$(ls "$FCVM_ROOT/vm-disks")] state [$(ls "$FCVM_ROOT/state")]" >&2
	return 1
}

# start_bg NAME [fcvm run options...] -- CMD...: 'fcvm podman run --name
# NAME' in the background (FCVM_PID), until its VM runs.
start_bg() {
	local name=$1; shift
	# A background job of a non-interactive shell starts with SIGINT
	# ignored (and bash cannot trap what it inherited ignored): restore it,
	# as for a command run from a terminal.
	env --default-signal=INT fcvm podman run --name "$name" "$@" \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" 3>&- &
	FCVM_PID=$!
	fc-state wait --timeout 240 --pid "$FCVM_PID" "$name" running ||
		{ cat "$BATS_TEST_TMPDIR/err" >&2; return 1; }
}

@test "--rm: SIGKILL of fcvm still removes the VM's disk directory" {
	fc_vm_root hard
	start_bg doomed --rm "$IMG" sleep 600
	assert_eq "$(vm_disks)" 1 "the VM has its disk directory while it runs"
	kill -KILL "$FCVM_PID"
	wait "$FCVM_PID" || true
	FCVM_PID=""
	until_gone 20
}

@test "--rm: SIGKILL of fcvm's whole process group still removes everything" {
	fc_vm_root hard
	setsid fcvm podman run --rm --name group "$IMG" sleep 600 >/dev/null 2>&1 3>&- &
	FCVM_PID=$!
	fc-state wait --timeout 240 --pid "$FCVM_PID" group running
	kill -KILL -- -"$FCVM_PID"
	wait "$FCVM_PID" || true
	FCVM_PID=""
	until_gone 20
}

@test "--rm: SIGTERM and SIGINT of fcvm remove everything before fcvm exits" {
	fc_vm_root hard
	local sig
	for sig in TERM INT; do
		start_bg "sig-$sig" --rm "$IMG" sleep 600
		kill -"$sig" "$FCVM_PID"
		local rc=0
		wait "$FCVM_PID" || rc=$?
		FCVM_PID=""
		[ "$sig" = TERM ] && assert_eq "$rc" 143 "SIGTERM: 128+15"
		[ "$sig" = INT ] && assert_eq "$rc" 130 "SIGINT: 128+2"
		assert_eq "$(vm_disks)" 0 "SIG$sig: the disk directory is gone when fcvm returns"
		until_gone 20
	done
}

@test "-d --rm: the disk directory goes when the container ends, and on fcvm stop" {
	fc_vm_root hard
	run_fc 0 --timeout 240 fcvm podman run -d --rm --name short "$IMG" sh -c 'echo hi; sleep 2' 3>&-
	local id=$output
	assert_contains "$id" "vm-" "prints the VM id"
	until_gone 60
	run_fc 0 --timeout 240 fcvm podman run -d --rm --name long "$IMG" sleep 600 3>&-
	id=$output
	assert_eq "$(vm_disks)" 1 "kept while it runs"
	run_fc 0 fcvm stop long
	until_gone 20
}

@test "-d --rm: SIGKILL of fcvm before it handed the VM over stops the VM and removes everything" {
	fc_vm_root hard
	env --default-signal=INT fcvm podman run -d --rm --name early "$IMG" sleep 600 \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" 3>&- &
	FCVM_PID=$!
	# The detached owner exists (its record), the container is not yet
	# handed to the user (fcvm has printed no id).
	fc-state wait --timeout 240 early starting 2>/dev/null ||
		fc-state wait --timeout 240 early running
	[ ! -s "$BATS_TEST_TMPDIR/out" ] || skip "fcvm handed the VM over before it could be killed"
	kill -KILL "$FCVM_PID"
	wait "$FCVM_PID" || true
	FCVM_PID=""
	# The janitor stops the owner (fc-boot's 3 s grace) and removes the disk.
	until_gone 30
}

@test "--rm: SIGKILL of fc-run ends the run at once, not after a wait for a power-off that never comes" {
	fc_vm_root hard
	start_bg runkill --rm "$IMG" sleep 600
	local run="" i
	for ((i = 0; i < 600; i++)); do
		run=$(pgrep -f "fc-run .*$FCVM_ROOT" | head -1)
		[ -z "$run" ] || break
		sleep 0.1
	done
	[ -n "$run" ] || { echo "no fc-run found" >&2; return 1; }
	sleep 2	# the agent has the plan: the container runs
	local t0=$SECONDS
	kill -KILL "$run"
	local rc=0
	wait "$FCVM_PID" || rc=$?
	FCVM_PID=""
	[ "$rc" -ne 0 ] || { echo "fcvm exited 0 though its fc-run was killed" >&2; return 1; }
	# Before: fcvm waited 10 s for the agent's power-off, then fc-boot's grace.
	[ $((SECONDS - t0)) -lt 9 ] || { echo "fcvm took $((SECONDS - t0)) s to end" >&2; return 1; }
	until_gone 10
}

@test "-d: the detached fc-run is recorded and ends with the VM" {
	fc_vm_root hard
	run_fc 0 --timeout 240 fcvm podman run -d --name rec "$IMG" sleep 600 3>&-
	local id=$output pid start
	read -r pid start < "$FCVM_ROOT/vm-disks/$id/fc-run.pid"
	assert_contains "$(tr '\0' ' ' < "/proc/$pid/cmdline")" "fc-run" "fc-run.pid names the detached fc-run"
	# the container runs under the VM's name
	run_fc 0 fc-run --status --vsock "$FCVM_ROOT/run/$id/vsock.sock" --timeout 60
	assert_eq "$(jq -r .container <<<"$output")" rec "the agent ran 'podman run --name rec'"
	run_fc 0 fcvm stop rec
	local i
	for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	run kill -0 "$pid"
	assert_eq "$status" 1 "fc-run ended with its VM"
	run_fc 0 fcvm rm rec
	assert_eq "$(vm_disks)" 0 "fcvm rm by name removed the stopped VM's files"
}

@test "-d --rm: SIGKILL of the detached fc-run stops the VM (nobody would hear of it again) and removes everything" {
	fc_vm_root hard
	run_fc 0 --timeout 240 fcvm podman run -d --rm --name orphan "$IMG" sleep 600 3>&-
	local id=$output pid start t0
	read -r pid start < "$FCVM_ROOT/vm-disks/$id/fc-run.pid"
	t0=$SECONDS
	kill -KILL "$pid"
	# fcvm _runwatch: 2 s for a guest's own power-off, then the owner goes
	until_gone 20
	[ $((SECONDS - t0)) -le 10 ] || { echo "took $((SECONDS - t0)) s" >&2; false; }
}

@test "arguments: every one is checked before anything is made; usage errors exit 125" {
	fc_vm_root hard
	local -a bad=("--timeout 0" "--timeout x" "--cpus 0" "--cpus 99" "--memory 64"
		"--memory 99999999999" "--name bad/name" "--name -x" "-e 1=x" "--bogus")
	local b
	for b in "${bad[@]}"; do
		# shellcheck disable=SC2086
		run_fc 125 fcvm podman run --rm $b "$IMG" true
		assert_contains "$output" "fcvm: " "'$b': fcvm's own message"
		if [[ "$output" == *"usage: fc-boot"* || "$output" == *"fc-run:"* ]]; then
			echo "'$b' reached a tool: $output" >&2
			return 1
		fi
	done
	run_fc 125 fcvm podman run
	run_fc 125 fcvm ls --bogus
	run_fc 125 fcvm frobnicate
	assert_eq "$(vm_disks)" 0 "no VM disk made"
	assert_eq "$(find "$FCVM_ROOT/images" -type f 2>/dev/null | wc -l)" 0 "no image disk made"
	run_fc 0 fcvm podman run --help
	assert_contains "$output" "usage: fcvm podman run" "--help is not an error"
}

@test "arguments: an image named like an option is an image after '--'" {
	fc_vm_root hard
	cp "$IMG" "$BATS_TEST_TMPDIR/-dash.tar"
	cd "$BATS_TEST_TMPDIR"
	run_fc 125 fcvm podman run --rm -dash.tar true
	assert_contains "$output" "unknown option '-dash.tar'" "before '--' it is an option"
	run_fc 0 --timeout 240 fcvm podman run --rm -- -dash.tar echo dashed
	assert_eq "$output" dashed "after '--' it is the image, run"
	run_fc 125 fcvm podman run --rm -- --help true
	assert_contains "$output" "image '--help' not found" "'--help' after '--' is an image name"
}

@test "failed boot: nothing is left, with or without --rm, and the cause is named" {
	fc_vm_root hard
	local rm
	for rm in --rm ""; do
		# shellcheck disable=SC2086
		FCVM_VMM="$BATS_TEST_DIRNAME/lib/dying-vmm" run_fc 125 --timeout 120 fcvm podman run $rm "$IMG" true
		assert_contains "$output" "simulated crash" "fc-boot's reason is shown ('$rm')"
		assert_eq "$(vm_disks)" 0 "no vm-disks directory ('$rm')"
	done
}

@test "full data root: 'data root ... is full' at once, nothing left" {
	need_rootfs
	command -v mkfs.btrfs >/dev/null || skip "mkfs.btrfs not installed"
	truncate -s 160M "$BATS_TEST_TMPDIR/small.img"
	mkfs.btrfs -q "$BATS_TEST_TMPDIR/small.img" >/dev/null 2>&1
	MNT="$BATS_TEST_TMPDIR/mnt"
	mkdir -p "$MNT"
	mount -o loop "$BATS_TEST_TMPDIR/small.img" "$MNT"
	fc_vm_root full "$MNT"
	dd if=/dev/zero of="$MNT/fill" bs=1M 2>/dev/null || true
	sync
	run_fc 125 fcvm podman run --rm "$IMG" true
	assert_contains "$output" "data root '$FCVM_ROOT' is full" "names the full data root"
	if [[ "$output" == *"writing output failed"* ]]; then
		echo "jq's message reached the user: $output" >&2
		return 1
	fi
	assert_eq "$(vm_disks)" 0 "no VM disk left"
	assert_eq "$(find "$FCVM_ROOT/images" -type f 2>/dev/null | wc -l)" 0 "no image or temporary left"
	rm -f "$MNT/fill"
	umount "$MNT" && MNT=""
	FCVM_ROOT=""
}

@test "a running VM's files are not removed under it (fc-disk rm, fcvm rm)" {
	fc_vm_root hard
	start_bg busy "$IMG" sleep 600
	local id; id=$(fc-state get --field id busy)
	run_fc 1 fc-disk rm --vm "$id"
	assert_contains "$output" "VM '$id' is running" "fc-disk rm refuses"
	run_fc 125 fcvm rm busy
	assert_contains "$output" "is running" "fcvm rm refuses"
	[ -f "$FCVM_ROOT/vm-disks/$id/rootfs.ext4" ] || { echo "the rootfs was removed" >&2; return 1; }
	kill -TERM "$FCVM_PID"
	wait "$FCVM_PID" || true
	FCVM_PID=""
}

@test "what stays is findable: ls -a lists a stopped VM's files, rm removes them, gc collects" {
	fc_vm_root hard
	run_fc 0 --timeout 240 fcvm podman run --name kept "$IMG" echo kept-output
	assert_eq "$output" kept-output "ran"
	assert_eq "$(fcvm ls --json | jq length)" 0 "nothing running"
	run_fc 0 fcvm ls -a --json
	local id
	id=$(jq -r '.[] | select(.status == "stopped") | .id' <<<"$output")
	assert_contains "$id" "vm-" "ls -a lists the stopped VM's directory"
	run_fc 0 fcvm logs kept
	assert_contains "$output" "as 'kept'" "logs (the console) by the name it ran under"
	run_fc 0 fcvm rm "$id"
	assert_eq "$(vm_disks)" 0 "rm by id removed it"
	# a --rm run whose janitor was killed too: gc finds it by its marker
	mkdir -p "$FCVM_ROOT/vm-disks/vm-orphan0000"
	: >"$FCVM_ROOT/vm-disks/vm-orphan0000/rootfs.ext4"
	echo "999999 1" >"$FCVM_ROOT/vm-disks/vm-orphan0000/.rm"
	run_fc 0 fcvm gc -n
	assert_contains "$output" "would remove vm-disk vm-disks/vm-orphan0000" "gc -n names it"
	assert_eq "$(vm_disks)" 1 "-n removes nothing"
	run_fc 0 fcvm gc --json
	assert_eq "$(jq -r '.[] | select(.kind == "vm-disk") | .path' <<<"$output")" \
		"$FCVM_ROOT/vm-disks/vm-orphan0000" "gc --json reports it"
	assert_eq "$(vm_disks)" 0 "gc removed it"
}
