# tests/helpers.bash - shared by every tests/NNN-*.bats file.
#
#   run_fc CODE [--timeout S] TOOL ARGS...   run a tool, assert its exit code
#   assert_contains TEXT NEEDLE "what it checks"
#   need_guest                                skip (or fail in CI) without guest artifacts
#   leak_check                                called by teardown: fails on leftovers
#
# Each test gets a private FCVM_ROOT under BATS_TEST_TMPDIR unless the file
# sets FCVM_TEST_SHARED_ROOT (expensive fixtures: kernel, rootfs) - those are
# built once per run by tests/run-tests and cached by their inputs.

: "${FCVM_BUILD:=$BATS_TEST_DIRNAME/../build}"
export PATH="$FCVM_BUILD/bin:$PATH"
export FCVM_LOG="${FCVM_LOG:-info}"
export NO_COLOR=1

# Fixtures prepared by tests/run-tests (kernel/rootfs dirs; empty if absent).
: "${FCVM_TEST_KERNEL:=}"
: "${FCVM_TEST_ROOTFS:=}"

fc_setup_root() {
	export FCVM_ROOT="$BATS_TEST_TMPDIR/root"
	mkdir -p "$FCVM_ROOT"
	# Tools refuse a data root 'fc-setup storage' did not prepare; a test
	# root on the host's ext4 is prepared as is (no reflink there).
	fc-setup storage --dir "$FCVM_ROOT" --without-reflink >/dev/null 2>&1 ||
		{ echo "fc_setup_root: cannot prepare $FCVM_ROOT" >&2; return 1; }
}

# run_fc EXPECTED [--timeout S] CMD...: run with a timeout, show output on failure.
run_fc() {
	local expected=$1 t=120
	shift
	if [ "$1" = "--timeout" ]; then t=$2; shift 2; fi
	# 127 is also bash's "command not found": bats warns (BW01) unless told
	# it is expected.
	if [ "$expected" = 127 ]; then
		run -127 timeout --kill-after=5 "$t" "$@"
	else
		run timeout --kill-after=5 "$t" "$@"
	fi
	if [ "$status" -ne "$expected" ]; then
		echo "command: $*" >&2
		echo "expected exit $expected, got $status" >&2
		echo "output: $output" >&2
		return 1
	fi
}

# assert_contains HAYSTACK NEEDLE DESCRIPTION
assert_contains() {
	if [[ "$1" != *"$2"* ]]; then
		echo "FAILED: $3" >&2
		echo "  expected to contain: $2" >&2
		echo "  actual: $1" >&2
		return 1
	fi
}

# assert_eq ACTUAL EXPECTED DESCRIPTION
assert_eq() {
	if [ "$1" != "$2" ]; then
		echo "FAILED: $3" >&2
		echo "  expected: $2" >&2
		echo "  actual:   $1" >&2
		return 1
	fi
}

# Guest tests need the kernel and rootfs fixtures and QEMU. Outside CI a
# missing fixture skips with the reason; in CI it is a failure.
need_guest() {
	local why=""
	command -v qemu-system-x86_64 >/dev/null || why="qemu-system-x86_64 not installed"
	[ -n "$FCVM_TEST_KERNEL" ] && [ -f "$FCVM_TEST_KERNEL/vmlinux" ] || why="${why:-no test kernel (run tests/run-tests, which builds it)}"
	if [ -n "$why" ]; then
		[ -n "${CI:-}" ] && { echo "CI must not skip: $why" >&2; return 1; }
		skip "$why"
	fi
}

need_rootfs() {
	need_guest
	if [ -z "$FCVM_TEST_ROOTFS" ] || [ ! -f "$FCVM_TEST_ROOTFS/rootfs.ext4" ]; then
		[ -n "${CI:-}" ] && { echo "CI must not skip: no test rootfs" >&2; return 1; }
		skip "no test rootfs (run tests/run-tests, which builds it)"
	fi
}

# Real Firecracker needs a KVM that can run a guest; never faked here.
need_firecracker() {
	command -v firecracker >/dev/null ||
		skip "needs the real firecracker binary (not installable here) and a KVM that runs guests"
	[ -c /dev/kvm ] || skip "needs /dev/kvm for Firecracker"
	# fc-setup preflight's real probe boots a guest under KVM; trust only that.
	local probe; probe=$(mktemp -d)
	FCVM_ROOT="$probe" fc-setup preflight --json >/dev/null 2>&1
	local usable; usable=$(jq -r '.usable' "$probe/kvm-probe.json" 2>/dev/null)
	rm -rf "$probe"
	[ "$usable" = true ] || skip "KVM here cannot run a guest (fc-setup preflight): Firecracker cannot boot"
}

# fc_vm_root NAME [PARENT]: for tests that boot VMs, FCVM_ROOT on the
# fixture btrfs (fc-disk reflinks there; or in PARENT), prepared by 'fc-setup
# storage', with the cached kernel and rootfs as its defaults, and
# FCVM_VMM=fc-qemu. Skips like need_rootfs. The caller removes "$FCVM_ROOT".
# Startup snapshots are off (FCVM_STARTUP_SNAPSHOTS=0): the tests of
# everything else run the boot path they are about, and tests/113 turns
# them on.
fc_vm_root() {
	need_rootfs
	export FCVM_ROOT="${2:-$FCVM_TEST_BTRFS}/$1-$BATS_TEST_NUMBER-$$"
	mkdir -p "$FCVM_ROOT"
	fc-setup storage --dir "$FCVM_ROOT" >/dev/null
	mkdir -p "$FCVM_ROOT/kernels" "$FCVM_ROOT/rootfs"
	ln -s "$FCVM_TEST_KERNEL" "$FCVM_ROOT/kernels/default"
	ln -s "$FCVM_TEST_ROOTFS" "$FCVM_ROOT/rootfs/default"
	export FCVM_VMM=fc-qemu FCVM_STARTUP_SNAPSHOTS=0
}

# wait_line FILE REGEX SECONDS [PID]: until FILE has a line matching REGEX;
# fails early when PID (if given) ends, showing the file's tail.
wait_line() {
	local file=$1 re=$2 secs=$3 pid=${4:-} i
	for ((i = 0; i < secs * 10; i++)); do
		grep -qE "$re" "$file" 2>/dev/null && return 0
		[ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && break
		sleep 0.1
	done
	echo "no line matching '$re' in $file within ${secs}s; its tail:" >&2
	tail -20 "$file" >&2
	return 1
}

# wait_until SECONDS CMD...: until CMD succeeds (checked every 0.1 s); a
# failure names the command. For bounded staleness, not for timing.
wait_until() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "not true within ${secs}s: $*" >&2
	return 1
}

# lines_over FILE N: FILE has more than N lines.
lines_over() { [ "$(wc -l < "$1")" -gt "$2" ]; }

# Processes of ours still running with this test's FCVM_ROOT in argv/env (the
# network janitor too: a root removed before it ran fc-net down would leave
# the TAP and nft table it was to remove).
leaked_procs() {
	local p
	for p in $(pgrep -f "qemu-system-x86_64|fc-qemu|fc-vsock|fc-boot|fc-clone|fc-uffd|fc-agent|fc-run|fcvm _janitor|fcvm _netjanitor|fcvm _runwatch" 2>/dev/null); do
		[ "$p" = "$$" ] && continue
		# Processes may end while we look: read quietly.
		if tr '\0' '\n' 2>/dev/null < /proc/$p/environ | grep -qx "FCVM_ROOT=$FCVM_ROOT" ||
		   tr '\0' ' ' 2>/dev/null < /proc/$p/cmdline | grep -qF "$FCVM_ROOT"; then
			echo "$p $(tr '\0' ' ' 2>/dev/null < /proc/$p/cmdline)"
		fi
	done
}

# leaked_files: what a test must not leave in its data root: disk dirs of
# --rm runs (they carry a .rm marker), image build temporaries, mounts and
# loop devices under the root (or the test's tmpdir), taps the root's JSON
# files name that still exist.
leaked_files() {
	local d m
	for m in "$FCVM_ROOT"/vm-disks/*/.rm; do
		[ -e "$m" ] && echo "vm-disk(--rm):${m%/.rm}"
	done
	find "$FCVM_ROOT/images" -maxdepth 1 -name '.*tmp*' 2>/dev/null | sed 's/^/temporary:/'
	findmnt -rn -o TARGET 2>/dev/null | grep -F "$FCVM_ROOT/" | sed 's/^/mount:/'
	losetup -l -n -O NAME,BACK-FILE 2>/dev/null |
		grep -F -e "$FCVM_ROOT/" -e "${BATS_TEST_TMPDIR:-/nonexistent}/" | sed 's/^/loop:/'
	for d in $(find "$FCVM_ROOT" -maxdepth 3 -name '*.json' -size -1M -print0 2>/dev/null |
		   xargs -0 -r grep -ohE '"fc[0-9a-f]{8}"' 2>/dev/null | tr -d '"' | sort -u); do
		[ -e "/sys/class/net/$d" ] && echo "tap:$d"
	done
	return 0
}

# Fails (and kills them) if the test left processes, sockets, state or the
# files above behind. What is removed asynchronously (a --rm janitor, an
# owner's janitor) gets up to 10 s.
leak_check() {
	[ -n "${FCVM_ROOT:-}" ] || return 0
	local procs socks states files i
	for ((i = 0; i < 50; i++)); do
		procs=$(leaked_procs)
		socks=$(find "$FCVM_ROOT" -type s 2>/dev/null)
		states=$(find "$FCVM_ROOT/state" -name '*.json' -o -name '*.pid' 2>/dev/null)
		files=$(leaked_files)
		[ -z "$procs$socks$states$files" ] && return 0
		sleep 0.2
	done
	echo "LEAK after test: processes: [$procs] sockets: [$socks] state: [$states] files: [$files]" >&2
	for p in $(echo "$procs" | awk '{print $1}'); do kill -9 "$p" 2>/dev/null; done
	return 1
}
