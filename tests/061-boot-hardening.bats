#!/usr/bin/env bats
# fc-boot hardening (issue 7, items 3, 5 and 16) and --ready-fd: each test
# reproduces a failure of the old fc-boot.
#
# Most tests need no guest: tests/lib/fake-vmm stands in for Firecracker (the
# API on --api-sock, the serial console on its stdout) and tests/lib/tiny-elf
# makes a kernel file that passes fc-boot's ELF check.

load helpers

setup() {
	fc_setup_root
	FAKE="$BATS_TEST_DIRNAME/lib/fake-vmm"
	KERNEL="$BATS_TEST_TMPDIR/vmlinux"
	"$BATS_TEST_DIRNAME/lib/tiny-elf" "$KERNEL"
}

teardown() {
	leak_check
}

count_state() {
	find "$FCVM_ROOT/state" -name '*.json' -o -name '*.pid' 2>/dev/null | wc -l
}

# Nothing of a failed start may stay: record, run dir, vm-disks entries.
assert_nothing_left() {
	assert_eq "$(count_state)" 0 "no state record or pidfile ($1)"
	assert_eq "$(find "$FCVM_ROOT/run" -mindepth 1 2>/dev/null | wc -l)" 0 "no run dir or socket ($1)"
	assert_eq "$(find "$FCVM_ROOT/vm-disks" -mindepth 1 2>/dev/null | wc -l)" 0 \
		"no vm-disks entry ($1): $(find "$FCVM_ROOT/vm-disks" -mindepth 1 2>/dev/null)"
}

# assert_own_group PGID: a process group we may SIGKILL - never empty, never
# our own (bats itself).
assert_own_group() {
	[ -n "$1" ] || { echo "no process group found" >&2; return 1; }
	[ "$1" != "$(ps -o pgid= -p $$ | tr -d ' ')" ] || { echo "fc-boot is in our own group" >&2; return 1; }
}

# wait_status STATUS SECONDS PID: until the one record has "status" STATUS.
wait_status() {
	local want=$1 secs=$2 pid=$3 i
	for ((i = 0; i < secs * 10; i++)); do
		[ "$(jq -r .status "$FCVM_ROOT"/state/*.json 2>/dev/null)" = "$want" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "no record with status '$want' within ${secs}s" >&2
	return 1
}

# --- item 5: validate everything before anything is claimed or made --------

@test "fc-boot: a vsock path too long for a socket address is refused before anything is made" {
	local long="$BATS_TEST_TMPDIR/$(printf 'v%.0s' {1..110}).sock"
	FCVM_VMM=fc-qemu run_fc 1 --timeout 30 fc-boot --name x --kernel "$KERNEL" --vsock "$long"
	assert_contains "$output" "vsock socket path '$long' is too long" "names the path and the problem"
	assert_nothing_left "long vsock path"
}

@test "fc-boot: a newline in --boot-args is refused before anything is made" {
	FCVM_VMM=fc-qemu run_fc 2 --timeout 30 fc-boot --name x --kernel "$KERNEL" \
		--boot-args $'quiet\ninit=/bin/sh'
	assert_contains "$output" "invalid --boot-args" "names the argument"
	assert_nothing_left "newline in boot args"
}

@test "fc-boot: a console path that cannot be written is refused before anything is made" {
	FCVM_VMM=fc-qemu run_fc 1 --timeout 30 fc-boot --name x --kernel "$KERNEL" \
		--console /nonexistent/dir/console.log
	assert_contains "$output" "console '/nonexistent/dir/console.log'" "names the console path"
	assert_nothing_left "console in a missing directory"
	FCVM_VMM=fc-qemu run_fc 1 --timeout 30 fc-boot --name x --kernel "$KERNEL" \
		--console "$BATS_TEST_TMPDIR"
	assert_contains "$output" "is not a regular file" "a directory is no console log"
	assert_nothing_left "console is a directory"
}

@test "fc-boot: a kernel that is not ELF is refused before anything is made" {
	printf 'MZ\x00\x00 this is no vmlinux' > "$BATS_TEST_TMPDIR/bzImage"
	FCVM_VMM=fc-qemu run_fc 1 --timeout 30 fc-boot --name x --kernel "$BATS_TEST_TMPDIR/bzImage"
	assert_contains "$output" "kernel '$BATS_TEST_TMPDIR/bzImage' is not a bootable ELF vmlinux" \
		"says what is wrong with the kernel"
	assert_contains "$output" "not an ELF file" "and why"
	assert_nothing_left "non-ELF kernel"
}

@test "fc-boot: a tap that does not exist is refused before anything is made" {
	FCVM_VMM=fc-qemu run_fc 1 --timeout 30 fc-boot --name x --kernel "$KERNEL" --tap fcnotap0
	assert_contains "$output" "tap 'fcnotap0' does not exist" "names the tap"
	assert_nothing_left "missing tap"
}

@test "fc-boot: an API 400 reports the sanitised fault_message, not 'Input/output error', and cleans up" {
	FAKE_VMM=fault400 FCVM_VMM="$FAKE" run_fc 1 --timeout 30 fc-boot --name x --kernel "$KERNEL"
	assert_contains "$output" "PUT /machine-config: HTTP 400: bad machine ?[31mconfig? (fake)" \
		"Firecracker's fault_message, control characters and bidi override replaced"
	[[ "$output" != *"Input/output error"* ]] || { echo "bogus strerror: $output" >&2; false; }
	[[ "$output" != *$'\e'* ]] || { echo "raw escape reached the terminal" >&2; false; }
	assert_nothing_left "API 400"
}

@test "fc-boot: --kernel without --initrd sends no initrd_path (Firecracker's spec has no null)" {
	export FCVM_API_TRACE="$BATS_TEST_TMPDIR/api-trace.jsonl"
	FAKE_VMM=console FAKE_VMM_BYTES=10 FCVM_VMM="$FAKE" run_fc 0 --timeout 30 \
		fc-boot --name noinitrd --kernel "$KERNEL"
	local body; body=$(jq -c 'select(.path == "/boot-source") | .body' "$FCVM_API_TRACE")
	assert_eq "$(jq 'has("initrd_path")' <<<"$body")" false "no initrd_path key: $body"
	jq -c . <<<"$body" > "$BATS_TEST_TMPDIR/body.json"
	run "$BATS_TEST_DIRNAME/contract/validate-request" PUT /boot-source "$BATS_TEST_TMPDIR/body.json"
	assert_eq "$status" 0 "the request validates against Firecracker's spec: $output"
}

@test "fc-boot: SIGTERM while the VMM starts stops at once (128+15) and leaves nothing" {
	FAKE_VMM=run FAKE_VMM_DELAY=120 FCVM_VMM="$FAKE" fc-boot --name slow --kernel "$KERNEL" 3>&- &
	local pid=$!
	wait_status starting 30 "$pid"
	local vmm="" i
	for ((i = 0; i < 100 && -z "$vmm"; i++)); do
		vmm=$(jq -r '.vmm_pid // empty' "$FCVM_ROOT"/state/*.json 2>/dev/null); sleep 0.1
	done
	kill -TERM "$pid"
	# Bounded far below the VMM's 120 s delay: the wait for its API must end.
	for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid"; echo "fc-boot ignored SIGTERM while starting" >&2; return 1
	fi
	run wait "$pid"
	assert_eq "$status" 143 "stopped by SIGTERM, not a failure"
	[ -z "$vmm" ] || ! kill -0 "$vmm" 2>/dev/null || { echo "VMM $vmm still runs" >&2; false; }
	assert_nothing_left "stopped while starting"
}

# --- item 3: the janitor survives a SIGKILL of the whole process group -------

@test "fc-boot: kill -9 of fc-boot's whole process group still removes record and sockets" {
	FAKE_VMM=run FCVM_VMM="$FAKE" setsid fc-boot --name grp --kernel "$KERNEL" 3>&- &
	local pid=$!
	wait_status running 30 "$pid"
	local rec; rec=$(cat "$FCVM_ROOT"/state/*.json)
	local owner vmm pgid
	owner=$(jq -r .pid <<<"$rec"); vmm=$(jq -r .vmm_pid <<<"$rec")
	pgid=$(ps -o pgid= -p "$owner" | tr -d ' ')
	# Never signal our own group (bats itself).
	assert_own_group "$pgid"
	[ "$(find "$FCVM_ROOT/run" -type s | wc -l)" -ge 1 ]
	kill -9 -- "-$pgid"
	local i
	for ((i = 0; i < 100; i++)); do
		if [ "$(count_state)" -eq 0 ] && [ "$(find "$FCVM_ROOT/run" -mindepth 1 | wc -l)" -eq 0 ] && ! kill -0 "$vmm" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	assert_eq "$(count_state)" 0 "the janitor removed state/<id>.json and .pid"
	assert_eq "$(find "$FCVM_ROOT/run" -mindepth 1 | wc -l)" 0 "the janitor removed run/<id>/ and its sockets"
	if kill -0 "$vmm" 2>/dev/null; then echo "VMM $vmm still runs" >&2; false; fi
	wait "$pid" 2>/dev/null || true
}

@test "fc-boot: with a real guest, kill -9 of the process group leaves no QEMU, socket or state" {
	need_guest
	FCVM_VMM=fc-qemu setsid fc-boot --name grpq --kernel "$FCVM_TEST_KERNEL/vmlinux" \
		--initrd "$FCVM_TEST_KERNEL/initrd.img" 3>&- &
	local pid=$!
	wait_status running 60 "$pid"
	local pgid; pgid=$(ps -o pgid= -p "$(jq -r .pid "$FCVM_ROOT"/state/*.json)" | tr -d ' ')
	assert_own_group "$pgid"
	kill -9 -- "-$pgid"
	local i
	for ((i = 0; i < 100; i++)); do
		[ -z "$(leaked_procs)" ] && [ "$(count_state)" -eq 0 ] &&
			[ "$(find "$FCVM_ROOT/run" -mindepth 1 | wc -l)" -eq 0 ] && break
		sleep 0.1
	done
	assert_eq "$(leaked_procs)" "" "no QEMU, fc-qemu or fc-vsock left"
	assert_eq "$(count_state)" 0 "no state left"
	assert_eq "$(find "$FCVM_ROOT/run" -mindepth 1 | wc -l)" 0 "no run dir or socket left"
	wait "$pid" 2>/dev/null || true
}

@test "fc-boot: a VM whose vsock backend (fc-vsock) dies is stopped, and fc-boot fails saying why" {
	need_guest
	FCVM_VMM=fc-qemu fc-boot --name vsockdies --kernel "$FCVM_TEST_KERNEL/vmlinux" \
		--initrd "$FCVM_TEST_KERNEL/initrd.img" 3>&- 2>"$BATS_TEST_TMPDIR/boot.err" &
	local pid=$!
	wait_status running 60 "$pid"
	local vs; vs=$(pgrep -f "fc-vsock.*$FCVM_ROOT" | head -1)
	[ -n "$vs" ] || { echo "no fc-vsock found" >&2; return 1; }
	kill -9 "$vs"
	local i
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "fc-boot still runs 15 s after its vsock backend died" >&2
		kill "$pid"; wait "$pid"; return 1
	fi
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -ne 0 ] || { echo "fc-boot exited 0 although the VM lost its backend" >&2; return 1; }
	assert_contains "$(cat "$BATS_TEST_TMPDIR/boot.err")" "vsock backend" "the cause is named"
	assert_eq "$(leaked_procs)" "" "no QEMU or fc-qemu left"
	assert_eq "$(count_state)" 0 "no state left"
}

# --- item 16: the console log is capped and rotated once --------------------

@test "fc-boot: --console-max caps console.log and rotates it once, keeping the newest output" {
	FAKE_VMM=console FAKE_VMM_BYTES=300000 FCVM_VMM="$FAKE" run_fc 0 --timeout 60 \
		fc-boot --name cap --kernel "$KERNEL" --console "$BATS_TEST_TMPDIR/console.log" \
		--console-max 65536
	local cur="$BATS_TEST_TMPDIR/console.log" old="$BATS_TEST_TMPDIR/console.log.1"
	[ -f "$old" ] || { echo "no rotated console.log.1" >&2; false; }
	[ "$(stat -c %s "$cur")" -le 65536 ] || { echo "console.log is $(stat -c %s "$cur") bytes" >&2; false; }
	assert_eq "$(stat -c %s "$old")" 65536 "the rotated log is exactly the cap"
	assert_eq "$(tail -n 1 "$cur")" "FAKE-END-MARKER" "the newest output is kept"
	# The two files hold the newest output, in order, without a gap.
	local joined; joined=$(cat "$old" "$cur" | grep -a '^serial line' | awk '{print $3}' |
		awk 'NR > 1 && $1 != prev + 1 { print "gap at " $1 } { prev = $1 }' | head -1)
	assert_eq "$joined" "" "console.log.1 then console.log are contiguous"
	assert_eq "$(ls "$BATS_TEST_TMPDIR" | grep -c '^console.log')" 2 "rotated once: no console.log.2"
}

@test "fc-boot: the console log is capped at 1 MiB by default" {
	FAKE_VMM=console FAKE_VMM_BYTES=2600000 FCVM_VMM="$FAKE" run_fc 0 --timeout 60 \
		fc-boot --name capd --kernel "$KERNEL"
	local dir; dir=$(find "$FCVM_ROOT/vm-disks" -mindepth 1 -maxdepth 1 -type d)
	[ "$(stat -c %s "$dir/console.log")" -le 1048576 ]
	assert_eq "$(stat -c %s "$dir/console.log.1")" 1048576 "rotated at 1 MiB"
	assert_eq "$(tail -n 1 "$dir/console.log")" "FAKE-END-MARKER" "the newest output is kept"
	run_fc 2 fc-boot --name x --console-max 100
	assert_contains "$output" "invalid --console-max (bytes) '100'" "a tiny cap is refused"
}

@test "fc-boot: the VMM's own log (its stderr) is capped the same way" {
	FAKE_VMM=console FAKE_VMM_BYTES=10 FAKE_VMM_ERR_BYTES=200000 FCVM_VMM="$FAKE" run_fc 0 \
		--timeout 60 fc-boot --name vcap --kernel "$KERNEL" --console-max 65536
	local dir; dir=$(find "$FCVM_ROOT/vm-disks" -mindepth 1 -maxdepth 1 -type d)
	[ "$(stat -c %s "$dir/vmm.log")" -le 65536 ] || { echo "vmm.log is $(stat -c %s "$dir/vmm.log") bytes" >&2; false; }
	assert_eq "$(stat -c %s "$dir/vmm.log.1")" 65536 "vmm.log rotated at the cap"
	assert_eq "$(tail -n 1 "$dir/vmm.log")" "FAKE-END-MARKER" "the newest VMM output is kept"
}

# --- readiness ----------------------------------------------------------------

@test "fc-boot: --ready-fd writes 'ready <id>' once the VM runs, then closes the fd" {
	mkfifo "$BATS_TEST_TMPDIR/ready"
	FAKE_VMM=run FCVM_VMM="$FAKE" fc-boot --name rdy --kernel "$KERNEL" --ready-fd 3 \
		3>"$BATS_TEST_TMPDIR/ready" &
	local pid=$!
	# cat ends only at EOF: the fd must be closed by fc-boot and held by nobody else.
	run timeout 30 cat "$BATS_TEST_TMPDIR/ready"
	assert_eq "$status" 0 "the ready fd reached EOF while fc-boot runs"
	local id; id=$(jq -r .id "$FCVM_ROOT"/state/*.json)
	assert_eq "$output" "ready $id" "one line naming the VM id"
	assert_eq "$(jq -r .status "$FCVM_ROOT"/state/*.json)" running "reported after 'running' was recorded"
	kill -0 "$pid"
	kill -TERM "$pid"
	wait "$pid" || true
	assert_eq "$(count_state)" 0 "state removed on SIGTERM"
}

@test "fc-boot: --ready-fd is closed without a line when the start fails" {
	mkfifo "$BATS_TEST_TMPDIR/ready"
	FAKE_VMM=fault400 FCVM_VMM="$FAKE" fc-boot --name rdyf --kernel "$KERNEL" --ready-fd 3 \
		3>"$BATS_TEST_TMPDIR/ready" 2>/dev/null &
	local pid=$!
	run timeout 30 cat "$BATS_TEST_TMPDIR/ready"
	assert_eq "$status" 0 "EOF on the ready fd"
	assert_eq "$output" "" "no ready line"
	run wait "$pid"
	assert_eq "$status" 1 "fc-boot failed"
	run_fc 2 fc-boot --name x --ready-fd 77
	assert_contains "$output" "--ready-fd 77 is not an open descriptor" "a closed fd is a usage error"
}

@test "fc-boot: the state record carries the agreed fields" {
	FAKE_VMM=run FCVM_VMM="$FAKE" fc-boot --name rec --kernel "$KERNEL" --boot-args "quiet" 3>&- &
	local pid=$!
	wait_status running 30 "$pid"
	local rec; rec=$(cat "$FCVM_ROOT"/state/*.json)
	local f
	for f in version id name process_type pid pid_start vmm_pid vmm_pid_start status created \
		config sockets console disk_dir; do
		[ "$(jq "has(\"$f\")" <<<"$rec")" = true ] || { echo "no field $f: $rec" >&2; false; }
	done
	for f in cpus memory_mib kernel initrd rootfs drives tap vmm boot_args; do
		[ "$(jq ".config | has(\"$f\")" <<<"$rec")" = true ] || { echo "no config.$f: $rec" >&2; false; }
	done
	assert_eq "$(jq -r .process_type <<<"$rec")" vm "process_type"
	assert_eq "$(jq -r .version <<<"$rec")" 1 "version"
	assert_contains "$(jq -r .config.boot_args <<<"$rec")" "fcvm.id=$(jq -r .id <<<"$rec") root=none quiet" \
		"boot_args is the full command line"
	kill -TERM "$pid"
	wait "$pid" || true
}
