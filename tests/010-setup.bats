#!/usr/bin/env bats
# fc-setup: kernel extraction and initramfs, the guest init (real TCG boots),
# storage on a non-reflink root, preflight, and the rootfs image.

load helpers

# One kernel for the whole file (built here, not the run-tests fixture, so
# the build itself is under test); it lives in its own data root.
setup_file() {
	export KROOT="$BATS_FILE_TMPDIR/kroot"
	mkdir -p "$KROOT"
	"$FCVM_BUILD/bin/fc-setup" storage --dir "$KROOT" --without-reflink >/dev/null 2>&1 || true
	FCVM_ROOT="$KROOT" timeout 300 "$FCVM_BUILD/bin/fc-setup" kernel \
		>"$BATS_FILE_TMPDIR/kernel.out" 2>"$BATS_FILE_TMPDIR/kernel.err" || true
}

setup() {
	fc_setup_root
}

teardown() {
	if mountpoint -q "$FCVM_ROOT" 2>/dev/null; then
		umount "$FCVM_ROOT"
		echo "LEAK: $FCVM_ROOT was left mounted" >&2
		return 1
	fi
	leak_check
}

# A bare '! cmd' in the middle of a test cannot fail it (bats' errexit
# ignores '!'), so assert this way.
assert_not_mounted() {
	if mountpoint -q "$1"; then
		echo "FAILED: $1 is still a mount point" >&2
		return 1
	fi
}

kdir() {
	local d
	d=$(cat "$BATS_FILE_TMPDIR/kernel.out")
	if [ -z "$d" ] || [ ! -f "$d/vmlinux" ]; then
		cat "$BATS_FILE_TMPDIR/kernel.err" >&2
		return 1
	fi
	echo "$d"
}

tsc_khz() {
	awk -F: '/cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo
}

# boot_guest KDIR APPEND [EXTRA QEMU ARGS...]: TCG boot, console to $output.
boot_guest() {
	local k=$1 append=$2
	shift 2
	run timeout --kill-after=5 60 qemu-system-x86_64 -M microvm -accel tcg -cpu max \
		-nodefaults -no-reboot -m 256 -display none -serial stdio \
		-kernel "$k/vmlinux" -initrd "$k/initrd.img" "$@" \
		-append "console=ttyS0 reboot=k panic=1 pci=off quiet tsc_early_khz=$(tsc_khz) $append"
}

# A tiny ext4 root: busybox and an "agent" script that prints a marker.
make_root_image() {
	local t="$BATS_TEST_TMPDIR/rt"
	mkdir -p "$t/bin" "$t/dev" "$t/proc" "$t/sys" "$t/usr/sbin" "$t/sbin"
	cp /bin/busybox "$t/bin/busybox"
	cat >"$t/usr/sbin/fc-agent" <<'SH'
#!/bin/busybox sh
echo "test-agent: pid $$ root $(/bin/busybox grep -c '^/dev/vda / ext4 rw' /proc/mounts)"
echo "test-agent: queue_depth $(/bin/busybox cat /sys/module/virtio_blk/parameters/queue_depth)"
/bin/busybox reboot -f
SH
	cat >"$t/sbin/other-init" <<'SH'
#!/bin/busybox sh
echo "other-init: pid $$"
/bin/busybox reboot -f
SH
	chmod 755 "$t/usr/sbin/fc-agent" "$t/sbin/other-init"
	mkfs.ext4 -q -d "$t" "$BATS_TEST_TMPDIR/root.ext4" 32M
}

@test "fc-setup -h prints the synopsis; bad usage exits 2" {
	run_fc 0 fc-setup -h
	assert_contains "$output" "fc-setup kernel" "usage names kernel"
	assert_contains "$output" "fc-setup preflight" "usage names preflight"
	run_fc 2 fc-setup frobnicate
	assert_contains "$output" "unknown command 'frobnicate'" "names the bad command"
	run_fc 2 fc-setup storage --size 0
	assert_contains "$output" "--size" "names the bad option"
	run_fc 2 fc-setup rootfs --size 12abc
	run_fc 0 fc-setup kernel -h
}

@test "kernel: vmlinux is an x86-64 ELF with a PVH note; rerun reuses it" {
	local k m1 m2
	k=$(kdir)
	[ "$(head -c 4 "$k/vmlinux" | od -An -tx1 | tr -d ' ')" = "7f454c46" ]
	# EI_CLASS 2 (64-bit), EI_DATA 1 (little endian); e_type 2 (EXEC); e_machine 0x3e (x86-64)
	assert_eq "$(od -An -tx1 -j4 -N2 "$k/vmlinux" | tr -d ' ')" 0201 "vmlinux is ELF64 LSB"
	assert_eq "$(od -An -tx1 -j16 -N4 "$k/vmlinux" | tr -d ' ')" 02003e00 "an x86-64 executable"
	assert_eq "$(jq -r .pvh "$k/manifest.json")" true "manifest records the PVH entry"
	assert_eq "$(jq -r .payload.format "$k/manifest.json")" lz4 "Debian 6.1's payload is LZ4"
	assert_eq "$(readlink "$KROOT/kernels/default")" "$(basename "$k")" "default points at the build"
	sha=$(sha256sum "$k/vmlinux" | cut -d' ' -f1)
	assert_eq "$(jq -r .vmlinux_sha256 "$k/manifest.json")" "$sha" "manifest sha256 matches"

	m1=$(stat -c %Y.%i "$k" "$k/vmlinux" "$k/initrd.img")
	FCVM_ROOT="$KROOT" run_fc 0 fc-setup kernel
	assert_eq "${lines[-1]}" "$k" "same inputs print the same path"
	assert_contains "$output" "up to date" "and say so"
	m2=$(stat -c %Y.%i "$k" "$k/vmlinux" "$k/initrd.img")
	assert_eq "$m2" "$m1" "nothing was rebuilt"
	[ -z "$(find "$KROOT/kernels" -maxdepth 1 -name '.tmp-*')" ]
}

@test "kernel: the initramfs holds init, busybox and the modules in dependency order" {
	local k list order
	k=$(kdir)
	list=$(cpio -it --quiet <"$k/initrd.img")
	for f in init bin/busybox bin/sh bin/switch_root dev/console newroot lib/modules/load.order; do
		grep -qx "$f" <<<"$list" || { echo "missing $f in: $list" >&2; return 1; }
	done
	for m in virtio_ring virtio virtio_mmio virtio_blk virtio_net vsock \
		vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport overlay fuse; do
		grep -qx "lib/modules/$m.ko" <<<"$list" || { echo "missing module $m" >&2; return 1; }
	done
	order=$(cd "$BATS_TEST_TMPDIR" && cpio -i --quiet --to-stdout lib/modules/load.order <"$k/initrd.img" | tr '\n' ' ')
	# each module after everything it depends on (modinfo of the shipped .ko)
	[[ "$order" == *"virtio_ring virtio virtio_mmio"* ]] || { echo "order: $order" >&2; return 1; }
	[[ "$order" == *"failover net_failover virtio_net"* ]] || { echo "order: $order" >&2; return 1; }
	[[ "$order" == *"vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"* ]] ||
		{ echo "order: $order" >&2; return 1; }
	run sh -c "cpio -i --quiet --to-stdout init <'$k/initrd.img'"
	assert_contains "$output" "switch_root /newroot" "init switches root"
	assert_contains "$output" "fcvm-init: ready (no root)" "init handles root=none"
	[ "$(jq -r '.initrd_modules | length' "$k/manifest.json")" -ge 10 ]
}

@test "kernel: bad --deb gives one clear error and leaves no temp dir" {
	run_fc 1 fc-setup kernel --deb "$BATS_TEST_TMPDIR/nope.deb"
	assert_contains "$output" "nope.deb" "names the missing file"
	echo "not a package" >"$BATS_TEST_TMPDIR/junk.deb"
	run_fc 1 fc-setup kernel --deb "$BATS_TEST_TMPDIR/junk.deb"
	assert_contains "$output" "not a Debian package" "says what is wrong"
	# a real package without a kernel
	mkdir -p "$BATS_TEST_TMPDIR/p/DEBIAN" "$BATS_TEST_TMPDIR/p/usr/share/doc/x"
	printf 'Package: fake\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n' \
		>"$BATS_TEST_TMPDIR/p/DEBIAN/control"
	dpkg-deb -b "$BATS_TEST_TMPDIR/p" "$BATS_TEST_TMPDIR/nokernel.deb" >/dev/null
	run_fc 1 fc-setup kernel --deb "$BATS_TEST_TMPDIR/nokernel.deb"
	assert_contains "$output" "boot/vmlinuz" "says the kernel is missing"
	# a "kernel" whose payload is not a compressed ELF
	mkdir -p "$BATS_TEST_TMPDIR/p/boot"
	{ head -c 4096 /dev/urandom; printf '\x02\x21\x4c\x18'; head -c 4096 /dev/urandom; } \
		>"$BATS_TEST_TMPDIR/p/boot/vmlinuz-9.9.9-test"
	dpkg-deb -b "$BATS_TEST_TMPDIR/p" "$BATS_TEST_TMPDIR/badkernel.deb" >/dev/null
	run_fc 1 fc-setup kernel --deb "$BATS_TEST_TMPDIR/badkernel.deb"
	assert_contains "$output" "no ELF vmlinux" "says no vmlinux was found"
	assert_eq "$(find "$FCVM_ROOT/kernels" -mindepth 1 | wc -l)" 0 "nothing left in kernels/"
}

@test "kernel: gzip, xz, zstd, lz4, bzip2 and lzma payloads; .ko.xz and .ko.zst modules" {
	local deb p fmt k
	deb=$(jq -r .inputs.deb.path "$(kdir)/manifest.json")
	p="$BATS_TEST_TMPDIR/p"
	mkdir -p "$p/DEBIAN" "$p/boot" "$BATS_TEST_TMPDIR/x"
	dpkg-deb -x "$deb" "$BATS_TEST_TMPDIR/x"
	# only the modules the initramfs needs: keeps each package small
	(cd "$BATS_TEST_TMPDIR/x" &&
		for mod in $(jq -r '.initrd_modules[]' "$(kdir)/manifest.json"); do
			find lib/modules -name "$mod.ko"
		done | cpio -pdm --quiet "$p")
	m=$(echo "$p"/lib/modules/*/kernel)
	xz "$m/drivers/block/virtio_blk.ko"
	zstd -q --rm "$m/fs/fuse/fuse.ko"
	printf 'Package: fake-kernel\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n' \
		>"$p/DEBIAN/control"
	# the "kernel" is busybox (a static x86-64 ELF executable) behind junk;
	# lzma is found by the kernel's own magic (5d 00 00 00: -9's 64 MiB dictionary)
	for fmt in "gzip -c" "xz -c" "zstd -q -c" "lz4 -l -c" "bzip2 -c" "lzma -9 -c"; do
		rm -f "$p"/boot/vmlinuz-*
		{ head -c 3000 /dev/zero; $fmt /bin/busybox; head -c 100 /dev/zero; } \
			>"$p/boot/vmlinuz-$(basename "$(dirname "$m")")"
		dpkg-deb -Zgzip -z1 -b "$p" "$BATS_TEST_TMPDIR/k.deb" >/dev/null
		run_fc 0 fc-setup kernel --deb "$BATS_TEST_TMPDIR/k.deb"
		k=${lines[-1]}
		assert_eq "$(jq -r .payload.format "$k/manifest.json")" "${fmt%% *}" "payload format detected"
		cmp "$k/vmlinux" /bin/busybox
		assert_contains "$output" "no PVH entry note" "warns about the missing PVH note"
	done
	(cd "$BATS_TEST_TMPDIR" && cpio -i --quiet --to-stdout lib/modules/virtio_blk.ko <"$k/initrd.img") |
		head -c 4 | od -An -tx1 | grep -q "7f 45 4c 46"
	(cd "$BATS_TEST_TMPDIR" && cpio -i --quiet --to-stdout lib/modules/fuse.ko <"$k/initrd.img") |
		head -c 4 | od -An -tx1 | grep -q "7f 45 4c 46"
	[ -z "$(find "$FCVM_ROOT/kernels" -maxdepth 1 -name '.tmp-*')" ]
}

@test "guest init: root=none boots to 'fcvm-init: ready (no root)' under TCG" {
	local k
	k=$(kdir)
	boot_guest "$k" "root=none fcvm.id=t1"
	assert_contains "$output" "fcvm-init: starting vm t1" "init starts and sees fcvm.id"
	assert_contains "$output" "fcvm-init: modules loaded" "all modules load"
	assert_contains "$output" "fcvm-init: ready (no root)" "no-root readiness line"
	[[ "$output" != *"fcvm-init: error"* ]]
}

@test "guest init: mounts root=/dev/vda and execs the agent (or fcvm.init=) as PID 1" {
	local k
	k=$(kdir)
	make_root_image
	boot_guest "$k" "root=/dev/vda rw virtio_blk.queue_depth=77" \
		-drive id=r,file="$BATS_TEST_TMPDIR/root.ext4",format=raw,if=none -device virtio-blk-device,drive=r
	assert_contains "$output" "fcvm-init: root /dev/vda mounted rw" "root mounted"
	assert_contains "$output" "test-agent: pid 1 root 1" "agent runs as PID 1 on the new root"
	assert_contains "$output" "test-agent: queue_depth 77" "module.param= words reach insmod"
	boot_guest "$k" "root=/dev/vda ro fcvm.init=/sbin/other-init" \
		-drive id=r,file="$BATS_TEST_TMPDIR/root.ext4",format=raw,if=none -device virtio-blk-device,drive=r
	assert_contains "$output" "other-init: pid 1" "fcvm.init= overrides the init program"
}

@test "guest init: a missing root device is an error line, then the VM stops" {
	local k
	k=$(kdir)
	boot_guest "$k" "root=/dev/vdb rw"
	assert_contains "$output" "fcvm-init: error: root device /dev/vdb did not appear" "names the device"
	[ "$status" -eq 0 ]	# the guest shut down by itself (QEMU -no-reboot), no timeout
}

@test "data root: a missing or unprepared FCVM_ROOT is refused before anything is written" {
	local nope="$BATS_TEST_TMPDIR/no/such/root" plain="$BATS_TEST_TMPDIR/plain"
	# a mistyped root is not created, nor are its parents (issue 7, item 12)
	FCVM_ROOT="$nope" run_fc 1 fc-setup kernel --deb "$BATS_TEST_TMPDIR/x.deb"
	assert_contains "$output" "data root '$nope' does not exist: run 'fc-setup storage' (or set FCVM_ROOT)" "says why and what to do"
	[ ! -e "$BATS_TEST_TMPDIR/no" ]
	# an existing directory that fc-setup storage did not prepare stays as it was
	mkdir "$plain"
	FCVM_ROOT="$plain" run_fc 1 fc-setup kernel --deb "$BATS_TEST_TMPDIR/x.deb"
	assert_contains "$output" "data root '$plain' is not prepared: run 'fc-setup storage' (or set FCVM_ROOT)" "refused"
	FCVM_ROOT="$plain" run_fc 1 fc-state ls
	assert_contains "$output" "is not prepared" "fc-state refuses it too"
	FCVM_ROOT="$plain" run_fc 1 fc-setup preflight --no-probe
	grep -qE "^FAIL +reflink .*is not prepared.*\[fix: fc-setup storage\]" <<<"$output"
	assert_eq "$(ls -A "$plain")" "" "nothing was written into it"
	# --dir prepares an existing directory; without reflink only when asked
	run_fc 1 fc-setup storage --dir "$plain"
	assert_contains "$output" "without reflink" "a non-reflink directory is refused"
	assert_eq "$(ls -A "$plain")" "" "still untouched"
	run_fc 2 fc-setup storage --without-reflink
	run_fc 0 fc-setup storage --dir "$plain" --without-reflink
	assert_eq "${lines[-1]}" "$plain" "prints the prepared root"
	assert_eq "$(cat "$plain/.fcvm-root")" "fcvm-root 1" "the marker names the format"
	[ -d "$plain/state" ]
	FCVM_ROOT="$plain" run_fc 0 fc-state ls
	# a marker of a newer format is not ours to write into
	echo "fcvm-root 99" >"$plain/.fcvm-root"
	FCVM_ROOT="$plain" run_fc 1 fc-state ls
	assert_contains "$output" "format 99, newer than" "newer format refused"
}

@test "kernel: a build killed with SIGKILL leaves a temporary that the next build removes" {
	local deb pid i
	deb=$(jq -r .inputs.deb.path "$(kdir)/manifest.json")
	fc-setup kernel --deb "$deb" >"$BATS_TEST_TMPDIR/out" 2>&1 &
	pid=$!
	for ((i = 0; i < 600; i++)); do
		[ -n "$(find "$FCVM_ROOT/kernels" -maxdepth 1 -name '.tmp-*')" ] && break
		sleep 0.05
	done
	kill -KILL "$pid"
	wait "$pid" || true
	[ -n "$(find "$FCVM_ROOT/kernels" -maxdepth 1 -name '.tmp-*')" ] ||
		{ echo "no temporary seen: $(cat "$BATS_TEST_TMPDIR/out")" >&2; return 1; }
	# one of a builder that is alive but not building (the lock is free) goes too
	sleep 1000 &
	local other=$!
	mkdir "$FCVM_ROOT/kernels/.tmp-0123456789abcdef-$other"
	run_fc 0 fc-setup kernel --deb "$deb"
	kill "$other"
	assert_contains "$output" "removed stale temporary" "says what it collected"
	assert_eq "$(find "$FCVM_ROOT/kernels" -maxdepth 1 -name '.tmp-*' | wc -l)" 0 "no temporary left"
	# the killed build's grandchildren (tar under dpkg-deb) wrote on: gone too
	assert_eq "$(pgrep -f "dpkg-deb -x .*$FCVM_ROOT/kernels/" | wc -l)" 0 "no orphan extractor left"
	[ -f "${lines[-1]}/vmlinux" ]
}

@test "storage: a non-reflink root gets a loop-mounted btrfs; --unmount undoes it" {
	local img="$BATS_TEST_TMPDIR/data.img"
	run_fc 0 fc-setup storage --image "$img" --size 1
	assert_eq "${lines[-1]}" "$FCVM_ROOT" "prints the data root"
	assert_eq "$(findmnt -n -o FSTYPE "$FCVM_ROOT")" btrfs "root is a btrfs mount"
	echo hello >"$FCVM_ROOT/a"
	cp --reflink=always "$FCVM_ROOT/a" "$FCVM_ROOT/b"
	[ -d "$FCVM_ROOT/kernels" ]
	[ -d "$FCVM_ROOT/locks" ]
	[ -f "$FCVM_ROOT/.fcvm-root" ]	# the mounted root is prepared too
	run_fc 0 fc-setup storage --image "$img" --size 1
	assert_contains "$output" "reflinks work" "second run: already fine"
	run_fc 0 fc-setup storage --unmount
	assert_not_mounted "$FCVM_ROOT"
	assert_eq "$(losetup -j "$img" | wc -l)" 0 "loop device released"
	run_fc 0 fc-setup storage --unmount
	assert_contains "$output" "nothing to unmount" "unmount is idempotent"
}

@test "storage: refuses to hide a non-empty data root" {
	echo precious >"$FCVM_ROOT/file"
	run_fc 1 fc-setup storage --image "$BATS_TEST_TMPDIR/data.img" --size 1
	assert_contains "$output" "not empty" "explains why"
	[ ! -e "$BATS_TEST_TMPDIR/data.img" ]
	assert_not_mounted "$FCVM_ROOT"
}

@test "preflight: a line per requirement, the KVM verdict and the exit status" {
	local k
	k=$(kdir)
	# borrow the built kernel so the KVM probe can run
	mkdir -p "$FCVM_ROOT/kernels"
	ln -s "$k" "$FCVM_ROOT/kernels/default"
	run_fc 1 fc-setup preflight --probe-timeout 6
	for name in kvm vmm qemu tun userfaultfd reflink nftables slirp4netns podman setup-tools kernel rootfs; do
		grep -qE "^(OK|WARN|FAIL) +$name " <<<"$output" || { echo "no line for $name" >&2; return 1; }
	done
	grep -qE "^FAIL +reflink .*\[fix: fc-setup storage\]" <<<"$output"
	grep -qE "^FAIL +rootfs .*\[fix: fc-setup rootfs\]" <<<"$output"
	grep -qE "^OK +kernel " <<<"$output"
	jq -e '.usable | type == "boolean"' "$FCVM_ROOT/kvm-probe.json"
	if [ "$(jq -r .usable "$FCVM_ROOT/kvm-probe.json")" = false ]; then
		grep -qE "^WARN +kvm +/dev/kvm.*(unusable|Permission|No such)" <<<"$output"
	else
		grep -qE "^OK +kvm " <<<"$output"
	fi
	[ -z "$(pgrep -f "qemu-system-x86_64.*-accel kvm.*$k")" ]
	run_fc 1 fc-setup preflight --json --no-probe
	# every text line's requirement is in the JSON too, one item per line
	echo "$output" | jq -e --argjson n "$(grep -cE '^(OK|WARN|FAIL) ' <<<"$(fc-setup preflight --no-probe 2>&1)")" \
		'.ok == false and (.items | length) == $n and (.items | length) >= 12' >/dev/null
	for name in kvm vmm qemu tun userfaultfd reflink nftables slirp4netns podman setup-tools kernel rootfs; do
		echo "$output" | jq -e --arg n "$name" '.items | map(.name) | index($n) != null' >/dev/null ||
			{ echo "no JSON item for $name" >&2; return 1; }
	done
}

@test "preflight: without a kernel KVM cannot be probed and says so" {
	[ -e /dev/kvm ] || skip "no /dev/kvm on this host"
	run_fc 1 fc-setup preflight
	grep -qE "^WARN +kvm .*no kernel yet.*\[fix: run 'fc-setup kernel'" <<<"$output"
}

# The rootfs needs the debootstrap base (a minute or two, network); run-tests
# builds it once for the fixtures, so here it is normally cached.
need_base() {
	if ! ls "${FCVM_CACHE:-/var/cache/fcvm}"/rootfs-base-bookworm-*.tar.zst >/dev/null 2>&1 &&
	   [ "${FCVM_TEST_SLOW:-0}" != 1 ]; then
		skip "no cached debootstrap base (set FCVM_TEST_SLOW=1 to build it)"
	fi
}

@test "rootfs: ext4 image with the agent and podman config; rerun reuses it" {
	need_base
	local r
	printf '#!/bin/sh\necho agent-%s\n' "$BATS_TEST_NUMBER" >"$BATS_TEST_TMPDIR/agent"
	run_fc 0 --timeout 600 fc-setup rootfs --agent "$BATS_TEST_TMPDIR/agent" --size 1024
	r=${lines[-1]}
	[ -f "$r/rootfs.ext4" ]
	assert_eq "$(stat -c %s "$r/rootfs.ext4")" $((1024 << 20)) "image has the asked size"
	[ "$(du -k "$r/rootfs.ext4" | cut -f1)" -lt $((1024 << 10)) ]	# sparse
	run debugfs -R "cat /usr/sbin/fc-agent" "$r/rootfs.ext4"
	assert_contains "$output" "agent-$BATS_TEST_NUMBER" "the given agent is installed"
	run debugfs -R "cat /etc/containers/containers.conf" "$r/rootfs.ext4"
	assert_contains "$output" 'cgroup_manager = "cgroupfs"' "podman configured without systemd"
	run debugfs -R "stat /usr/bin/podman" "$r/rootfs.ext4"
	assert_contains "$output" "Type: regular" "podman is installed"
	run debugfs -R "stat /usr/sbin/fc-agent" "$r/rootfs.ext4"
	assert_contains "$output" "Mode:  0755" "agent is executable"
	assert_eq "$(readlink "$FCVM_ROOT/rootfs/default")" "$(basename "$r")" "default points at it"
	run_fc 0 fc-setup rootfs --agent "$BATS_TEST_TMPDIR/agent" --size 1024
	assert_eq "${lines[-1]}" "$r" "same inputs, same path"
	assert_contains "$output" "up to date" "no rebuild"
}

@test "rootfs: a SIGKILLed build's temporary is removed by the next build (issue 7, item 6)" {
	need_base
	local pid i
	printf '#!/bin/sh\necho killed-%s\n' "$$" >"$BATS_TEST_TMPDIR/agent"
	fc-setup rootfs --agent "$BATS_TEST_TMPDIR/agent" --size 1024 \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	for ((i = 0; i < 300; i++)); do
		ls -d "$FCVM_ROOT"/rootfs/.tmp-*/tree/usr >/dev/null 2>&1 && break
		sleep 0.1
	done
	kill -KILL "$pid"
	wait "$pid" || true
	assert_eq "$(find "$FCVM_ROOT/rootfs" -maxdepth 1 -name '.tmp-*' | wc -l)" 1 "SIGKILL leaves the temporary"
	run_fc 0 --timeout 600 fc-setup rootfs --agent "$BATS_TEST_TMPDIR/agent" --size 1024
	[ -f "${lines[-1]}/rootfs.ext4" ]
	assert_eq "$(find "$FCVM_ROOT/rootfs" -maxdepth 1 -name '.tmp-*' | wc -l)" 0 "the next build removed it"
}

@test "rootfs: an interrupted build leaves nothing half made; a rerun succeeds" {
	need_base
	local pid i st
	printf '#!/bin/sh\necho interrupted-%s\n' "$$" >"$BATS_TEST_TMPDIR/agent"
	fc-setup rootfs --agent "$BATS_TEST_TMPDIR/agent" --size 1024 \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	for ((i = 0; i < 300; i++)); do
		ls -d "$FCVM_ROOT"/rootfs/.tmp-*/tree/usr >/dev/null 2>&1 && break
		sleep 0.1
	done
	kill -INT "$pid"
	st=0
	wait "$pid" || st=$?
	assert_eq "$st" 130 "interrupted build exits 130"
	assert_eq "$(find "$FCVM_ROOT/rootfs" -mindepth 1 | wc -l)" 0 "no temp dir, no image, no default link"
	[ -z "$(findmnt -rn -o TARGET | grep -F "$FCVM_ROOT")" ]
	run_fc 0 fc-setup rootfs --agent "$BATS_TEST_TMPDIR/agent" --size 1024
	[ -f "${lines[-1]}/rootfs.ext4" ]
}
