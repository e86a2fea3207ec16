# tests/lib/clonepss.sh - sourced by tests/103-clone-memory.bats and
# tests/bench/clone: the memory the clones of one snapshot really cost.
#
#   clone_pss TAG   prints "N PSS RSS DIRTY" (KiB): the number of running
#                   clones of snapshot TAG; the sum of Pss and Rss from
#                   /proc/<pid>/smaps_rollup of each clone's VMM (its record's
#                   vmm_pid: fc-qemu) and all its descendants (QEMU, fc-vsock);
#                   and what the clones dirtied of the snapshot's memory
#                   (Private_Dirty of their mappings of the memory file).
#                   PSS divides every shared page among its users, so the
#                   page cache of the snapshot's memory file that N clones map
#                   privately counts once in all, not N times.
#   pss_row N PSS RSS DIRTY IMAGE_KIB   one line of the table (pss_header first)

_pss_tree() {
	local p=$1 c
	echo "$p"
	for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do _pss_tree "$c"; done
}

clone_pss() {
	local tag=$1 n=0 pss=0 rss=0 dirty=0 vp q v
	local mem="$FCVM_ROOT/snapshots/$tag/memory"
	for vp in $(fc-state ls --json | jq -r --arg t "$tag" \
		'.[] | select(.process_type == "clone" and .snapshot == $t and .status == "running") | .vmm_pid'); do
		n=$((n + 1))
		for q in $(_pss_tree "$vp"); do
			v=$(awk '/^Pss:/ {p = $2} /^Rss:/ {r = $2} END {if (p != "") print p, r}' \
				"/proc/$q/smaps_rollup" 2>/dev/null) || continue
			[ -n "$v" ] || continue
			pss=$((pss + ${v% *}))
			rss=$((rss + ${v#* }))
			v=$(awk -v m="$mem" '/^[0-9a-f]+-[0-9a-f]+ / {in_mem = ($NF == m)}
				in_mem && /^Private_Dirty:/ {d += $2} END {print d + 0}' \
				"/proc/$q/smaps" 2>/dev/null) || continue
			dirty=$((dirty + v))
		done
	done
	echo "$n $pss $rss $dirty"
}

pss_header() {
	printf '%-4s %12s %12s %12s %14s %12s %16s %8s\n' N "PSS (KiB)" "PSS/clone" "RSS (KiB)" \
		"dirtied (KiB)" "image (KiB)" "N x image (KiB)" "PSS/img"
}

pss_row() {
	printf '%-4s %12d %12d %12d %14d %12d %16d %8.2f\n' "$1" "$2" $(($2 / $1)) "$3" "$4" \
		"$5" $(($1 * $5)) "$(awk -v p="$2" -v i="$5" 'BEGIN {print p / i}')"
}
