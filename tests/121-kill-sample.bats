#!/usr/bin/env bats
# A sample of the kill matrix (tests/120-kill-matrix-slow.bats says what each
# cell means and checks), run in every suite: the full 162 cells take 30-60
# min here and run with 'make check-slow'. 18 cells: every target x signal
# once; target t and signal s take phase (s+t) mod 3 and mode (s+2t) mod 3,
# so every phase x mode pair and every signal x phase pair comes up twice.

load helpers
bats_require_minimum_version 1.5.0
load lib/killmatrix

# sample TARGET: its 3 cells, one per signal.
sample() {
	local -a targets=(fcvm owner run vsock qemu group) sigs=(INT TERM KILL)
	local -a phases=(boot running shutdown) modes=(rm drm none) cells=()
	local t s
	for ((t = 0; t < ${#targets[@]}; t++)); do
		[ "${targets[t]}" = "$1" ] && break
	done
	for ((s = 0; s < 3; s++)); do
		cells+=("$1 ${sigs[s]} ${phases[(s + t) % 3]} ${modes[(s + 2 * t) % 3]}")
	done
	km_cells "${cells[@]}"
}

@test "kill sample: fcvm (SIGINT boot --rm, SIGTERM running -d --rm, SIGKILL shutdown plain)" { sample fcvm; }
@test "kill sample: fc-boot (SIGINT running plain, SIGTERM shutdown --rm, SIGKILL boot -d --rm)" { sample owner; }
@test "kill sample: fc-run (SIGINT shutdown -d --rm, SIGTERM boot plain, SIGKILL running --rm)" { sample run; }
@test "kill sample: fc-vsock (SIGINT boot --rm, SIGTERM running -d --rm, SIGKILL shutdown plain)" { sample vsock; }
@test "kill sample: QEMU (SIGINT running plain, SIGTERM shutdown --rm, SIGKILL boot -d --rm)" { sample qemu; }
@test "kill sample: process group (SIGINT shutdown -d --rm, SIGTERM boot plain, SIGKILL running --rm)" { sample group; }
