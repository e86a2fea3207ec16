#!/usr/bin/env bats
# fc-disk: image archives -> cached read-only disks; per-VM reflinked rootfs.

load helpers

MKIMAGE="$BATS_TEST_DIRNAME/lib/mkimage"

setup_file() {
	"$MKIMAGE" "$BATS_FILE_TMPDIR/img.tar" --name localhost/fcvm-disk-test:1 \
		--layout-dir "$BATS_FILE_TMPDIR/layout"
}

setup() {
	fc_setup_root
	MNT=""
	PODMAN_REF=""
}

teardown() {
	if [ -n "$MNT" ] && mountpoint -q "$MNT"; then umount "$MNT"; fi
	if [ -n "$PODMAN_REF" ]; then podman rmi "$PODMAN_REF" >/dev/null 2>&1 || true; fi
	leak_check
}

# No build leaves a temporary file or a partial image behind.
no_temps() {
	local left
	left=$(find "$FCVM_ROOT/images" -name '.*' -type f 2>/dev/null)
	assert_eq "$left" "" "no temporary files left in images/"
}

# config_sha ARCHIVE: the sha256 of an oci-archive's (first) config blob.
config_sha() {
	local m
	m=$(tar -xOf "$1" index.json | jq -r '.manifests[0].digest | sub("sha256:"; "")')
	tar -xOf "$1" "blobs/sha256/$m" | jq -r '.config.digest | sub("sha256:"; "")'
}

img_count() {
	find "$FCVM_ROOT/images" -maxdepth 1 -name '*.img' | wc -l
}

# A small btrfs in a loop file: the root file system here (ext4) cannot reflink.
mount_btrfs() {
	command -v mkfs.btrfs >/dev/null || skip "mkfs.btrfs not installed (btrfs-progs)"
	truncate -s 128M "$BATS_TEST_TMPDIR/btrfs.img"
	mkfs.btrfs -q "$BATS_TEST_TMPDIR/btrfs.img"
	MNT="$BATS_TEST_TMPDIR/mnt"
	mkdir -p "$MNT"
	mount -o loop "$BATS_TEST_TMPDIR/btrfs.img" "$MNT"
	mkdir -p "$MNT/root"
	fc-setup storage --dir "$MNT/root" >/dev/null
}

@test "mkimage: deterministic archive that podman-less tools accept" {
	"$MKIMAGE" "$BATS_TEST_TMPDIR/again.tar" --name localhost/fcvm-disk-test:1
	assert_eq "$(sha256sum < "$BATS_TEST_TMPDIR/again.tar")" "$(sha256sum < "$BATS_FILE_TMPDIR/img.tar")" \
		"same options give byte-identical archives"
	run tar -xOf "$BATS_FILE_TMPDIR/img.tar" index.json
	assert_eq "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' <<<"$output")" \
		"localhost/fcvm-disk-test:1" "--name is the ref.name annotation"
	"$MKIMAGE" "$BATS_TEST_TMPDIR/ep.tar" --broken-entrypoint
	run tar -xOf "$BATS_TEST_TMPDIR/ep.tar" index.json
	local m c
	m=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' <<<"$output")
	c=$(tar -xOf "$BATS_TEST_TMPDIR/ep.tar" "blobs/sha256/$m" | jq -r '.config.digest | sub("sha256:"; "")')
	assert_eq "$(tar -xOf "$BATS_TEST_TMPDIR/ep.tar" "blobs/sha256/$c" | jq -c .config.Entrypoint)" \
		'["/bin/does-not-exist"]' "--broken-entrypoint names a missing program"
}

@test "image: OCI archive becomes a read-only disk under images/, JSON describes it" {
	run_fc 0 fc-disk image --json "$BATS_FILE_TMPDIR/img.tar"
	local path digest
	path=$(jq -r .path <<<"$output")
	digest=$(sha256sum "$BATS_FILE_TMPDIR/img.tar" | cut -d' ' -f1)
	assert_eq "$path" "$FCVM_ROOT/images/$digest.img" "named by the sha256 of the archive"
	assert_eq "$(jq -r .digest <<<"$output")" "sha256:$digest" "digest field"
	assert_eq "$(jq -r .name <<<"$output")" "localhost/fcvm-disk-test:1" "name from the archive"
	assert_eq "$(jq -r .ref <<<"$output")" "$(jq -r .image_id <<<"$output")" "the guest runs the image id"
	assert_eq "$(jq -r .image_id <<<"$output")" "$(config_sha "$BATS_FILE_TMPDIR/img.tar")" "image id is the config blob's sha256"
	assert_eq "$(jq -r .source <<<"$output")" "file" "source"
	assert_eq "$(jq -r .format <<<"$output")" "oci-archive" "format"
	assert_eq "$(jq -r .size <<<"$output")" "$(stat -c %s "$path")" "size is the disk size"
	assert_eq "$(( $(stat -c %s "$path") % 512 ))" "0" "disk is whole 512-byte sectors"
	assert_eq "$(stat -c %a "$path")" "444" "disk is read-only"
	cmp -n "$(stat -c %s "$BATS_FILE_TMPDIR/img.tar")" "$path" "$BATS_FILE_TMPDIR/img.tar"
	run tar -tf "$path"
	assert_contains "$output" "index.json" "the disk reads as the archive"
	no_temps
}

@test "image: second call is served from the cache" {
	run_fc 0 fc-disk image "$BATS_FILE_TMPDIR/img.tar"
	local path=$output
	touch -d @1000000000 "$path"
	local ino
	ino=$(stat -c %i "$path")
	run_fc 0 fc-disk image "$BATS_FILE_TMPDIR/img.tar"
	assert_eq "$output" "$path" "same path"
	assert_eq "$(stat -c %Y "$path")" "1000000000" "mtime unchanged: not rewritten"
	assert_eq "$(stat -c %i "$path")" "$ino" "same inode: not replaced"
}

@test "image: two concurrent calls share one build" {
	local i
	for i in 1 2 3; do
		FCVM_LOG=debug timeout 60 fc-disk image "$BATS_FILE_TMPDIR/img.tar" \
			>"$BATS_TEST_TMPDIR/out$i" 2>"$BATS_TEST_TMPDIR/err$i" &
	done
	wait
	assert_eq "$(cat "$BATS_TEST_TMPDIR"/err* | grep -c "debug: building")" "1" "exactly one run built the disk"
	for i in 1 2 3; do
		assert_eq "$(cat "$BATS_TEST_TMPDIR/out$i")" "$(cat "$BATS_TEST_TMPDIR/out1")" "run $i printed the same path"
	done
	assert_eq "$(img_count)" "1" "exactly one image file"
	no_temps
}

@test "image: OCI layout directory is archived deterministically" {
	run_fc 0 fc-disk image --json "$BATS_FILE_TMPDIR/layout"
	local path
	path=$(jq -r .path <<<"$output")
	assert_eq "$(jq -r .source <<<"$output")" "oci-layout" "source"
	assert_eq "$(jq -r .name <<<"$output")" "localhost/fcvm-disk-test:1" "name from index.json"
	assert_eq "$(jq -r .ref <<<"$output")" "$(config_sha "$BATS_FILE_TMPDIR/img.tar")" "ref is the image id"
	run tar -tf "$path"
	assert_contains "$output" "oci-layout" "disk holds the layout"
	# the same layout copied elsewhere gives the same digest
	cp -a "$BATS_FILE_TMPDIR/layout" "$BATS_TEST_TMPDIR/copy"
	touch "$BATS_TEST_TMPDIR/copy/index.json"
	run_fc 0 fc-disk image "$BATS_TEST_TMPDIR/copy"
	assert_eq "$output" "$path" "same layout, same disk"
	assert_eq "$(img_count)" "1" "one image file"
	no_temps
}

@test "image: docker-archive file" {
	# written by hand in docker-archive layout from the OCI blobs
	local d="$BATS_TEST_TMPDIR/docker" lay="$BATS_FILE_TMPDIR/layout" m c l
	m=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$lay/index.json")
	c=$(jq -r '.config.digest | sub("sha256:"; "")' "$lay/blobs/sha256/$m")
	l=$(jq -r '.layers[0].digest | sub("sha256:"; "")' "$lay/blobs/sha256/$m")
	mkdir -p "$d"
	cp "$lay/blobs/sha256/$c" "$d/$c.json"
	cp "$lay/blobs/sha256/$l" "$d/$l.tar"
	jq -n --arg c "$c.json" --arg l "$l.tar" '[{Config: $c, RepoTags: ["localhost/fcvm-disk-docker:2"], Layers: [$l]}]' >"$d/manifest.json"
	tar -C "$d" -cf "$BATS_TEST_TMPDIR/docker.tar" manifest.json "$c.json" "$l.tar"
	run_fc 0 fc-disk image --json "$BATS_TEST_TMPDIR/docker.tar"
	assert_eq "$(jq -r .format <<<"$output")" "docker-archive" "format"
	assert_eq "$(jq -r .name <<<"$output")" "localhost/fcvm-disk-docker:2" "name from RepoTags"
	assert_eq "$(jq -r .ref <<<"$output")" "$c" "ref is the image id"
	assert_eq "$(jq -r .image_id <<<"$output")" "$c" "image id is the config digest"
}

@test "image: image from the host's podman storage" {
	command -v podman >/dev/null || skip "podman not installed"
	timeout 60 podman image ls >/dev/null 2>&1 || skip "host podman storage does not work here"
	PODMAN_REF="localhost/fcvm-disk-test-$$-$BATS_TEST_NUMBER:latest"
	"$MKIMAGE" "$BATS_TEST_TMPDIR/p.tar" --name "$PODMAN_REF"
	timeout 60 podman load -q -i "$BATS_TEST_TMPDIR/p.tar"
	run_fc 0 fc-disk image --json "$PODMAN_REF"
	assert_contains "${lines[0]}" "saving '$PODMAN_REF' from podman storage" "says it saves (stderr)"
	local path json=${lines[-1]}
	path=$(jq -r .path <<<"$json")
	assert_eq "$(jq -r .source <<<"$json")" "podman" "source"
	assert_eq "$(jq -r .name <<<"$json")" "$PODMAN_REF" "name is the podman name"
	assert_eq "$(jq -r .ref <<<"$json")" "$(jq -r .image_id <<<"$json")" "ref is the image id"
	assert_eq "$(jq -r .image_id <<<"$json")" "$(podman image inspect --format '{{.Id}}' "$PODMAN_REF")" \
		"image id matches podman's"
	# cached without saving again: the disk is not rewritten
	touch -d @1000000000 "$path"
	run_fc 0 fc-disk image "$PODMAN_REF"
	assert_eq "$output" "$path" "same path the second time"
	assert_eq "$(stat -c %Y "$path")" "1000000000" "not saved again"
	no_temps
}

@test "image: unknown image is a clear error and creates nothing" {
	run_fc 1 fc-disk image "no-such-image-$$"
	assert_contains "$output" "fc-disk: image 'no-such-image-$$' not found: not a file, an OCI layout or an image in podman storage" "message"
	mkdir "$BATS_TEST_TMPDIR/plain"
	run_fc 1 fc-disk image "$BATS_TEST_TMPDIR/plain"
	assert_contains "$output" "is a directory but not an OCI image layout" "plain directory"
	assert_eq "$(img_count 2>/dev/null || echo 0)" "0" "no image"
}

@test "image: corrupt archives are rejected, nothing left behind" {
	local kind
	for kind in truncated garbage no-index; do
		"$MKIMAGE" "$BATS_TEST_TMPDIR/$kind.tar" --corrupt "$kind"
		run_fc 1 fc-disk image "$BATS_TEST_TMPDIR/$kind.tar"
		assert_contains "$output" "fc-disk: image '$BATS_TEST_TMPDIR/$kind.tar': " "$kind: names the image"
	done
	run_fc 1 fc-disk image "$BATS_TEST_TMPDIR/truncated.tar"
	assert_contains "$output" "truncated" "truncated archive says so"
	run_fc 1 fc-disk image "$BATS_TEST_TMPDIR/garbage.tar"
	assert_contains "$output" "not a tar archive" "garbage says so"
	run_fc 1 fc-disk image "$BATS_TEST_TMPDIR/no-index.tar"
	assert_contains "$output" "no index.json" "tar without index says so"
	assert_eq "$(img_count)" "0" "no image"
	no_temps
}

@test "usage: bad arguments exit 2, -h exits 0" {
	run_fc 2 fc-disk
	run_fc 2 fc-disk frobnicate
	run_fc 2 fc-disk image
	run_fc 2 fc-disk rootfs
	run_fc 2 fc-disk rootfs --vm ../etc
	assert_contains "$output" "invalid --vm '../etc'" "id validated"
	run_fc 2 fc-disk image --vm x "$BATS_FILE_TMPDIR/img.tar"
	run_fc 0 fc-disk -h
	assert_contains "$output" "usage: fc-disk image [--json] [--] IMAGE" "usage on stdout"
}

@test "rootfs: reflink copy on btrfs, no overwrite without --force, rm" {
	mount_btrfs
	export FCVM_ROOT="$MNT/root"
	mkdir -p "$FCVM_ROOT/rootfs/abc"
	head -c 8M /dev/urandom >"$FCVM_ROOT/rootfs/abc/rootfs.ext4"
	ln -s abc "$FCVM_ROOT/rootfs/default"
	run_fc 0 fc-disk rootfs --vm vm1
	assert_eq "$output" "$FCVM_ROOT/vm-disks/vm1/rootfs.ext4" "prints the path"
	cmp "$FCVM_ROOT/rootfs/abc/rootfs.ext4" "$output"
	run filefrag -v "$FCVM_ROOT/vm-disks/vm1/rootfs.ext4"
	assert_contains "$output" "shared" "extents are shared with the base (a reflink, not a copy)"

	run_fc 1 fc-disk rootfs --vm vm1
	assert_contains "$output" "already exists (use --force" "no silent overwrite"
	echo changed >"$FCVM_ROOT/vm-disks/vm1/rootfs.ext4"
	run_fc 0 fc-disk rootfs --vm vm1 --force
	cmp "$FCVM_ROOT/rootfs/abc/rootfs.ext4" "$FCVM_ROOT/vm-disks/vm1/rootfs.ext4"

	head -c 1M /dev/zero >"$BATS_TEST_TMPDIR/other-base"
	cp "$BATS_TEST_TMPDIR/other-base" "$MNT/other"
	run_fc 0 fc-disk rootfs --vm vm2 --base "$MNT/other"
	cmp "$MNT/other" "$FCVM_ROOT/vm-disks/vm2/rootfs.ext4"

	echo log >"$FCVM_ROOT/vm-disks/vm1/console.log"
	ln -s "$FCVM_ROOT/rootfs/abc" "$FCVM_ROOT/vm-disks/vm1/link"
	run_fc 0 fc-disk rm --vm vm1
	[ ! -e "$FCVM_ROOT/vm-disks/vm1" ]
	[ -f "$FCVM_ROOT/rootfs/abc/rootfs.ext4" ]   # symlink removed, not followed
	run_fc 0 fc-disk rm --vm vm1                 # idempotent
	run_fc 0 fc-disk rm --vm vm2
	[ -z "$(ls -A "$FCVM_ROOT/vm-disks")" ]
}

@test "rootfs: ext4 cannot reflink: clear error, nothing left behind" {
	mkdir -p "$FCVM_ROOT/rootfs/abc"
	head -c 1M /dev/zero >"$FCVM_ROOT/rootfs/abc/rootfs.ext4"
	ln -s abc "$FCVM_ROOT/rootfs/default"
	[ "$(findmnt -n -o FSTYPE -T "$FCVM_ROOT")" = ext4 ] || skip "test root is not on ext4"
	run_fc 1 fc-disk rootfs --vm vm1
	assert_eq "$output" "fc-disk: reflink '$FCVM_ROOT/rootfs/default/rootfs.ext4' to '$FCVM_ROOT/vm-disks/vm1/rootfs.ext4': Operation not supported: the data root must be on btrfs or XFS (run 'fc-setup storage')" "message"
	[ ! -e "$FCVM_ROOT/vm-disks/vm1" ]
}

@test "rootfs: missing base rootfs" {
	run_fc 1 fc-disk rootfs --vm vm1
	assert_contains "$output" "run 'fc-setup rootfs'" "points at the fix"
	[ ! -e "$FCVM_ROOT/vm-disks/vm1" ]
}

@test "rm: refuses to recurse into directories" {
	mkdir -p "$FCVM_ROOT/vm-disks/vm1/sub"
	touch "$FCVM_ROOT/vm-disks/vm1/a" "$FCVM_ROOT/vm-disks/vm1/sub/keep"
	run_fc 1 fc-disk rm --vm vm1
	assert_contains "$output" "contains directories" "says why"
	[ -f "$FCVM_ROOT/vm-disks/vm1/sub/keep" ]
	# the vm-disks/ID entry itself a symlink: not followed
	mkdir -p "$BATS_TEST_TMPDIR/elsewhere"
	touch "$BATS_TEST_TMPDIR/elsewhere/precious"
	ln -s "$BATS_TEST_TMPDIR/elsewhere" "$FCVM_ROOT/vm-disks/vm2"
	run_fc 1 fc-disk rm --vm vm2
	[ -f "$BATS_TEST_TMPDIR/elsewhere/precious" ]
}

# Issue 6, deliverable 6: every shape of archive a user meets runs by its
# image id, whatever (if anything) its annotations name it.
@test "image: archive shapes - full name, bare tag, no name, containerd name, docker-archive" {
	local want; want=$(config_sha "$BATS_FILE_TMPDIR/img.tar")
	local t=$BATS_TEST_TMPDIR shape
	"$MKIMAGE" "$t/full.tar" --name localhost/shape:1
	"$MKIMAGE" "$t/tag.tar" --name latest
	"$MKIMAGE" "$t/none.tar" --no-name
	"$MKIMAGE" "$t/containerd.tar" --name latest --containerd-name docker.io/library/shape:latest
	"$MKIMAGE" "$t/docker.tar" --format docker --name localhost/shape:2
	"$MKIMAGE" "$t/docker-none.tar" --format docker --no-name
	for shape in full tag none containerd docker docker-none; do
		run_fc 0 fc-disk image --json "$t/$shape.tar"
		assert_eq "$(jq -r .ref <<<"$output")" "$want" "$shape: the guest is asked for the image id"
		assert_eq "$(jq -r .image_id <<<"$output")" "$want" "$shape: image id"
	done
	run_fc 0 fc-disk image --json "$t/tag.tar"
	assert_eq "$(jq -r .name <<<"$output")" latest "bare tag: shown as it is"
	run_fc 0 fc-disk image --json "$t/none.tar"
	assert_eq "$(jq -r .name <<<"$output")" null "no name: null"
	run_fc 0 fc-disk image --json "$t/containerd.tar"
	assert_eq "$(jq -r .name <<<"$output")" docker.io/library/shape:latest "containerd's full name preferred"
	run_fc 0 fc-disk image --json "$t/docker.tar"
	assert_eq "$(jq -r .format <<<"$output")" docker-archive "docker format"
	assert_eq "$(jq -r .name <<<"$output")" localhost/shape:2 "docker name"
}

@test "image: what skopeo and podman save write (tag-only oci-archive, no name, docker-archive)" {
	command -v skopeo >/dev/null || skip "skopeo not installed"
	local want; want=$(config_sha "$BATS_FILE_TMPDIR/img.tar")
	local t=$BATS_TEST_TMPDIR
	timeout 60 skopeo copy -q "oci:$BATS_FILE_TMPDIR/layout" "oci-archive:$t/tag.tar:latest"
	assert_eq "$(tar -xOf "$t/tag.tar" index.json | jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]')" \
		latest "skopeo wrote only the tag"
	timeout 60 skopeo copy -q "oci:$BATS_FILE_TMPDIR/layout" "oci-archive:$t/none.tar"
	timeout 60 skopeo copy -q "oci:$BATS_FILE_TMPDIR/layout" "docker-archive:$t/docker.tar:localhost/shape:3"
	local shape
	for shape in tag none docker; do
		run_fc 0 fc-disk image --json "$t/$shape.tar"
		assert_eq "$(jq -r .ref <<<"$output")" "$want" "skopeo $shape: runs by image id"
	done
	# podman itself loads each of them under that id
	local p="podman --root $t/storage --runroot $t/run --storage-driver vfs"
	for shape in tag none docker; do
		timeout 60 $p load -q -i "$t/$shape.tar" >/dev/null
	done
	assert_eq "$(timeout 60 $p image inspect --format '{{.Id}}' "$want")" "$want" "podman finds the image by that id"
	# and what podman save writes: a docker-archive keeps the id; an
	# oci-archive of an image loaded from a docker-archive gets a converted
	# config, so the id the guest's podman load gives it is that config's
	local fmt id
	for fmt in docker-archive oci-archive; do
		timeout 60 $p save -q --format "$fmt" -o "$t/saved-$fmt.tar" localhost/shape:3
		id=$want
		[ "$fmt" = oci-archive ] && id=$(config_sha "$t/saved-$fmt.tar")
		run_fc 0 fc-disk image --json "$t/saved-$fmt.tar"
		assert_eq "$(jq -r .ref <<<"$output")" "$id" "podman save --format $fmt: runs by its image id"
		assert_eq "$(jq -r .format <<<"$output")" "$fmt" "podman save --format $fmt: format"
		timeout 60 $p rmi -a -f >/dev/null 2>&1
		timeout 60 $p load -q -i "$t/saved-$fmt.tar" >/dev/null
		assert_eq "$(timeout 60 $p image inspect --format '{{.Id}}' "$id")" "$id" \
			"podman save --format $fmt: podman load gives it that id"
	done
	timeout 60 $p rmi -a -f >/dev/null 2>&1 || true
}

@test "image: a multi-image archive is refused, naming the images and how to pick one" {
	local t=$BATS_TEST_TMPDIR
	"$MKIMAGE" "$t/multi.tar" --name localhost/one:1 --second-name localhost/two:2
	run_fc 1 fc-disk image "$t/multi.tar"
	assert_contains "$output" "holds 2 images ('localhost/one:1', 'localhost/two:2')" "names both images"
	assert_contains "$output" "skopeo copy oci-archive:ARCHIVE:NAME" "says how to choose"
	"$MKIMAGE" "$t/dmulti.tar" --format docker --name localhost/one:1 --second-name localhost/two:2
	run_fc 1 fc-disk image "$t/dmulti.tar"
	assert_contains "$output" "holds 2 images ('localhost/one:1', 'localhost/two:2')" "docker: names both"
	assert_contains "$output" "skopeo copy docker-archive:ARCHIVE:NAME" "docker: says how to choose"
	assert_eq "$(img_count)" "0" "no image"
	no_temps
	if command -v skopeo >/dev/null; then
		# the advice works
		timeout 60 skopeo copy -q "oci-archive:$t/multi.tar:localhost/two:2" "oci-archive:$t/two.tar"
		run_fc 0 fc-disk image --json "$t/two.tar"
		assert_eq "$(jq -r .format <<<"$output")" oci-archive "the copied-out image is accepted"
	fi
}

# Issue 7, item 9: archive text reaches the terminal sanitised.
@test "image: names and paths from an archive are printed sanitised" {
	local t=$BATS_TEST_TMPDIR esc=$'\e]0;owned\a\e[2J'
	"$MKIMAGE" "$t/evil.tar" --name "localhost/x:1$esc"
	run_fc 0 fc-disk image --json "$t/evil.tar"
	assert_eq "$(jq -r .name <<<"$output")" "localhost/x:1?]0;owned??[2J" "control characters became '?'"
	"$MKIMAGE" "$t/m.tar" --name "a$esc" --second-name $'b\xc2\x9b31m'
	run_fc 1 fc-disk image "$t/m.tar"
	assert_contains "$output" "('a?]0;owned??[2J', 'b?31m')" "names in errors sanitised (C0 and C1)"
	if [[ "$output" == *$'\e'* || "$output" == *$'\xc2\x9b'* ]]; then
		echo "raw control bytes reached the terminal: $output" >&2
		return 1
	fi
}

# Issue 7, item 10: '--' ends the options; -h/--help before it is help.
@test "usage: '--' makes an option-like operand an image name" {
	run_fc 0 fc-disk image --json --help
	assert_contains "$output" "usage: fc-disk image" "--help after an option is still help"
	run_fc 1 fc-disk image --json -- --help
	assert_contains "$output" "image '--help' not found" "after '--' it is an image name"
	cp "$BATS_FILE_TMPDIR/img.tar" "$BATS_TEST_TMPDIR/-dash.tar"
	cd "$BATS_TEST_TMPDIR"
	run_fc 2 fc-disk image -dash.tar
	run_fc 0 fc-disk image --json -- -dash.tar
	assert_eq "$(jq -r .format <<<"$output")" oci-archive "a file named '-dash.tar' after '--'"
}

# Issue 7, item 14: a running VM's files are not removed under it.
@test "rm: refuses while the VM's owner is live, removes once it is gone" {
	mkdir -p "$FCVM_ROOT/vm-disks/vm1" "$FCVM_ROOT/state"
	echo log >"$FCVM_ROOT/vm-disks/vm1/console.log"
	sleep 600 &
	local pid=$! start
	start=$(awk '{sub(/.*\) /, ""); print $20}' "/proc/$pid/stat")
	jq -n --argjson pid "$pid" --argjson start "$start" \
		'{version: 1, id: "vm1", name: "one", process_type: "vm", pid: $pid, pid_start: $start,
		  status: "starting", created: "2026-01-01T00:00:00Z"}' \
		>"$FCVM_ROOT/state/vm1.json"
	run_fc 1 fc-disk rm --vm vm1
	assert_contains "$output" "VM 'vm1' is running (pid $pid)" "refuses, naming the owner"
	assert_eq "$(cat "$FCVM_ROOT/vm-disks/vm1/console.log")" log "files kept"
	kill "$pid"; wait "$pid" || true
	run_fc 0 fc-disk rm --vm vm1
	assert_eq "$(ls -A "$FCVM_ROOT/vm-disks")" "" "removed once the owner is dead"
	rm -f "$FCVM_ROOT/state/vm1.json"
}

# Issue 7, item 13: a full data root says so.
@test "image: a full data root says 'data root ... is full', leaves no temporary" {
	mount_btrfs
	export FCVM_ROOT="$MNT/root"
	dd if=/dev/zero of="$MNT/fill" bs=1M 2>/dev/null || true
	sync
	run_fc 1 fc-disk image "$BATS_FILE_TMPDIR/img.tar"
	assert_contains "$output" "data root '$FCVM_ROOT' is full" "says the data root is full"
	no_temps
	assert_eq "$(find "$FCVM_ROOT/images" -name '*.img' 2>/dev/null | wc -l)" 0 "no image"
}
