#!/usr/bin/env bash
# examples/by-hand.sh IMAGE CMD... - what 'fcvm podman run' does, one tool
# at a time, so each step can be run and inspected alone.
set -eu
[ $# -ge 2 ] || { echo "usage: by-hand.sh IMAGE CMD [ARG...]" >&2; exit 2; }
image=$1; shift
id=vm-byhand$$

# 1. The image as read-only disks (cached by digest: the archive and, when
#    this host can build it, the image store: the image already unpacked)
#    and a CoW rootfs.
disk=$(fc-disk image --json -- "$image")
rootfs=$(fc-disk rootfs --vm "$id")

# 2. The plan the guest agent will follow (see fc-agent(1)). The guest runs
#    the image by its id: names in archives may be bare tags or missing.
#    With a store it runs it from there; else it podman-loads the archive.
plan=$(mktemp)
jq -n --arg ref "$(jq -r '.ref // .image_id' <<<"$disk")" --argjson store "$(jq '.store != null' <<<"$disk")" \
	'{version: 1, image: ({disk: "/dev/vdb", ref: $ref} + (if $store then {store: true} else {} end)),
	cmd: $ARGS.positional, poweroff: true}' --args -- "$@" > "$plan"

# 3. Boot: fc-boot owns the VM; --detach returns its pid once it runs.
owner=$(fc-boot --name "$id" --id "$id" --rootfs "$rootfs" --drive "$(jq -r '.store // .path' <<<"$disk"):ro" --detach)
trap 'kill "$owner" 2>/dev/null; fc-disk rm --vm "$id"; rm -f "$plan"' EXIT

# 4. Hand the plan to the agent over vsock; output and exit code come back.
#    --owner-pid: if the VM dies, fc-run says so at once.
fc-run --vsock "${FCVM_ROOT:-/mnt/fcvm-btrfs}/run/$id/vsock.sock" --owner-pid "$owner" -- "$plan"
