#!/usr/bin/env bats
# fcvm podman run: containers in real microVMs (fc-qemu here), end to end.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	# One image archive for the whole file; deterministic, so cheap to rebuild.
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	# A prepared data root on the fixture btrfs, so fc-disk can reflink.
	fc_vm_root run
}

# Until 'fcvm ls' shows the (only) VM running.
wait_running() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(fcvm ls --json | jq -r '.[0].status // empty')" = running ] && return 0
		sleep 0.2
	done
	echo "no VM reached 'running'" >&2
	return 1
}

teardown() {
	local r=0
	leak_check || r=$?
	rm -rf "$FCVM_ROOT"
	return $r
}

@test "run: echo prints its text; --rm leaves no VM files" {
	run_fc 0 --timeout 240 fcvm podman run --rm "$IMG" echo "hello from the guest"
	assert_eq "$output" "hello from the guest" "container stdout on fcvm's stdout"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" | wc -l)" 0 "--rm removed the VM's disk directory"
}

@test "run: stdout and stderr stay separate and the exit code passes through" {
	# Not through bats' run, which merges the two streams itself.
	local rc=0
	timeout 240 fcvm podman run --rm "$IMG" sh -c 'echo out; echo err >&2; exit 7' \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" || rc=$?
	assert_eq "$rc" 7 "container exit code"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/out")" "out" "stdout only on stdout"
	grep -qx err "$BATS_TEST_TMPDIR/err" || { cat "$BATS_TEST_TMPDIR/err" >&2; false; }
	run -1 grep -qx out "$BATS_TEST_TMPDIR/err"	# stdout's line not on stderr
}

@test "run: 1 MiB of binary output arrives byte-exact" {
	timeout 600 fcvm podman run --rm "$IMG" sh -c \
		'dd if=/dev/urandom of=/tmp/blob bs=1024 count=1024 2>/dev/null; cat /tmp/blob; sha256sum /tmp/blob >&2' \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err"
	assert_eq "$(stat -c %s "$BATS_TEST_TMPDIR/out")" 1048576 "exactly 1 MiB"
	want=$(grep -oE '^[0-9a-f]{64}' "$BATS_TEST_TMPDIR/err")
	got=$(sha256sum < "$BATS_TEST_TMPDIR/out" | cut -d' ' -f1)
	assert_eq "$got" "$want" "sha256 computed in the guest matches the host's"
}

@test "run: environment variables arrive" {
	run_fc 0 --timeout 240 fcvm podman run --rm -e A=1 -e 'B=two words' -e 'C=a=b' "$IMG" \
		sh -c 'echo "$A|$B|$C"'
	assert_eq "$output" "1|two words|a=b" "env values, spaces and '=' preserved"
}

@test "run: a process killed by SIGKILL gives 137 through the whole chain" {
	# The container's PID 1 ignores signals it has no handler for, so the
	# victim is a child; the shell passes its 128+N status on.
	run timeout 240 fcvm podman run --rm "$IMG" sh -c 'sh -c "kill -9 \$\$"; exit $?'
	assert_eq "$status" 137 "128 + SIGKILL"
}

@test "run: two VMs run at once" {
	fcvm podman run --rm --name one "$IMG" sh -c 'sleep 2; echo one' >"$BATS_TEST_TMPDIR/1" 3>&- &
	local p1=$!
	fcvm podman run --rm --name two "$IMG" sh -c 'sleep 2; echo two' >"$BATS_TEST_TMPDIR/2" 3>&- &
	local p2=$!
	wait "$p1"; wait "$p2"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/1")" one "first VM's output"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/2")" two "second VM's output"
}

@test "run: ls shows a running VM; killing fcvm removes the VM and its state" {
	fcvm podman run --name sleeper "$IMG" sleep 600 >/dev/null 2>&1 3>&- &
	local pid=$! i
	wait_running
	assert_eq "$(fcvm ls --json | jq -r '.[0].name')" sleeper "fcvm ls lists it by name"
	assert_contains "$(fcvm ls)" sleeper "table output too"
	kill -TERM "$pid"
	wait "$pid" || true
	assert_eq "$(fcvm ls --json | jq length)" 0 "no VM listed"
	assert_eq "$(find "$FCVM_ROOT/state" -type f | wc -l)" 0 "no state files"
}

@test "run: -d returns once the container runs; logs and stop work" {
	# fd 3 is bats' own: the detached VM must not hold it.
	run_fc 0 --timeout 240 fcvm podman run -d --name bg "$IMG" sh -c 'echo started-ok; sleep 600' 3>&-
	local id=$output
	assert_contains "$id" "vm-" "-d prints the VM id"
	local i
	for ((i = 0; i < 450; i++)); do
		fcvm logs bg 2>/dev/null | grep -q started-ok && break
		sleep 0.2
	done
	run_fc 0 fcvm logs bg
	assert_contains "$output" started-ok "container output in fcvm logs"
	# fc-run reads guest frames: it runs with no new privileges and, outside
	# sanitizer builds (LeakSanitizer needs ptrace), under its seccomp filter.
	local rpid; rpid=$(pgrep -f "fc-run --vsock $FCVM_ROOT" | head -1)
	grep -qE '^NoNewPrivs:[[:space:]]+1' "/proc/$rpid/status"
	if ! ldd "$(command -v fc-run)" | grep -q libasan; then
		grep -qE '^Seccomp:[[:space:]]+2' "/proc/$rpid/status"
	fi
	run_fc 0 fcvm stop bg
	assert_eq "$(fcvm ls --json | jq length)" 0 "stopped"
	# fc-run sees the VM go and ends by itself.
	for ((i = 0; i < 100; i++)); do
		pgrep -f "fc-run --vsock $FCVM_ROOT" >/dev/null || break
		sleep 0.1
	done
	run_fc 0 fcvm rm "$id"
	[ ! -d "$FCVM_ROOT/vm-disks/$id" ]
}

@test "run: SIGKILL of fcvm still removes the VM (fc-boot dies with its parent)" {
	fcvm podman run --name doomed "$IMG" sleep 600 >/dev/null 2>&1 3>&- &
	local pid=$! i
	wait_running
	kill -KILL "$pid"
	for ((i = 0; i < 100; i++)); do
		[ -z "$(leaked_procs)" ] && break
		sleep 0.1
	done
	assert_eq "$(leaked_procs)" "" "no fc-boot, VMM or fc-run left"
	assert_eq "$(fcvm ls --json | jq length)" 0 "no VM listed"
	run_fc 0 fcvm ls -a --json
	assert_eq "$(jq -r '.[0].status' <<<"$output")" stopped "without --rm its files stay, listed by ls -a"
}

@test "run: duplicate name is refused" {
	fcvm podman run --name dup "$IMG" sleep 600 >/dev/null 2>&1 3>&- &
	local pid=$! i
	wait_running
	run_fc 125 fcvm podman run --name dup "$IMG" true
	assert_contains "$output" "name 'dup' is already used" "names the conflict"
	kill -TERM "$pid"; wait "$pid" || true
}

@test "run: unknown image and corrupt archive fail clearly and leave nothing" {
	run_fc 125 fcvm podman run --rm no/such-image:latest true
	assert_contains "$output" "image 'no/such-image:latest' not found" "unknown image named"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$BATS_TEST_TMPDIR/bad.tar" --corrupt garbage >/dev/null
	run_fc 125 fcvm podman run --rm "$BATS_TEST_TMPDIR/bad.tar" true
	assert_contains "$output" "bad.tar" "corrupt archive named"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" 2>/dev/null | wc -l)" 0 "no VM disk left"
	assert_eq "$(ls "$FCVM_ROOT/images" 2>/dev/null | wc -l)" 0 "no partial image left"
}

@test "run: an entrypoint that does not exist is reported with podman's code" {
	"$BATS_TEST_DIRNAME/lib/mkimage" "$BATS_TEST_TMPDIR/noep.tar" --broken-entrypoint >/dev/null
	# 127: podman's code for a command that cannot be found, passed through.
	run -127 timeout 240 fcvm podman run --rm "$BATS_TEST_TMPDIR/noep.tar"
	assert_contains "$output" "does-not-exist" "the missing entrypoint is named"
}

@test "run: an agent that never answers times out with a clear message" {
	local rootfs
	rootfs=$(fc-disk rootfs --vm quiet)
	local owner
	owner=$(fc-boot --name quiet --id quiet --rootfs "$rootfs" --detach 3>&-)
	# The agent listens on 1024 only; nothing answers on 4242.
	echo '{"version":1,"image":{"disk":"/dev/vdb"}}' > "$BATS_TEST_TMPDIR/plan.json"
	run_fc 125 --timeout 60 fc-run --vsock "$FCVM_ROOT/run/quiet/vsock.sock" --port 4242 \
		--timeout 5 "$BATS_TEST_TMPDIR/plan.json"
	assert_contains "$output" "did not answer" "timeout message"
	kill -TERM "$owner"
	local i
	for ((i = 0; i < 50; i++)); do kill -0 "$owner" 2>/dev/null || break; sleep 0.1; done
}

# Issue 6, deliverable 6: what the guest runs is the image id, so archives
# that name the image only by its tag, or not at all, run.
@test "run: archives that name the image by a bare tag, by nothing, or docker-style all run" {
	local t=$BATS_TEST_TMPDIR shape
	"$BATS_TEST_DIRNAME/lib/mkimage" "$t/tag.tar" --name latest --cmd '["echo","from-tag"]' >/dev/null
	"$BATS_TEST_DIRNAME/lib/mkimage" "$t/none.tar" --no-name --cmd '["echo","from-none"]' >/dev/null
	"$BATS_TEST_DIRNAME/lib/mkimage" "$t/docker.tar" --format docker --name localhost/d:1 \
		--cmd '["echo","from-docker"]' >/dev/null
	for shape in tag none docker; do
		run_fc 0 --timeout 240 fcvm podman run --rm "$t/$shape.tar"
		assert_eq "$output" "from-$shape" "$shape archive ran its own command"
	done
	assert_eq "$(jq -r .image.ref "$FCVM_ROOT"/vm-disks/*/plan.json 2>/dev/null | head -1)" "" "--rm left no plan"
}

@test "run: a multi-image archive is refused before a VM is made" {
	"$BATS_TEST_DIRNAME/lib/mkimage" "$BATS_TEST_TMPDIR/multi.tar" --name localhost/a:1 \
		--second-name localhost/b:2 >/dev/null
	run_fc 125 fcvm podman run --rm "$BATS_TEST_TMPDIR/multi.tar" true
	assert_contains "$output" "holds 2 images ('localhost/a:1', 'localhost/b:2')" "names the images"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" 2>/dev/null | wc -l)" 0 "no VM disk"
}
