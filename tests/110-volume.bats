#!/usr/bin/env bats
# fc-volume + fc-volfs: host directory volumes, proven without a VM. The
# server and the FUSE client run on the host connected by a Unix socket
# (in a VM the same client dials AF_VSOCK and the server listens on the
# hybrid-vsock path "<uds>_<port>"). Needs root and /dev/fuse.

load helpers

setup() {
	[ "$(id -u)" = 0 ] || skip "needs root (FUSE mounts and the uid switches of the POSIX suite)"
	[ -c /dev/fuse ] || skip "needs /dev/fuse"
	command -v python3 >/dev/null || skip "needs python3"
	W="$BATS_TEST_TMPDIR"
	chmod 755 "$W"
	PIDS=() MNTS=()
	VOL="$BATS_TEST_DIRNAME/volume"
}

teardown() {
	local m p left=""
	for m in "${MNTS[@]}"; do
		mountpoint -q "$m" 2>/dev/null && umount "$m" 2>/dev/null
		mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		# A client whose mount is gone exits by itself; give it a moment.
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill "$p" 2>/dev/null
		# Bounded: a server stuck in a system call cannot take SIGTERM.
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$p" 2>/dev/null && { left="$left stuck $p"; kill -9 "$p"; }
		wait "$p" 2>/dev/null
	done
	# Leak check: no mount of ours, no process of ours.
	if grep -qF " $W" /proc/mounts; then
		left="mounts: $(grep -F " $W" /proc/mounts)"
		for m in $(awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts); do umount -l "$m"; done
	fi
	for p in $(pgrep -f "fc-vol(ume|fs) .*$W" 2>/dev/null); do left="$left proc $p"; kill -9 "$p"; done
	# Sanitizer builds: a report from a server or client fails the test.
	if grep -qsE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$W/server.log" "$W/client.log"; then
		left="$left sanitizer: $(grep -hsE -A5 "Sanitizer|runtime error:" "$W/server.log" "$W/client.log" | head -20)"
	fi
	[ -z "$left" ] || { echo "LEAK after test: $left" >&2; return 1; }
}

# serve DIR SOCK [ARGS...]: start a server, wait for its ready line.
serve() {
	local dir=$1 sock=$2 ready="$W/ready.$RANDOM"
	shift 2
	fc-volume serve --dir "$dir" --listen "$sock" --ready-fd 5 "$@" 5>"$ready" 2>>"$W/server.log" &
	PIDS+=($!)
	wait_line "$ready" "^ready $sock\$" 10 "$!"
}

# mount_vol SOCK MNT [ARGS...]: mount through fc-volfs, wait for ready.
mount_vol() {
	local sock=$1 mnt=$2 ready="$W/ready.$RANDOM"
	shift 2
	mkdir -p "$mnt"
	fc-volfs --connect "$sock" "$@" --ready-fd 5 "$mnt" 5>"$ready" 2>>"$W/client.log" &
	PIDS+=($!)
	MNTS+=("$mnt")
	wait_line "$ready" "^ready $mnt\$" 10 "$!"
	mountpoint -q "$mnt"
}

# tree_sum DIR: every path, type, mode, size, link target and content hash.
tree_sum() {
	(cd "$1" && find . -printf '%p %y %m %s %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}

@test "fc-volume: usage, bad arguments and a bad directory are refused" {
	run_fc 0 fc-volume -h
	assert_contains "$output" "fc-volume serve --dir HOST_DIR" "help prints the synopsis"
	run_fc 2 fc-volume
	run_fc 2 fc-volume serve --listen "$W/s.sock"
	assert_contains "$output" "--dir and --listen are required" "names what is missing"
	run_fc 2 fc-volume serve --dir "$W" --listen "$W/s.sock" --connections 0
	assert_contains "$output" "--connections" "names the bad number"
	run_fc 1 fc-volume serve --dir "$W/missing" --listen "$W/s.sock"
	assert_contains "$output" "fc-volume: open the shared directory '$W/missing': No such file or directory" "names the directory and the cause"
	ln -s "$W" "$W/link"
	run_fc 1 fc-volume serve --dir "$W/link" --listen "$W/s.sock"
	assert_contains "$output" "open the shared directory" "a symlink as the share is refused"
	[ ! -e "$W/s.sock" ]
	run_fc 0 fc-volfs -h
	run_fc 0 fc-volume mount -h
	assert_contains "$output" "usage: fc-volfs (--connect UNIX_PATH | --vsock PORT" "fc-volume mount runs fc-volfs"
	run_fc 2 fc-volfs "$W/m"
	assert_contains "$output" "exactly one of --connect and --vsock" "the client needs a server"
	run_fc 1 fc-volfs --connect "$W/none.sock" --reconnect-timeout 0.2 "$W"
	assert_contains "$output" "none.sock" "an absent server is named"
}

@test "fc-volume: a mount reads and writes the host directory, and host changes show through" {
	mkdir "$W/share"
	echo "from the host" > "$W/share/hello"
	serve "$W/share" "$W/s.sock"
	mount_vol "$W/s.sock" "$W/mnt" --attr-timeout 0.5
	assert_eq "$(cat "$W/mnt/hello")" "from the host" "the mount reads a host file"
	echo "from the mount" > "$W/mnt/new"
	assert_eq "$(cat "$W/share/new")" "from the mount" "the host sees a file written through the mount"
	echo "changed on the host" > "$W/share/hello"
	# Bounded staleness: attributes are cached for --attr-timeout.
	local i seen=""
	for i in $(seq 50); do
		seen=$(cat "$W/mnt/hello")
		[ "$seen" = "changed on the host" ] && break
		sleep 0.1
	done
	assert_eq "$seen" "changed on the host" "a host change is visible through the mount within the attribute timeout"
	touch "$W/share/made-on-host"
	for i in $(seq 50); do [ -e "$W/mnt/made-on-host" ] && break; sleep 0.1; done
	[ -e "$W/mnt/made-on-host" ]
	df "$W/mnt" >/dev/null
	umount "$W/mnt"
	# The client exits once unmounted.
	for i in $(seq 50); do kill -0 "${PIDS[1]}" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "${PIDS[1]}" 2>/dev/null; then echo "the volume client still runs" >&2; false; fi
}

@test "fc-volume: every server thread runs with five capabilities, NO_NEW_PRIVS and seccomp" {
	mkdir "$W/share"
	serve "$W/share" "$W/s.sock"
	local pid=${PIDS[0]} t n=0 asan=""
	# Sanitizer builds install no seccomp filter (lib/seccomp.h).
	ldd "$(command -v fc-volume)" 2>/dev/null | grep -q libasan && asan=1
	for t in /proc/$pid/task/*; do
		n=$((n + 1))
		[ -n "$asan" ] || assert_contains "$(grep Seccomp: "$t/status")" "2" "thread ${t##*/} has a seccomp filter"
		assert_contains "$(grep NoNewPrivs: "$t/status")" "1" "thread ${t##*/} has NO_NEW_PRIVS"
		assert_contains "$(grep CapEff: "$t/status")" "000000000000001f" "thread ${t##*/} keeps only CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID"
		assert_contains "$(grep CapBnd: "$t/status")" "000000000000001f" "thread ${t##*/} has dropped the rest from its bounding set"
	done
	[ "$n" -ge 5 ] || { echo "expected the loop and 4 fsync workers, got $n threads" >&2; return 1; }
}

@test "fc-volume: POSIX differential suite - the mount answers like a plain host directory" {
	mkdir "$W/plain" "$W/share"
	chmod 755 "$W/plain" "$W/share"
	serve "$W/share" "$W/s.sock"
	mount_vol "$W/s.sock" "$W/mnt" --connections 4
	run timeout 600 python3 "$VOL/posix_diff.py" "$W/plain" "$W/mnt" "$W/share"
	echo "$output" | grep -v '^ok' >&2 || true
	[ "$status" -eq 0 ]
	assert_contains "$output" "0 difference(s)" "every operation gives the same result and errno"
	assert_contains "$output" "ok   10k readdir" "a 10k-entry directory lists alike"
	assert_contains "$output" "ok   concurrent writers" "concurrent writers"
	assert_contains "$output" "is the host share's, byte for byte" "the mount's tree is the host's"
}

@test "fc-volume: escape suite - crafted requests never reach outside the share, the server stays up" {
	local c="$W/canary"
	mkdir -p "$c/share/sub" "$c/dir" "$W/ro" "$W/small"
	echo secret > "$c/secret"
	echo inner > "$c/dir/inner"
	head -c 100000 /dev/urandom > "$c/dir/blob"
	echo content > "$c/share/file"
	ln -s ../secret "$c/share/up"
	ln -s "$c/secret" "$c/share/abs"
	ln -s .. "$c/share/updir"
	echo rofile > "$W/ro/file"
	# The canary: everything around the share, and the read-only share.
	tree_sum "$c" | grep -v '^\./share\|\./share/' > "$W/canary.before"
	[ -s "$W/canary.before" ]
	tree_sum "$W/ro" > "$W/ro.before"
	serve "$c/share" "$W/rw.sock"
	serve "$W/ro" "$W/ro.sock" --ro
	serve "$W/small" "$W/small.sock" --max-handles 8 --max-nodes 16 --connections 4
	run timeout 300 python3 "$VOL/escape.py" "$W/rw.sock" "$W/ro.sock" "$W/small.sock" "$c/share" "$W/ro"
	echo "$output" | grep -v '^ok' >&2 || true
	[ "$status" -eq 0 ]
	assert_contains "$output" "escape: 0 failure(s)" "every escape attempt was refused"
	tree_sum "$c" | grep -v '^\./share\|\./share/' > "$W/canary.after"
	diff "$W/canary.before" "$W/canary.after"
	tree_sum "$W/ro" > "$W/ro.after"
	diff "$W/ro.before" "$W/ro.after"
	# Every server is still up and answers.
	local p
	for p in "${PIDS[@]}"; do kill -0 "$p"; done
	run_fc 0 python3 -c "import sys; sys.path.insert(0, '$VOL'); import vproto; print(vproto.Conn('$W/rw.sock').hello())"
}

@test "fc-volume: a read-only volume refuses writes with EROFS" {
	mkdir "$W/share"
	echo keep > "$W/share/f"
	serve "$W/share" "$W/s.sock" --ro
	mount_vol "$W/s.sock" "$W/mnt"
	assert_eq "$(cat "$W/mnt/f")" "keep" "reads work"
	run sh -c "echo x > '$W/mnt/f'"
	assert_contains "$output" "Read-only file system" "a write is refused with EROFS"
	run touch "$W/mnt/new"
	assert_contains "$output" "Read-only file system" "a create is refused with EROFS"
	# Even a mount that claims to be writable is refused by the server.
	mount_vol "$W/s.sock" "$W/mnt2" -o rw
	run python3 -c "import os; os.open('$W/mnt2/f', os.O_WRONLY)"
	assert_contains "$output" "Read-only file system" "the server refuses a writable open of a read-only volume"
	assert_eq "$(cat "$W/share/f")" "keep" "the host file is untouched"
}

@test "fc-volume: many parallel readers over several connections" {
	mkdir "$W/share"
	local i
	for i in $(seq 200); do head -c 4096 /dev/urandom > "$W/share/f$i"; done
	(cd "$W/share" && sha256sum f* > "$W/sums")
	serve "$W/share" "$W/s.sock"
	mount_vol "$W/s.sock" "$W/mnt" --connections 8
	run_fc 0 sh -c "cd '$W/mnt' && ls f* | xargs -P 64 -n 4 sha256sum | sort -k2 > '$W/got'"
	sort -k2 "$W/sums" > "$W/want"
	diff "$W/want" "$W/got"
}

@test "fc-volume: connections reset under load (as after a snapshot restore) are redialled and requests sent again" {
	mkdir "$W/share"
	serve "$W/share" "$W/s.sock"
	python3 "$VOL/dropper.py" "$W/drop.sock" "$W/s.sock" 37 > "$W/dropper.log" 2>&1 &
	PIDS+=($!)
	wait_line "$W/dropper.log" "^listening" 10 "$!"
	mount_vol "$W/drop.sock" "$W/mnt" --connections 4 --reconnect-timeout 10
	local i
	for i in $(seq 60); do head -c $((i * 997)) /dev/urandom > "$W/mnt/f$i"; done
	(cd "$W/mnt" && sha256sum f* | sort -k2) > "$W/through"
	(cd "$W/share" && sha256sum f* | sort -k2) > "$W/host"
	diff "$W/host" "$W/through"
	[ "$(wc -l < "$W/host")" -eq 60 ]
	local drops
	drops=$(grep -c '^dropped' "$W/dropper.log")
	[ "$drops" -ge 5 ] || { echo "only $drops resets happened" >&2; return 1; }
	assert_contains "$(cat "$W/client.log")" "no reply" "the client saw the resets and redialled"
}

@test "fc-volume: a new server (as after a snapshot restore): names found again, open files reopened, caches dropped" {
	mkdir -p "$W/a/sub/deep" "$W/b"
	echo one > "$W/a/sub/deep/f"
	serve "$W/a" "$W/s.sock"
	local first=${PIDS[-1]}
	# Attributes cached for 60 s: only fc-volfs's own invalidation can show
	# the new server's directory within the bounds below.
	mount_vol "$W/s.sock" "$W/mnt" --connections 2 --reconnect-timeout 20 --attr-timeout 60
	[ "$(cat "$W/mnt/sub/deep/f")" = one ]
	# A writer with its cwd deep inside and a file open, across the change;
	# it counts the writes that succeeded.
	( cd "$W/mnt/sub/deep" && exec 3>>log && n=0 &&
		while [ ! -e "$W/stop" ]; do
			if echo tick >&3; then n=$((n + 1)); else echo "FAIL after $n" >> "$W/writer.err"; fi
			echo "$n" > "$W/writer.count"; sleep 0.05
		done ) &
	local writer=$!
	PIDS+=("$writer")
	wait_until 10 test -s "$W/a/sub/deep/log"
	kill -9 "$first"
	wait "$first" 2>/dev/null || true
	cp -a "$W/a/." "$W/b/"
	echo two > "$W/b/sub/deep/f"	# the same size: only an invalidation shows it
	rm -f "$W/s.sock"
	serve "$W/b" "$W/s.sock"
	local before; before=$(wc -l < "$W/a/sub/deep/log")
	wait_until 10 grep -qx two "$W/mnt/sub/deep/f"
	wait_until 10 test -s "$W/b/sub/deep/log"
	local b1; b1=$(wc -l < "$W/b/sub/deep/log")
	wait_until 10 lines_over "$W/b/sub/deep/log" "$((b1 + 5))"
	touch "$W/stop"
	for _ in $(seq 50); do kill -0 "$writer" 2>/dev/null || break; sleep 0.1; done
	[ ! -s "$W/writer.err" ] || { cat "$W/writer.err" >&2; return 1; }
	# Writes went on through the open file into the new directory (which
	# began as a copy of the old one); the old one got none after its
	# server went; none was lost (one in flight at the kill may have been
	# sent again: at least as many lines as writes, not exactly).
	[ "$(wc -l < "$W/a/sub/deep/log")" -eq "$before" ]
	local total; total=$(wc -l < "$W/b/sub/deep/log")
	[ "$total" -ge "$(cat "$W/writer.count")" ] ||
		{ echo "lost writes: $total lines for $(cat "$W/writer.count") writes" >&2; return 1; }
	touch "$W/mnt/sub/deep/new"
	[ -e "$W/b/sub/deep/new" ] && [ ! -e "$W/a/sub/deep/new" ]
	assert_contains "$(cat "$W/client.log")" "a new server" "the client saw the new instance"
	# A read-only server next: reads go on, writes get EROFS.
	kill -9 "${PIDS[-1]}"
	rm -f "$W/s.sock"
	serve "$W/b" "$W/s.sock" --ro
	wait_until 10 grep -qx two "$W/mnt/sub/deep/f"
	run sh -c "echo x > '$W/mnt/sub/deep/f'"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Read-only file system" "the new read-only server refuses writes"
	[ "$(cat "$W/b/sub/deep/f")" = two ]
}
