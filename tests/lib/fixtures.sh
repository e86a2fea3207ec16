# tests/lib/fixtures.sh - sourced by tests/run-tests and the benchmarks.
# fixtures_prepare [--no-rootfs]: a reflink-capable data root on a btrfs loop
# image kept in $FCVM_CACHE (what one run builds, the next finds), the guest
# kernel and the rootfs, each keyed by its inputs by fc-setup, and fcvm's
# QEMU. Exports FCVM_TEST_KERNEL, FCVM_TEST_ROOTFS, FCVM_TEST_BTRFS,
# FCVM_TEST_QEMU. fixtures_release
# unmounts the data root (unless FCVM_TEST_KEEP_MOUNT is set).
fixroot=""

fixtures_prepare() {
	fixroot="${FCVM_TEST_ROOT:-/run/fcvm-test}"
	mkdir -p "$fixroot" "$FCVM_CACHE"
	printf '== fixtures: data root %s (image %s)\n' "$fixroot" "$FCVM_CACHE/test-btrfs.img" >&2
	FCVM_ROOT="$fixroot" fc-setup storage --image "$FCVM_CACHE/test-btrfs.img" --size 30 >&2 || return 1
	printf '== fixtures: guest kernel\n' >&2
	FCVM_TEST_KERNEL=$(FCVM_ROOT="$fixroot" fc-setup kernel) || return 1
	export FCVM_TEST_KERNEL
	export FCVM_TEST_BTRFS="$fixroot/t"
	mkdir -p "$FCVM_TEST_BTRFS"
	[ "${1:-}" = --no-rootfs ] && return 0
	printf '== fixtures: rootfs (the first build takes minutes)\n' >&2
	FCVM_TEST_ROOTFS=$(FCVM_ROOT="$fixroot" fc-setup rootfs) || return 1
	export FCVM_TEST_ROOTFS
	fixtures_qemu
}

# fixtures_qemu: fcvm's snapshot-capable QEMU (fc-setup qemu, cached in
# $FCVM_CACHE/qemu by source version + patch; the first build takes about
# 8 minutes). Exports FCVM_TEST_QEMU (empty when it could not be built,
# then FCVM_TEST_QEMU_WHY says why: snapshot tests skip, or fail in CI).
fixtures_qemu() {
	local log="$FCVM_CACHE/qemu-build.log"
	printf '== fixtures: fcvm QEMU (cached; a first build takes minutes, log %s)\n' "$log" >&2
	if FCVM_TEST_QEMU=$(fc-setup qemu 2>"$log"); then
		FCVM_TEST_QEMU_WHY=""
	else
		FCVM_TEST_QEMU=""
		FCVM_TEST_QEMU_WHY=$(tail -1 "$log")
		printf '== fixtures: no fcvm QEMU: %s\n' "$FCVM_TEST_QEMU_WHY" >&2
	fi
	export FCVM_TEST_QEMU FCVM_TEST_QEMU_WHY
}

fixtures_release() {
	# Several runs at once (developers in parallel) share one mount: the
	# one that set FCVM_TEST_KEEP_MOUNT leaves it for the others.
	[ -n "${FCVM_TEST_KEEP_MOUNT:-}" ] && return 0
	if [ -n "$fixroot" ] && mountpoint -q "$fixroot"; then
		FCVM_ROOT="$fixroot" fc-setup storage --unmount >/dev/null 2>&1 || umount "$fixroot"
	fi
}
