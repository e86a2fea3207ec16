#!/usr/bin/env bats
# fcvm podman run -v HOST:GUEST[:ro]: host directories in a real microVM
# (fc-qemu here) through fc-volume (host) and fc-volfs (guest) over vsock,
# end to end. tests/110-volume.bats covers the server and client without a
# VM; this file the wiring: fcvm.sh's checks and keeper, the plan's
# "volumes", fc-agent's mounts, the rootfs's fc-volfs.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	fc_vm_root vol
	HOSTRW="$BATS_TEST_TMPDIR/rw" HOSTRO="$BATS_TEST_TMPDIR/ro"
	mkdir -p "$HOSTRW" "$HOSTRO"
}

teardown() {
	if [ -n "${RUN_PID:-}" ]; then
		kill "$RUN_PID" 2>/dev/null || true
		wait "$RUN_PID" 2>/dev/null || true
	fi
	local r=0
	vol_leaks || r=$?
	leak_check || r=$?
	rm -rf "$FCVM_ROOT"
	return $r
}

# fc-volume servers or volume keepers of this test's data root (their
# listen path is in it), after up to 10 s.
vol_procs() {
	local p
	for p in $(pgrep -f "fc-volume serve|fcvm _volkeeper" 2>/dev/null); do
		tr '\0' ' ' 2>/dev/null < /proc/$p/cmdline | grep -qF "$FCVM_ROOT/" && echo "$p"
	done
	return 0
}

vol_leaks() {
	local i left
	for ((i = 0; i < 50; i++)); do
		left=$(vol_procs)
		[ -z "$left" ] && return 0
		sleep 0.2
	done
	echo "LEAK: volume processes left: $left" >&2
	kill -9 $left 2>/dev/null
	return 1
}

# wait_file PATH SECONDS: until PATH exists; fails early when fcvm ends.
wait_file() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -e "$1" ] && return 0
		kill -0 "$RUN_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "no '$1' within $2 s; fcvm's stderr:" >&2
	cat "$BATS_TEST_TMPDIR/run.err" >&2
	return 1
}

@test "volumes: the container writes, the host sees it; a host file read; :ro refuses with EROFS (container, exec, exec --vm as root); nothing left after" {
	printf 'from the host\n' > "$HOSTRO/in.txt"
	printf 'rw side\n' > "$HOSTRW/host.txt"
	# The container does its part at once, then waits for a file the host
	# makes in the mapped directory (a change on the host seen in the guest).
	# shellcheck disable=SC2016
	fcvm podman run --name volvm --network none -v "$HOSTRW:/data" --map "$HOSTRO:/in:ro" "$IMG" sh -c '
		echo "written in the guest" > /data/out.txt
		cat /in/in.txt /data/host.txt > /data/copy.txt
		mkdir /data/sub && echo deep > /data/sub/f
		if echo x 2>/data/ro.err > /in/x; then echo wrote > /data/ro.result; else echo refused > /data/ro.result; fi
		while [ ! -e /data/stop ]; do sleep 0.2; done
		echo bye > /data/bye' >"$BATS_TEST_TMPDIR/run.out" 2>"$BATS_TEST_TMPDIR/run.err" 3>&- &
	RUN_PID=$!
	wait_file "$HOSTRW/ro.result" 400
	assert_eq "$(cat "$HOSTRW/out.txt")" "written in the guest" "the container's file, on the host"
	assert_eq "$(cat "$HOSTRW/copy.txt")" "from the host"$'\n'"rw side" "host files read in the container"
	assert_eq "$(cat "$HOSTRW/sub/f")" deep "a directory made in the guest"
	assert_eq "$(cat "$HOSTRW/ro.result")" refused ":ro: the write failed"
	assert_contains "$(cat "$HOSTRW/ro.err")" "Read-only file system" ":ro: EROFS in the container"
	[ ! -e "$HOSTRO/x" ] || { echo "a file was made in the :ro directory" >&2; false; }
	# the volume servers run, one per volume, listening on the VM's vsock
	local n; n=$(pgrep -fc "fc-volume serve .*$FCVM_ROOT/run/" || true)
	assert_eq "$n" 2 "one fc-volume per -v"
	if [ -x "$(command -v fc-exec)" ]; then
		run_fc 0 --timeout 120 fcvm exec volvm -- sh -c 'echo y > /in/y; echo "rc=$?"'
		assert_contains "$output" "Read-only file system" "fcvm exec into the container: EROFS"
		[ "${output#*rc=0}" = "$output" ] || { echo "exec wrote: $output" >&2; false; }
		# As root in the guest, even after remounting the FUSE mount
		# read-write: the host server refuses.
		# (-v order: the second volume is /run/fcvm/vol/1 in the guest)
		run_fc 0 --timeout 120 fcvm exec --vm volvm -- sh -c '
			d=/run/fcvm/vol/1
			[ -e "$d/in.txt" ] || { echo "no /in mount at $d"; exit 2; }
			echo "uid=$(id -u)"
			mount -o remount,rw "$d" 2>/dev/null && echo remounted
			if (echo z > "$d/z") 2>&1; then echo WROTE; fi
			true'
		assert_contains "$output" "uid=0" "as root in the guest"
		assert_contains "$output" "Read-only file system" "exec --vm as root: EROFS"
		[ "${output#*WROTE}" = "$output" ] || { echo "exec --vm wrote: $output" >&2; false; }
		[ ! -e "$HOSTRO/z" ] && [ ! -e "$HOSTRO/y" ] || { echo "a file reached the :ro directory" >&2; false; }
	fi
	touch "$HOSTRW/stop"
	wait_file "$HOSTRW/bye" 60
	local rc=0
	wait "$RUN_PID" || rc=$?
	RUN_PID=""
	[ "$rc" -eq 0 ] || cat "$BATS_TEST_TMPDIR/run.err" >&2
	assert_eq "$rc" 0 "the container's exit code"
	# nothing left: no server, no keeper, no socket (leak_check: sockets)
	vol_leaks
	assert_eq "$(find "$FCVM_ROOT" -type s | wc -l)" 0 "no sockets in the data root"
	[ ! -e "$HOSTRO/x" ] && [ "$(ls "$HOSTRO")" = in.txt ] || { ls -la "$HOSTRO" >&2; false; }
}

@test "volumes: a SIGKILL of fcvm takes the volume servers with the VM" {
	fcvm podman run --rm --name volkill --network none -v "$HOSTRW:/data" "$IMG" \
		sh -c 'echo up > /data/up; sleep 600' >/dev/null 2>"$BATS_TEST_TMPDIR/run.err" 3>&- &
	RUN_PID=$!
	wait_file "$HOSTRW/up" 400
	[ -n "$(vol_procs)" ] || { echo "no volume processes while the VM runs" >&2; false; }
	kill -9 "$RUN_PID"
	wait "$RUN_PID" 2>/dev/null || true
	RUN_PID=""
	local i
	for ((i = 0; i < 300; i++)); do
		[ -z "$(vol_procs)" ] && break
		sleep 0.1
	done
	assert_eq "$(vol_procs)" "" "volume servers and keeper gone within 30 s"
	# leak_check (teardown): no sockets, records or VM processes either
}

@test "volumes: a detached VM keeps its volume servers after fcvm returns; fcvm stop ends them" {
	run_fc 0 --timeout 400 fcvm podman run -d --name voldet --network none -v "$HOSTRW:/data" "$IMG" \
		sh -c 'echo up > /data/up; while [ ! -e /data/go ]; do sleep 0.2; done; echo seen > /data/seen; sleep 600' 3>&-
	local i
	for ((i = 0; i < 1200; i++)); do
		[ -e "$HOSTRW/up" ] && break
		sleep 0.1
	done
	[ -e "$HOSTRW/up" ] || { echo "the detached container wrote nothing" >&2; false; }
	[ -n "$(vol_procs)" ] || { echo "no volume processes after fcvm -d returned" >&2; false; }
	# still served after fcvm is gone: a host change reaches the guest
	touch "$HOSTRW/go"
	for ((i = 0; i < 600; i++)); do
		[ -e "$HOSTRW/seen" ] && break
		sleep 0.1
	done
	[ -e "$HOSTRW/seen" ] || { echo "the volume stopped working once fcvm returned" >&2; false; }
	run_fc 0 --timeout 120 fcvm stop voldet
	for ((i = 0; i < 300; i++)); do
		[ -z "$(vol_procs)" ] && break
		sleep 0.1
	done
	assert_eq "$(vol_procs)" "" "fcvm stop: volume servers and keeper gone within 30 s"
}

@test "volumes: bad -v refused before anything is made (exit 125, one line)" {
	local spec
	for spec in "$BATS_TEST_TMPDIR/missing:/data" "$HOSTRW:data" "$HOSTRW" "$HOSTRW:/" \
		    "$HOSTRW:/a/../b" ":/data" "$HOSTRO/in.txt:/data"; do
		: > "$HOSTRO/in.txt"
		run -125 --separate-stderr fcvm podman run --rm -v "$spec" "$IMG" true
		assert_eq "$(printf '%s\n' "$stderr" | wc -l)" 1 "one line for -v '$spec'"
		assert_contains "$stderr" "invalid -v" "-v '$spec' named"
	done
	run -125 --separate-stderr fcvm podman run --rm -v "$HOSTRW:/d" -v "$HOSTRO:/d" "$IMG" true
	assert_contains "$stderr" "mapped twice" "the same GUEST twice"
	assert_eq "$(find "$FCVM_ROOT/vm-disks" -mindepth 1 | wc -l)" 0 "no VM disk dir made"
	assert_eq "$(find "$FCVM_ROOT/state" "$FCVM_ROOT/run" -mindepth 1 2>/dev/null | wc -l)" 0 "no record or socket"
}
