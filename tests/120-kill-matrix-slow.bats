#!/usr/bin/env bats
# The kill matrix of issue 7 ("Proof"): {fcvm, fc-boot, fc-run, fc-vsock,
# QEMU, the process group} x {SIGINT, SIGTERM, SIGKILL} x {during boot,
# running, during shutdown} x {--rm, -d --rm, neither}: 162 cells. Every cell
# must end, within 10 s of the signal, with no process of its data root, no
# socket, no state record, no loop device, mount or tap, and (--rm, -d --rm)
# no vm-disks/<id>; a front end still in the foreground must exit within
# 10 s of its VM's death (QEMU gone) with 125 or 128+N, never the code of a
# container that did not end (3, the container's own code, only in the
# shutdown phase) - never a hang.
#
# One @test per target x signal; its 9 cells (phase x mode) run 3 at a time
# (KM_JOBS), each in a data root of its own, made fresh and removed after
# (tests/lib/killmatrix runs one cell; nothing is reused between cells, so no
# leak can hide behind another cell's cleanup). Each cell prints one line
# (ok/FAIL, what was left, times in ms from the signal); a failing @test
# names its failing cells. Measured: the file took 28 min here on
# 2026-12-02 (single-threaded TCG; a @test 1-2 min; each full cell is a TCG
# boot to a running container, so the CPU time of about 110 such boots is
# the floor). tests/121-kill-sample.bats runs 18 of the cells in every
# suite. KM_KEEP=DIR keeps each failing cell's logs
# (fcvm's stderr, fc-boot.log, console.log) in DIR. fcvm runs with
# --timeout 120: a boot that hangs fails its cell in 2 minutes, not 3.
#
# The container traps TERM and INT (exit 143/130: a container's PID 1 ignores
# signals it has no handler for, and fc-run forwards the first SIGINT/SIGTERM
# to the container, as podman does), prints "marker" once it runs, then
# sleeps 600 s - or, in the shutdown phase, sleeps 2 s, prints "bye" and
# exits 3 by itself. The front end is started in its own session (it is the
# group's leader) with SIGINT/SIGTERM not ignored (as from a terminal).
#
# What each cell means:
#  Phases (when the signal is sent):
#   boot      as soon as the target exists while the VM boots, before the
#             container's "marker": fc-boot = the VM owner as soon as its
#             state record exists (status "starting" or just "running");
#             fc-run, fc-vsock, QEMU (qemu-system-x86_64) as soon as the
#             process exists; fcvm and the group once QEMU exists.
#   running   the container's "marker" has reached the host.
#   shutdown  the container's "bye" has reached the host: it is exiting, and
#             podman's teardown in the guest, the agent's EXIT and the
#             poweroff follow (about 2 s here). A target that ended before
#             the signal landed is reported as "raced", never skipped.
#  Targets:
#   fcvm      the foreground 'fcvm podman run'. With -d --rm during boot: the
#             same, still waiting for the container to start. With -d --rm
#             running and shutdown the front end has already returned 0
#             (checked), so fcvm means 'fcvm stop NAME', signalled while it
#             waits for the owner to go (the record says "stopping"): a
#             stop that is itself interrupted must still end everything.
#   fc-boot   the VM's owner (the record's pid; with -d the detached one).
#   fc-run    the one fc-run (with -d the detached one, in its own session).
#             SIGINT/SIGTERM after the plan is handed over are forwarded to
#             the container (fc-run(1)), which then exits 130/143.
#   fc-vsock  the vhost-user vsock backend (a child of fc-qemu).
#   QEMU      qemu-system-x86_64 (the emulator fc-qemu runs).
#   group     kill -SIG -- -PGID (a supervisor, a CI runner, Ctrl-C): the
#             front end's group; with -d --rm running and shutdown (the
#             front end gone) the detached owner's group (fc-boot, fc-qemu,
#             fc-vsock, QEMU; fc-run and the janitors have sessions of their
#             own).
#  Modes: --rm; -d --rm; neither (the VM's disk directory may then stay when
#   the VM reached "running": only processes, sockets and records count).
#  Cells that make no sense: none is dropped. The nearest to it is -d --rm x
#   fcvm x running/shutdown, whose meaning ('fcvm stop' interrupted) is above.
#  -d --rm x fc-run x SIGKILL while running: the cell requires the VM to end
#   too: a detached VM whose fc-run is gone has no one left to report its
#   exit or (with --rm) to remove its disk after it.

load helpers
bats_require_minimum_version 1.5.0

load lib/killmatrix

# matrix TARGET SIG: the 9 cells (phase x mode) of one target and signal.
matrix() {
	local phase mode
	local -a cells=()
	for phase in boot running shutdown; do
		for mode in rm drm none; do
			cells+=("$1 $2 $phase $mode")
		done
	done
	km_cells "${cells[@]}"
}

@test "kill matrix: fcvm x SIGINT" { matrix fcvm INT; }
@test "kill matrix: fcvm x SIGTERM" { matrix fcvm TERM; }
@test "kill matrix: fcvm x SIGKILL" { matrix fcvm KILL; }
@test "kill matrix: fc-boot x SIGINT" { matrix owner INT; }
@test "kill matrix: fc-boot x SIGTERM" { matrix owner TERM; }
@test "kill matrix: fc-boot x SIGKILL" { matrix owner KILL; }
@test "kill matrix: fc-run x SIGINT" { matrix run INT; }
@test "kill matrix: fc-run x SIGTERM" { matrix run TERM; }
@test "kill matrix: fc-run x SIGKILL" { matrix run KILL; }
@test "kill matrix: fc-vsock x SIGINT" { matrix vsock INT; }
@test "kill matrix: fc-vsock x SIGTERM" { matrix vsock TERM; }
@test "kill matrix: fc-vsock x SIGKILL" { matrix vsock KILL; }
@test "kill matrix: QEMU x SIGINT" { matrix qemu INT; }
@test "kill matrix: QEMU x SIGTERM" { matrix qemu TERM; }
@test "kill matrix: QEMU x SIGKILL" { matrix qemu KILL; }
@test "kill matrix: process group x SIGINT" { matrix group INT; }
@test "kill matrix: process group x SIGTERM" { matrix group TERM; }
@test "kill matrix: process group x SIGKILL" { matrix group KILL; }
