#!/usr/bin/env bats
# The image store disk (issue 13, item 1): fc-disk image unpacks an image
# once per digest into a read-only ext4 in containers-storage layout, and
# the guest's podman runs it from there instead of a podman load per run.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-store:latest >/dev/null
}

setup() {
	fc_vm_root store
}

teardown() {
	local r=0
	leak_check || r=$?
	rm -rf "$FCVM_ROOT"
	return $r
}

# store_of IMAGE: the store disk fc-disk publishes for IMAGE.
store_of() {
	fc-disk image --json -- "$1" | jq -r '.store // empty'
}

@test "store: built once per digest; the next run uses the same disk and loads nothing" {
	run_fc 0 --timeout 240 fcvm podman run --name first "$IMG" echo one
	assert_eq "$output" one "the first run's output"
	local store; store=$(store_of "$IMG")
	[ -f "$store" ] || { echo "no store disk published" >&2; false; }
	assert_eq "$(dirname "$store")" "$FCVM_ROOT/images/$(sha256sum "$IMG" | cut -c1-64).store" \
		"keyed by the archive's digest"
	jq -e '.image.store == true and (.image.ref | test("^[0-9a-f]{64}$"))' \
		"$FCVM_ROOT"/vm-disks/*/plan.json >/dev/null ||
		{ cat "$FCVM_ROOT"/vm-disks/*/plan.json >&2; false; }
	local before; before=$(stat -c '%i %Y' "$store" "$(dirname "$store")/manifest.json")
	run_fc 0 --timeout 240 fcvm podman run --rm "$IMG" echo two
	assert_eq "$output" two "the second run's output"
	assert_eq "$(stat -c '%i %Y' "$store" "$(dirname "$store")/manifest.json")" "$before" \
		"the second run reused the published store (same inodes, untouched)"
	assert_eq "$(ls -d "$FCVM_ROOT"/images/*.store | wc -l)" 1 "one store for one digest"
	# The guest mounted the store and never ran podman load.
	assert_contains "$(cat "$FCVM_ROOT"/vm-disks/*/console.log)" "/run/fcvm/image" "the console names the store"
	run -1 grep -q "loading the image" "$FCVM_ROOT"/vm-disks/*/console.log
	run_fc 0 fcvm rm first
}

@test "store: two VMs run the same image at once from the one store, read-only; gc keeps it until unused" {
	local store; store=$(store_of "$IMG")
	run_fc 0 --timeout 240 fcvm podman run -d --rm --name a "$IMG" sleep 600 3>&-
	run_fc 0 --timeout 240 fcvm podman run -d --rm --name b "$IMG" sleep 600 3>&-
	run_fc 0 fcvm ls --json
	assert_eq "$(jq length <<<"$output")" 2 "both VMs run"
	assert_eq "$(jq -r --arg s "$store" '[.[] | select(any(.config.drives[]; .path == $s and .read_only))] | length' <<<"$output")" 2 \
		"both VMs have the same store disk, read-only"
	run_fc 0 --timeout 60 fcvm exec a -- sh -c 'echo from-a'
	assert_eq "$output" from-a "exec works in a container whose image is in the store"
	run_fc 0 fcvm gc
	[ -f "$store" ] || { echo "gc removed a store two running VMs use" >&2; false; }
	run_fc 0 fcvm stop a
	run_fc 0 fcvm stop b
	run_fc 0 fcvm gc
	assert_contains "$output" "removed image images/$(basename "$(dirname "$store")")" "gc collects the unused store"
	assert_eq "$(ls -A "$FCVM_ROOT/images" | wc -l)" 0 "and the archive"
}

@test "store: a container writing to its file system leaves the store unchanged" {
	local store sum
	store=$(store_of "$IMG")
	sum=$(sha256sum <"$store")
	run_fc 0 --timeout 240 fcvm podman run --rm "$IMG" \
		sh -c 'echo x > /etc/foo && rm /bin/true && echo fcvm-marker >> /etc/passwd && cat /etc/foo'
	assert_eq "$output" x "the container wrote to its own layer"
	assert_eq "$(sha256sum <"$store")" "$sum" "the store's bytes did not change"
	run_fc 0 --timeout 240 fcvm podman run --rm "$IMG" \
		sh -c 'if [ -e /etc/foo ]; then echo leaked; fi; ls /bin/true; grep -c fcvm-marker /etc/passwd || :'
	assert_eq "$output" "/bin/true
0" "a new container sees the image as it was"
}

@test "store: an image changed under the same name runs its new content" {
	local t=$BATS_TEST_TMPDIR
	"$BATS_TEST_DIRNAME/lib/mkimage" "$t/same.tar" --name localhost/same:1 --cmd '["echo","old"]' >/dev/null
	run_fc 0 --timeout 240 fcvm podman run --rm "$t/same.tar"
	assert_eq "$output" old "the first version"
	local first; first=$(store_of "$t/same.tar")
	"$BATS_TEST_DIRNAME/lib/mkimage" "$t/same.tar" --name localhost/same:1 --cmd '["echo","new"]' >/dev/null
	run_fc 0 --timeout 240 fcvm podman run --rm "$t/same.tar"
	assert_eq "$output" new "the changed image, not the cached one"
	local second; second=$(store_of "$t/same.tar")
	[ "$first" != "$second" ] || { echo "the same store for two digests: $first" >&2; false; }
	[ -f "$first" ] && [ -f "$second" ]
}

@test "store: a truncated or corrupt store is refused, naming what to remove" {
	local store; store=$(store_of "$IMG")
	local dir; dir=$(dirname "$store")
	chmod u+w "$store"
	cp "$store" "$BATS_TEST_TMPDIR/good"
	truncate -s -4096 "$store"
	run_fc 125 fcvm podman run --rm "$IMG" true
	assert_contains "$output" "cached image store '$dir' is damaged" "the store is named"
	assert_contains "$output" "truncated" "truncation said"
	assert_contains "$output" "rm -r '$dir'" "the fix is named"
	cp "$BATS_TEST_TMPDIR/good" "$store"
	printf 'garbage' | dd of="$store" bs=1 seek=$((1024 + 56)) conv=notrunc status=none
	run_fc 125 fcvm podman run --rm "$IMG" true
	assert_contains "$output" "corrupt" "a changed byte is found"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" 2>/dev/null | wc -l)" 0 "no VM was made"
	# Removing it, as the message says, rebuilds it.
	rm -r "$dir"
	run_fc 0 --timeout 240 fcvm podman run --rm "$IMG" echo rebuilt
	assert_eq "$output" rebuilt "a rebuilt store runs"
}

@test "store: a corrupt image archive is refused before any store is made" {
	"$BATS_TEST_DIRNAME/lib/mkimage" "$BATS_TEST_TMPDIR/cut.tar" --corrupt truncated >/dev/null
	run_fc 1 fc-disk image --json "$BATS_TEST_TMPDIR/cut.tar"
	assert_contains "$output" "cut.tar" "the archive is named"
	assert_eq "$(ls -A "$FCVM_ROOT/images" | wc -l)" 0 "nothing published, no temporary left"
}

@test "store: without skopeo fc-disk says so once and the guest loads the archive" {
	# Only fcvm's tools on PATH: a file archive needs no other program.
	local bin; bin=$(dirname "$(command -v fc-disk)")
	run_fc 0 env PATH="$bin" fc-disk image --json "$IMG"
	assert_contains "$output" "skopeo is not installed" "the reason"
	assert_eq "$(grep -c 'no image store' <<<"$output")" 1 "said once"
	assert_eq "$(tail -1 <<<"$output" | jq -r .store)" null "no store in the result"
	# The load path still works (FCVM_IMAGE_STORE=0 picks it on purpose).
	FCVM_IMAGE_STORE=0 run_fc 0 --timeout 240 fcvm podman run --name old "$IMG" echo loaded
	assert_eq "$output" loaded "the archive path runs"
	jq -e '.image | has("store") | not' "$FCVM_ROOT"/vm-disks/*/plan.json >/dev/null
	run_fc 0 fcvm rm old
}
