#!/usr/bin/env bash
# examples/demo.sh [BUILD_DIR] - the main job on a fresh machine: prepare the
# data root, kernel and rootfs (cached after the first run), build a small
# image locally (no registry), and run it as a container in a microVM.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
export PATH="$build/bin:$PATH"
export FCVM_ROOT="${FCVM_ROOT:-/mnt/fcvm-btrfs}"
export FCVM_CACHE="${FCVM_CACHE:-/var/cache/fcvm}"
mkdir -p "$FCVM_CACHE"

fc-setup storage >&2
fc-setup kernel >/dev/null
fc-setup rootfs >/dev/null
image="$FCVM_CACHE/fcvm-demo.oci.tar"
"$top/tests/lib/mkimage" "$image" --name localhost/fcvm-demo:latest >/dev/null
echo "fcvm demo: running a container in a microVM (fc-qemu/TCG here: ~20 s)" >&2
exec fcvm podman run --rm --name fcvm-demo -e GREETING=hello "$image" \
	sh -c 'echo "$GREETING from $(uname -r), a container in a microVM"'
