# tests/lib/killmatrix.bash - runs cells of the kill matrix (tests/lib/killmatrix
# runs one; what a cell means is written in tests/120-kill-matrix-slow.bats).
# Used by the full matrix (120, make check-slow) and by the sample of it that
# runs in every suite (121). Loading it gives the file its setup_file,
# teardown_file and setup.

# km_setup_file: the image, and a private copy (reflinked: cheap) of the
# kernel and rootfs: the shared fixture root's builds may be replaced or
# collected by other runs while the cells run for minutes.
km_setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-kill:1 >/dev/null
	KM_FIX=""
	if [ -n "${FCVM_TEST_BTRFS:-}" ] && [ -f "${FCVM_TEST_ROOTFS:-}/rootfs.ext4" ] &&
	   [ -f "${FCVM_TEST_KERNEL:-}/vmlinux" ]; then
		KM_FIX="$FCVM_TEST_BTRFS/km-fixtures-$$"
		mkdir -p "$KM_FIX"
		cp -a --reflink=auto "$(readlink -f "$FCVM_TEST_KERNEL")" "$KM_FIX/kernel" &&
			cp -a --reflink=auto "$(readlink -f "$FCVM_TEST_ROOTFS")" "$KM_FIX/rootfs" &&
			export FCVM_TEST_KERNEL="$KM_FIX/kernel" FCVM_TEST_ROOTFS="$KM_FIX/rootfs"
	fi
	export KM_FIX
}

km_teardown_file() {
	[ -n "${KM_FIX:-}" ] && rm -rf "$KM_FIX"
	return 0
}

setup_file() { km_setup_file; }
teardown_file() { km_teardown_file; }
setup() { need_rootfs; }

# km_cells "TARGET SIG PHASE MODE"...: the cells, KM_JOBS (3) at a time; each
# cell's line goes to the TAP stream; fails naming every failing cell.
km_cells() {
	local cell n=0 f rc=0
	local -a pids=()
	local dir=$BATS_TEST_TMPDIR/cells
	for cell in "$@"; do
		n=$((n + 1))
		mkdir -p "$dir/$n"
		while [ "$(jobs -rp | wc -l)" -ge "${KM_JOBS:-3}" ]; do wait -n || true; done
		# shellcheck disable=SC2086 # the cell is four words
		KM_WORK="$dir/$n" timeout --kill-after=10 400 \
			"$BATS_TEST_DIRNAME/lib/killmatrix" cell $cell \
			>"$dir/$n/result" 2>"$dir/$n/stderr" 3>&- &
		pids+=($!)
	done
	for f in "${pids[@]}"; do wait "$f" || true; done
	for ((f = 1; f <= n; f++)); do
		if [ ! -s "$dir/$f/result" ]; then
			echo "FAIL cell '${!f}' gave no result (killed by its timeout?): $(tail -3 "$dir/$f/stderr")" >"$dir/$f/result"
		fi
		echo "# $(cat "$dir/$f/result")" >&3
		if grep -q '^FAIL' "$dir/$f/result"; then
			cat "$dir/$f/result"
			rc=1
		fi
	done
	return $rc
}
