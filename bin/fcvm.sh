#!/usr/bin/env bash
# fcvm - the front end: composes fc-disk, fc-boot, fc-run and fc-state into
# podman-like commands. Each step is one tool; this script only wires them.
#
#   fcvm podman run [OPTIONS] IMAGE [CMD [ARG...]]
#   fcvm ls [-a] [--json] | fcvm stop NAME | fcvm logs NAME | fcvm rm NAME
#   fcvm gc [-n] [--json]
#
# Exit codes (podman's): the container's own for 'podman run' (128+N for a
# signal); 125 when fcvm itself or a tool failed before the container could
# report - bad arguments included, so no usage error looks like a container's
# exit code.
#
# 'podman run' in order, and why:
#  1. Validate every argument; nothing is made before all are known good.
#  2. Check the data root (fc-state ls refuses an unprepared one), the name,
#     and that the root has space.
#  3. fc-disk image (cached, nothing per-VM yet).
#  4. Only now is there something to clean up: the traps are set, and with
#     --rm a janitor is started in its own session (it outlives a SIGKILL of
#     fcvm or of fcvm's whole process group); it removes vm-disks/<id> once
#     fcvm and the processes fcvm named to it are gone and the VM has no live
#     owner. vm-disks/<id>/.rm names the janitor, for 'fcvm gc'.
#  5. fc-disk rootfs, the plan (atomically; ENOSPC said as "data root full").
#  6. fc-boot; fc-state wait --pid: running, or fail at once when fc-boot dies.
#  7. fc-run --owner-pid: fails at once when the VM's owner dies.
# A VM that never reached 'running' keeps nothing (--rm or not): there is no
# container whose files would be worth keeping.
set -u
set -o pipefail

prog=fcvm
# Descriptors we inherited (a test harness's pipes, say) must not leak into
# VM owners that outlive us: their readers would wait for EOF forever.
# 255 is the script itself.
for fd in /proc/$$/fd/*; do
	fd=${fd##*/}
	[ "$fd" -gt 2 ] && [ "$fd" -ne 255 ] && eval "exec $fd>&-" 2>/dev/null
done
unset fd
root="${FCVM_ROOT:-/mnt/fcvm-btrfs}"
export FCVM_ROOT="$root"
self=$(readlink -f "$0")
# Tools beside this script first (a build tree works uninstalled).
here=$(cd "$(dirname "$self")" && pwd)
export PATH="$here:$PATH"

# Bounds, the same as the tools' own (checked here, before anything is made).
CPUS_MAX=32
MEMORY_MIN=128 MEMORY_MAX=65536
TIMEOUT_MAX=86400
# Below this much free space the data root counts as full.
MIN_FREE_KIB=16384

usage() {
	cat <<'EOF'
usage: fcvm podman run [--name NAME] [-e K=V]... [--cpus N] [--memory MIB] [--rm] [-d]
                       [--network bridged|rootless|none] [-p [HOSTIP:][HOSTPORT:]PORT[/PROTO]]...
                       [--host-loopback] [-i] [-t] [-w DIR] [-u USER] [--entrypoint CMD]
                       [--env-file FILE]... [-l KEY[=VALUE]]... [--hostname NAME]
                       [-v|--map HOST:GUEST[:ro]]... [--timeout S] [--stop-timeout S]
                       [--health-check CMD|URL] [--no-snapshot]
                       [--] IMAGE [CMD [ARG...]]
       fcvm exec [-i] [-t] [--vm] [-e K=V]... [-w DIR] [-u USER] NAME [--] CMD [ARG...]
       fcvm ls [-a] [--json]
       fcvm stop NAME
       fcvm logs NAME
       fcvm rm NAME
       fcvm gc [-n] [--json]
       fcvm snapshot create (--pid PID | --name NAME) --tag TAG
       fcvm snapshot run (--snapshot TAG | --pid SERVE_PID) [--name NAME] [-d]
                         [-p [HOSTIP:][HOSTPORT:]PORT[/PROTO]]... [-v HOST:GUEST[:ro]]...
       fcvm snapshot serve [--prefetch on|off] TAG
       fcvm snapshot ls [--json]
       fcvm snapshot rm [--force] TAG
EOF
}

die() { echo "$prog: $*" >&2; exit 125; }
usage_die() { echo "$prog: $*" >&2; usage >&2; exit 125; }

need() {
	command -v "$1" >/dev/null || die "'$1' not found: build fcvm ('make') or install it"
}

new_id() { printf 'vm-%s' "$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"; }

valid_name() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]]; }

# num VALUE MIN MAX WHAT: VALUE is a decimal integer in [MIN, MAX].
num() {
	[[ "$1" =~ ^[0-9]{1,9}$ ]] && [ "$((10#$1))" -ge "$2" ] && [ "$((10#$1))" -le "$3" ] ||
		usage_die "invalid $4 '$1': want a whole number from $2 to $3"
}

# Free KiB on the data root's file system (empty if unknown).
free_kib() { df -Pk -- "$root" 2>/dev/null | awk 'NR == 2 { print $4 }'; }

root_full() {
	local f; f=$(free_kib)
	[ -n "$f" ] && [ "$f" -lt "$MIN_FREE_KIB" ]
}

full_msg() { echo "data root '$root' is full ($(free_kib) KiB free${1:+, $1}): free space or move FCVM_ROOT"; }

# proc_start PID: the process's start time (field 22 of /proc/PID/stat).
proc_start() {
	local s
	read -r s 2>/dev/null < "/proc/$1/stat" || return 1
	s=${s##*) }
	set -- $s
	echo "${20}"
}

# alive PID START: that very process still runs (pids are reused).
alive() { [ "$(proc_start "$1")" = "$2" ]; }

# until_ended PID: until PID has exited (gone, or a zombie bash has yet to
# reap), at most 10 s. Not bash's 'wait PID': run from a trap that came
# while bash was waiting for another child, it was seen to wait for any
# child (wait4(-1)) - and fcvm's janitors, children that wait for fcvm's
# end, never end: a deadlock (kill matrix: SIGINT of the group during boot).
until_ended() {
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		[ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = Z ] && return 0
		sleep 0.1
	done
	return 1
}

# The live record's FIELD for KEY (id or name); fails if there is none.
field_of() { fc-state get --field "$2" -- "$1" 2>/dev/null; }

# --- the --rm janitor (internal: 'fcvm _janitor ID') ---------------------
# Reads "pid PID START" lines on stdin; at end of file (fcvm is gone, however
# it went) waits for those processes and for the VM to have no live owner,
# then removes vm-disks/ID. It runs in its own session: a SIGKILL of fcvm's
# process group does not reach it.
cmd_janitor() {
	local id=$1 line p s round detached=0 handed=0 i owner
	local -a procs=()
	valid_name "$id" || exit 2
	while read -r line; do
		case $line in
		"pid "*) procs+=("${line#pid }") ;;
		detached) detached=1 ;;
		handed-over) handed=1 ;;
		esac
	done
	# A -d run whose fcvm died before it handed the VM to its user: the
	# detached owner lives in its own session and nobody would ever stop
	# it, so we do (it may still be claiming its record: look a while).
	if [ "$detached" = 1 ] && [ "$handed" = 0 ]; then
		for ((i = 0; i < 20; i++)); do
			if owner=$(field_of "$id" pid); then
				kill -TERM "$owner" 2>/dev/null
				break
			fi
			[ -e "$root/vm-disks/$id" ] || break
			sleep 0.5
		done
	fi
	# fcvm removed it itself (the usual end) and named nothing that lives.
	if [ ! -e "$root/vm-disks/$id" ]; then
		local any=0
		for p in "${procs[@]}"; do
			alive "${p%% *}" "${p#* }" && any=1
		done
		[ "$any" = 0 ] && exit 0
	fi
	for round in 1 2 3; do
		for p in "${procs[@]}"; do
			s=${p#* }; p=${p%% *}
			while alive "$p" "$s"; do sleep 0.5; done
		done
		# The VM's owner (it may have been started before fcvm could name
		# it): as long as it lives, bounded by the VM's own life. Polled
		# by a file test (a tool per poll takes seconds under load); every
		# 5 s fc-state says whether the record still has a live owner.
		i=0
		while [ -e "$root/state/$id.json" ]; do
			i=$((i + 1))
			[ $((i % 25)) -ne 0 ] || field_of "$id" id >/dev/null || break
			sleep 0.2
		done
		fc-disk rm --vm "$id" >/dev/null 2>&1
		fc-net down --vm "$id" >/dev/null 2>&1
		# A VM owner may still have been starting when fcvm died: look again.
		sleep 0.5
		[ -e "$root/vm-disks/$id" ] || break
	done
}

# --- the detached run's watcher (internal: 'fcvm _runwatch ID PID START RM') ---
# A detached VM's fc-run (PID with START) is the only one that hears of its
# container's end; once it is gone, however it went (its container ended, or
# it was killed and nobody would ever hear of the VM again), the VM has no
# more work: stop its owner. Its own session; bounded by fc-run's life.
cmd_runwatch() {
	local id=$1 p=$2 s=$3 rm=${4:-0} owner start
	valid_name "$id" || exit 2
	while alive "$p" "$s"; do sleep 0.2; done
	# After a reported end the guest syncs and powers itself off: up to 2 s
	# for that (its record goes with it), so that its last writes reach the
	# disk - which --rm removes anyway. Timed by the clock and a cheap test:
	# a tool per poll takes seconds under load.
	local end=$((${EPOCHREALTIME/./} / 1000 + (rm == 1 ? 0 : 2000)))
	while [ -e "$root/state/$id.json" ] && [ $((${EPOCHREALTIME/./} / 1000)) -lt "$end" ]; do
		sleep 0.1
	done
	owner=$(field_of "$id" pid) || exit 0
	start=$(field_of "$id" pid_start) || start=""
	# (no start time recorded yet: the pid is the record's, still starting)
	if [ -z "$start" ] || alive "$owner" "$start"; then
		kill -TERM "$owner" 2>/dev/null
	fi
	exit 0
}

# --- the network janitor (internal: 'fcvm _netjanitor ID PID START') ---
# Removes VM ID's network (fc-net down) once fcvm (PID with START) is gone
# and the VM has no live record: a detached VM that ended by itself, or a
# SIGKILL of fcvm. Its own session, like the --rm janitor; bounded by the
# VM's life. A network already removed makes it a no-op.
cmd_netjanitor() {
	local id=$1 p=$2 s=$3
	valid_name "$id" || exit 2
	while alive "$p" "$s"; do sleep 1; done
	while field_of "$id" id >/dev/null; do sleep 1; done
	fc-net down --vm "$id" >/dev/null 2>&1
}

# start_netjanitor ID: the network janitor of VM ID, bound to our life.
start_netjanitor() {
	( exec setsid "$self" _netjanitor "$1" "$$" "$(proc_start $$)" \
		</dev/null >/dev/null 2>&1 ) &
}

# --- startup snapshots (-d --health-check; issue 13) ----------------------
# The key: what the VM is made of (kernel and rootfs, both directories
# named by their inputs; the VMM; cpus, memory) and the container's whole
# configuration (image id, command, environment, options, network,
# ports, volumes, the health check) - never this run's name, which the
# clone fix-up gives the restored guest and container as hostname. Uses
# cmd_run's variables; the arguments are the container's command.
startup_key() {
	jq -nc --arg k "$st_kernel" --arg r "$st_rootfs" --arg vmm "${FCVM_VMM:-}" --arg q "${FCVM_QEMU:-}" \
		--arg ref "$ref" --arg store "$store" --argjson cpus "$cpus" --argjson mem "$memory" \
		--arg net "$netmode" --argjson hostlo "$hostlo" --arg w "$workdir" --arg u "$user" \
		--arg ep "$have_ep:$entrypoint" --argjson tty "$tty" --arg hc "$health" \
		--arg st "$stop_timeout" --argjson vols "$vspec_json" \
		--argjson env "$(jq -nc '$ARGS.positional' --args -- "${env[@]}")" \
		--argjson pub "$(jq -nc '$ARGS.positional' --args -- "${publish[@]}")" \
		--argjson labels "$(jq -nc '$ARGS.positional' --args -- "${labels[@]}")" \
		'{v: 1, kernel: $k, rootfs: $r, vmm: $vmm, qemu: $q, image: $ref, store: $store,
		  cpus: $cpus, memory: $mem, network: $net, host_loopback: $hostlo, publish: $pub,
		  volumes: $vols, env: $env, cmd: $ARGS.positional, workdir: $w, user: $u,
		  entrypoint: $ep, tty: $tty, labels: $labels, health: $hc, stop_timeout: $st}' \
		--args -- "$@" | sha256sum | cut -c1-16
}

# startup_key_run: the key of a foreground run's startup snapshot. It is
# taken before the plan (the agent ready, the image store mounted), so the
# VM and the image are all it holds: the kernel and rootfs builds, the VMM,
# cpus, memory, the image (its id and store disk) and the network mode.
# The container's configuration - command, environment, name, hostname,
# volumes - reaches the restored VM in this run's plan, as after a boot.
startup_key_run() {
	jq -nc --arg k "$st_kernel" --arg r "$st_rootfs" --arg vmm "${FCVM_VMM:-}" --arg q "${FCVM_QEMU:-}" \
		--arg ref "$ref" --arg disk "$disk" --argjson cpus "$cpus" --argjson mem "$memory" \
		--arg net "$netmode" \
		'{v: 1, before_plan: true, kernel: $k, rootfs: $r, vmm: $vmm, qemu: $q, image: $ref,
		  disk: $disk, cpus: $cpus, memory: $mem, network: $net}' | sha256sum | cut -c1-16
}

# owner_running: until VM $id runs, owned by $boot_pid (fc-boot or
# fc-clone, started in the background). 1 when it does not: the owner has
# 5 s to exit naming the cause itself; one still alive gets fc-state's
# reason said for it. Uses cmd_run's variables.
owner_running() {
	local why i
	why=$(fc-state wait --timeout "$timeout" --pid "$boot_pid" -- "$id" running 2>&1) && return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$boot_pid" 2>/dev/null || return 1
		sleep 0.1
	done
	echo "$prog: $why" >&2
	return 1
}

# startup_resume: this foreground run's VM as a clone of the startup
# snapshot $st_tag (taken before a plan) instead of a boot: fc-clone owns
# it as fc-boot would, with its own network (clone mode: the snapshot's
# guest address behind a namespace of its own), and the plan then goes to
# it as to a booted VM, with the snapshot's guest network (the record's).
# Sets boot_pid and net_json. 1: it could not be restored (fc-clone said
# why, and removed what it made): boot instead.
startup_resume() {
	net_json=$(jq -c '.network // null' -- "$root/startup/$st_key.json" 2>/dev/null) && [ -n "$net_json" ] || return 1
	need fc-clone
	if [ "$netmode" != none ] && [ "$netjan" = 0 ]; then
		start_netjanitor "$id"
		netjan=1
	fi
	fc-clone -q --snapshot "$st_tag" --name "$name" --id "$id" --die-with-parent &
	boot_pid=$!
	announce "$boot_pid"
	if ! owner_running; then
		kill -TERM "$boot_pid" 2>/dev/null
		wait "$boot_pid" 2>/dev/null
		boot_pid=""
		echo "$prog: startup snapshot '$st_tag' could not be restored: booting" >&2
		return 1
	fi
	touch -- "$root/startup/$st_key.json" 2>/dev/null
	return 0
}

# startup_take_run: the startup snapshot of a foreground run's booted VM,
# before its plan: the agent readies the plan's image (fc-run --prepare:
# the store mounted, podman's storage opened once, nothing run), then the
# VM is snapshotted and resumes. Uses cmd_run's variables.
startup_take_run() {
	local why
	if ! why=$(fc-run --prepare --vsock "$vsock" --timeout "$timeout" --owner-pid "$owner" \
		--console "$vmdir/console.log" -- "$plan" 2>&1); then
		why=${why##*$'\n'}
		echo "$prog: no startup snapshot taken: ${why#fc-run: }" >&2
		return 0
	fi
	startup_take "$id" "$net_json"
}

# startup_restore: this run as a clone of the startup snapshot $st_tag
# (with this run's name, volumes and a fresh id), printed like a cold
# start; exits. The snapshot's record in startup/ notes the use (gc).
# A snapshot that cannot be restored (fc-clone said why) costs only the
# speed: returns, and the run boots (taking no snapshot).
startup_restore() {
	local id; id=$(new_id)
	local given_name=$name
	[ -n "$name" ] || name=$id
	need fc-clone
	local -a from=(--snapshot "$st_tag")
	clone_prepare "$id" "$st_tag" "" "${volspecs[@]}"
	local rc=0
	clone_detach "$id" "$name" "${from[@]}" || rc=$?
	if [ "$rc" = 1 ]; then
		echo "$prog: startup snapshot '$st_tag' could not be restored: booting" >&2
		name=$given_name st_tag=""
		return 0
	fi
	[ "$rc" = 0 ] || exit 125
	touch -- "$root/startup/$st_key.json" 2>/dev/null
	echo "$id"
	exit 0
}

# wait_healthy ID CHECK SECONDS: until CHECK passes in the container (a
# command, run by sh; or an http(s) URL, fetched there with wget).
wait_healthy() {
	local id=$1 check=$2 end=$((SECONDS + $3))
	need fc-exec
	if [[ "$check" =~ ^https?:// ]]; then
		check="wget -q -T 5 -O /dev/null '${check//\'/}'"
	fi
	while [ "$SECONDS" -lt "$end" ]; do
		fc-exec -q --id "$id" --timeout 30 -- sh -c "$check" </dev/null >/dev/null 2>&1 && return 0
		kill -0 "$boot_pid" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}

# startup_take ID [NETWORK]: the startup snapshot of VM ID (a service that
# just passed its health check, or a run's VM before its plan, whose guest
# network NETWORK a restore's plan needs), and its record (startup/KEY.json:
# what gc checks). A snapshot that cannot be taken (a VMM that cannot
# snapshot, a full disk) only costs speed: said once, its record says why
# ("failed") and later runs of the key do not try again until 'fcvm gc'
# removes that record. One another run took first is as good.
startup_take() {
	local why="" f='{}'
	mkdir -p "$root/startup"
	if ! why=$(fc-snap create --vm "$1" --tag "$st_tag" 2>&1 >/dev/null); then
		[ -f "$root/snapshots/$st_tag/manifest.json" ] && return 0
		why=${why##*$'\n'} why=${why#fc-snap: }	# its last line: the error
		echo "$prog: no startup snapshot taken: $why" >&2
		f=$(jq -nc --arg w "${why:-fc-snap failed}" '{failed: $w}')
	fi
	jq -n --arg tag "$st_tag" --arg k "$st_kernel" --arg r "$st_rootfs" \
		--arg img "$disk" --arg name "$name" --argjson net "${2:-null}" --argjson f "$f" \
		'{tag: $tag, kernel: $k, rootfs: $r, image_disk: $img, first: $name, network: $net} + $f' |
		write_atomic "$root/startup/$st_key.json" || true
}

# --- host directory volumes (-v HOST:GUEST[:ro]; issue 12) ----------------
# vol_check SPEC: HOST (an existing directory, made absolute) and GUEST (an
# absolute path) into vol_host/vol_guest/vol_ro; a bad one ends fcvm (125)
# before anything is made.
VOL_PORT_BASE=5100
vol_check() {
	local spec=$1 g
	vol_ro=false
	case $spec in
	*:ro) vol_ro=true; spec=${spec%:ro} ;;
	*:rw) spec=${spec%:rw} ;;
	esac
	[[ "$spec" == *:* ]] || die "invalid -v '$1': want HOST:GUEST[:ro]"
	vol_guest=${spec##*:} vol_host=${spec%:*}
	[ -n "$vol_host" ] || die "invalid -v '$1': HOST is empty"
	[ -d "$vol_host" ] || die "invalid -v '$1': '$vol_host' is not an existing directory"
	vol_host=$(realpath -e -- "$vol_host") || die "invalid -v '$1': cannot resolve '$vol_host'"
	g=$vol_guest
	[[ "$g" == /?* && "$g" != *,* && "/$g/" != */../* && "/$g/" != */./* ]] ||
		die "invalid -v '$1': GUEST must be an absolute path other than / (no ',', '.' or '..')"
	[[ "$g" != *[[:cntrl:]]* ]] || die "invalid -v '$1': GUEST has a control character"
}

# 'fcvm _volkeeper ID UDS STATUS PORT RO HOST [PORT RO HOST]...' (internal):
# one 'fc-volume serve' per volume on the VM's hybrid-vsock listener
# UDS_PORT, each waited for; then "ready" (or "error: WHY") into the file
# STATUS (written whole, then renamed). It lives in its
# own session as long as the VM has a live record (so a detached VM keeps
# its volumes, and a SIGKILL of fcvm, which takes fc-boot with it, does
# not leave servers behind); then, or on SIGTERM, it stops the servers and
# removes their sockets. The servers die with it (setpriv --pdeathsig).
cmd_volkeeper() {
	local id=$1 uds=$2 status=$3 port ro host sock line i
	shift 3
	valid_name "$id" || exit 2
	local -a pids=() socks=()
	# A clone's keeper starts first: its record and run directory come
	# with fc-clone (60 s at most, as fc-clone's own agent wait). A file
	# test, not a tool per poll (seconds each under load).
	for ((i = 0; i < 600; i++)); do
		[ -e "$root/state/$id.json" ] && [ -d "${uds%/*}" ] && break
		sleep 0.1
	done
	vol_stop_all() {
		[ ${#pids[@]} -gt 0 ] || return 0
		kill -TERM "${pids[@]}" 2>/dev/null
		for ((i = 0; i < 100; i++)); do
			kill -0 "${pids[@]}" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "${pids[@]}" 2>/dev/null
		wait "${pids[@]}" 2>/dev/null
		rm -f -- "${socks[@]}"
		rmdir -- "${uds%/*}" 2>/dev/null	# run/ID, once fc-boot is gone too
		pids=()
	}
	vol_say() { echo "$1" > "$status.tmp" && mv -f -- "$status.tmp" "$status"; }
	vk_tdir=$(mktemp -d "${TMPDIR:-/tmp}/fcvm-vol.XXXXXX") || { vol_say "error: mktemp failed"; exit 1; }
	local tdir=$vk_tdir
	trap 'rm -rf -- "$vk_tdir"' EXIT
	trap 'vol_stop_all; exit 0' TERM INT HUP
	while [ $# -ge 3 ]; do
		port=$1 ro=$2 host=$3
		shift 3
		sock="${uds}_$port"
		local -a ropt=()
		[ "$ro" = true ] && ropt=(--ro)
		# the ready line through a fifo of our own
		mkfifo "$tdir/ready" || { vol_say "error: cannot make a fifo in '$tdir'"; vol_stop_all; exit 1; }
		setpriv --pdeathsig TERM -- fc-volume serve -q --dir "$host" "${ropt[@]}" \
			--listen "$sock" --ready-fd 4 4>"$tdir/ready" &
		pids+=($!) socks+=("$sock")
		line=""
		read -r -t 30 line < "$tdir/ready"
		rm -f -- "$tdir/ready"
		if [[ "$line" != ready* ]]; then
			vol_say "error: volume '$host': fc-volume serve did not get ready within 30 s"
			vol_stop_all
			exit 1
		fi
	done
	vol_say ready
	while field_of "$id" id >/dev/null; do
		sleep 1 &
		wait $!
	done
	vol_stop_all
}

# start_janitor ID: the janitor as a coprocess. Bash keeps a coprocess's
# pipe ends close-on-exec, so no tool we start holds the write end: the
# janitor sees end of file exactly when fcvm is gone.
jan_fd=""
start_janitor() {
	coproc JANITOR { exec setsid "$self" _janitor "$1" >/dev/null 2>&1; }
	jan_fd=${JANITOR[1]}
}

# announce PID: the janitor waits for PID (with its start time) too.
announce() {
	local s
	[ -n "$jan_fd" ] || return 0
	s=$(proc_start "$1") || return 0
	echo "pid $1 $s" >&"$jan_fd" 2>/dev/null
}

# watch_space: in the background while a container runs, say at once when
# the data root fills up (the guest's writes to its disk then fail). Ends
# with fcvm; holds no janitor pipe.
watch_pid=""
watch_space() {
	(
		[ -n "$jan_fd" ] && eval "exec $jan_fd>&-"
		while kill -0 $$ 2>/dev/null; do
			if root_full; then
				echo "$prog: $(full_msg "the VM's writes to its disk fail")" >&2
				break
			fi
			sleep 2
		done
	) &
	watch_pid=$!
}

# write_atomic PATH: stdin into PATH (temporary file beside it, then mv),
# nothing left on failure; a full data root is named as the cause.
write_atomic() {
	local tmp="$1.tmp.$$"
	if cat > "$tmp" && mv -f -- "$tmp" "$1"; then
		return 0
	fi
	rm -f -- "$tmp"
	root_full && { echo "$prog: $(full_msg "writing '${1#"$root"/}'")" >&2; return 1; }
	echo "$prog: cannot write '$1'" >&2
	return 1
}

cmd_run() {
	local name="" cpus=2 memory=1024 rm=0 detach=0 timeout=180 netmode="" hostlo=0 stop_timeout=""
	local -a env=() publish=()
	# podman's everyday flags, passed to the guest's podman through the plan
	local interactive=0 tty=0 workdir="" user="" entrypoint="" hostname="" have_ep=0
	local health="" nosnap=0
	local -a labels=() envfiles=() volspecs=()
	while [ $# -gt 0 ]; do
		case "$1" in
		-i|--interactive) interactive=1; shift ;;
		-t|--tty) tty=1; shift ;;
		-it|-ti) interactive=1; tty=1; shift ;;
		-w|--workdir) [ $# -ge 2 ] || usage_die "$1 needs a directory"; workdir=$2; shift 2 ;;
		--workdir=*) workdir=${1#*=}; shift ;;
		-u|--user) [ $# -ge 2 ] || usage_die "$1 needs a user"; user=$2; shift 2 ;;
		--user=*) user=${1#*=}; shift ;;
		--entrypoint) [ $# -ge 2 ] || usage_die "--entrypoint needs a command"; entrypoint=$2; have_ep=1; shift 2 ;;
		--entrypoint=*) entrypoint=${1#*=}; have_ep=1; shift ;;
		--env-file) [ $# -ge 2 ] || usage_die "--env-file needs a file"; envfiles+=("$2"); shift 2 ;;
		--env-file=*) envfiles+=("${1#*=}"); shift ;;
		-l|--label) [ $# -ge 2 ] || usage_die "$1 needs KEY[=VALUE]"; labels+=("$2"); shift 2 ;;
		--label=*) labels+=("${1#*=}"); shift ;;
		--hostname) [ $# -ge 2 ] || usage_die "--hostname needs a name"; hostname=$2; shift 2 ;;
		--hostname=*) hostname=${1#*=}; shift ;;
		--name) [ $# -ge 2 ] || usage_die "--name needs a value"; name=$2; shift 2 ;;
		--name=*) name=${1#*=}; shift ;;
		-e|--env) [ $# -ge 2 ] || usage_die "$1 needs K=V"; env+=("$2"); shift 2 ;;
		--env=*) env+=("${1#*=}"); shift ;;
		--cpus) [ $# -ge 2 ] || usage_die "--cpus needs a value"; cpus=$2; shift 2 ;;
		--cpus=*) cpus=${1#*=}; shift ;;
		--memory|-m) [ $# -ge 2 ] || usage_die "$1 needs a value"; memory=$2; shift 2 ;;
		--memory=*) memory=${1#*=}; shift ;;
		--timeout) [ $# -ge 2 ] || usage_die "--timeout needs seconds"; timeout=$2; shift 2 ;;
		--timeout=*) timeout=${1#*=}; shift ;;
		--stop-timeout) [ $# -ge 2 ] || usage_die "--stop-timeout needs seconds"; stop_timeout=$2; shift 2 ;;
		--stop-timeout=*) stop_timeout=${1#*=}; shift ;;
		--network|--net) [ $# -ge 2 ] || usage_die "$1 needs bridged, rootless or none"; netmode=$2; shift 2 ;;
		--network=*|--net=*) netmode=${1#*=}; shift ;;
		-p|--publish) [ $# -ge 2 ] || usage_die "$1 needs [HOSTIP:][HOSTPORT:]PORT[/PROTO]"; publish+=("$2"); shift 2 ;;
		--publish=*) publish+=("${1#*=}"); shift ;;
		--host-loopback) hostlo=1; shift ;;
		-v|--volume|--map) [ $# -ge 2 ] || usage_die "$1 needs HOST:GUEST[:ro]"; volspecs+=("$2"); shift 2 ;;
		--volume=*|--map=*) volspecs+=("${1#*=}"); shift ;;
		--health-check) [ $# -ge 2 ] || usage_die "--health-check needs a command or a URL"; health=$2; shift 2 ;;
		--health-check=*) health=${1#*=}; shift ;;
		--no-snapshot) nosnap=1; shift ;;
		--rm) rm=1; shift ;;
		-d|--detach) detach=1; shift ;;
		-h|--help) usage; exit 0 ;;
		--) shift; break ;;
		-*) usage_die "unknown option '$1'" ;;
		*) break ;;
		esac
	done
	[ $# -ge 1 ] || usage_die "podman run needs an IMAGE"
	local image=$1; shift
	[ -n "$image" ] || usage_die "podman run needs an IMAGE (got '')"
	local e f line
	# --env-file: KEY=VALUE lines (blank lines and '#' comments skipped; a
	# bare KEY takes the value from our environment, as podman does).
	for f in "${envfiles[@]}"; do
		[ -f "$f" ] && [ -r "$f" ] || usage_die "--env-file '$f': not a readable file"
		while IFS= read -r line || [ -n "$line" ]; do
			line=${line%$'\r'}
			[[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
			if [[ "$line" != *=* ]]; then
				[[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || usage_die "--env-file '$f': invalid line '$line'"
				[ -n "${!line+x}" ] || continue
				line="$line=${!line}"
			fi
			env+=("$line")
		done < "$f"
	done
	[ -z "$workdir" ] || [[ "$workdir" == /* ]] || usage_die "invalid --workdir '$workdir': must be an absolute path"
	[ -z "$user" ] || [[ "$user" =~ ^[A-Za-z0-9_.:@$-]+$ && "$user" != -* ]] || usage_die "invalid --user '$user'"
	if [ -n "$hostname" ] && ! valid_name "$hostname"; then
		usage_die "invalid --hostname '$hostname': use 1-63 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"
	fi
	for e in "${labels[@]}"; do
		[ -n "$e" ] && [[ "$e" != =* ]] || usage_die "invalid --label '$e': want KEY[=VALUE]"
	done
	for e in "${env[@]}"; do
		[[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage_die "invalid -e '$e': want NAME=VALUE"
	done
	if [ -n "$health" ]; then
		[ "$detach" = 1 ] || usage_die "--health-check is for a detached service (-d)"
		[[ "$health" != *$'\n'* ]] || usage_die "invalid --health-check: one line"
	fi
	num "$cpus" 1 "$CPUS_MAX" --cpus
	num "$memory" "$MEMORY_MIN" "$MEMORY_MAX" "--memory (MiB)"
	num "$timeout" 1 "$TIMEOUT_MAX" "--timeout (seconds)"
	[ -z "$stop_timeout" ] || num "$stop_timeout" 0 86400 "--stop-timeout (seconds)"
	cpus=$((10#$cpus)) memory=$((10#$memory)) timeout=$((10#$timeout))
	if [ -n "$name" ] && ! valid_name "$name"; then
		usage_die "invalid --name '$name': use 1-63 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"
	fi
	# The network: bridged as root, rootless otherwise (podman's defaults).
	if [ -z "$netmode" ]; then
		if [ "$(id -u)" = 0 ]; then netmode=bridged; else netmode=rootless; fi
	fi
	case $netmode in
	bridged|rootless) ;;
	none) [ ${#publish[@]} -eq 0 ] || usage_die "-p needs a network: not with --network none"
	      [ "$hostlo" = 0 ] || usage_die "--host-loopback needs a network: not with --network none" ;;
	*) usage_die "invalid --network '$netmode': want bridged, rootless or none" ;;
	esac
	local p
	for p in "${publish[@]}"; do
		# The shape here; fc-net checks the rest (ranges, ports in use).
		[[ "$p" =~ ^(([0-9.]*):)?(([0-9]+(-[0-9]+)?)?:)?[0-9]+(-[0-9]+)?(/(tcp|udp))?$ ]] ||
			usage_die "invalid -p '$p': want [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp] (ranges A-B)"
	done
	# -v: checked now; the plan's "volumes", the keeper's arguments and
	# the record's (config.volumes: what a snapshot's clone serves again)
	local vol_host vol_guest vol_ro vols_json vspec_json='[]' vi=0
	local -a volargs=() vguests=()
	for p in "${volspecs[@]}"; do
		vol_check "$p"
		for e in "${vguests[@]}"; do
			[ "$e" != "$vol_guest" ] || die "invalid -v '$p': '$vol_guest' is mapped twice"
		done
		vguests+=("$vol_guest")
		[ $vi -lt 16 ] || die "too many -v: at most 16"
		volargs+=("$((VOL_PORT_BASE + vi))" "$vol_ro" "$vol_host")
		vspec_json=$(jq -c --argjson port "$((VOL_PORT_BASE + vi))" --arg g "$vol_guest" \
			--arg h "$vol_host" --argjson ro "$vol_ro" \
			'. + [{port: $port, guest: $g, host: $h, read_only: $ro}]' <<<"$vspec_json") ||
			die "cannot encode -v '$p'"
		vi=$((vi + 1))
	done
	# the guest's part: the host directory is none of its business
	vols_json=$(jq -c 'map(del(.host))' <<<"$vspec_json") || die "cannot encode the volumes"
	need fc-disk; need fc-boot; need fc-run; need fc-state; need jq
	[ "$netmode" = none ] || need fc-net
	[ $vi -eq 0 ] || { need fc-volume; need setpriv; }

	# The data root (fc-state refuses an unprepared one), the name, space.
	local recs
	recs=$(fc-state ls --json) || exit 125
	if [ -n "$name" ] && jq -e --arg n "$name" 'any(.[]; .name == $n or .id == $n)' <<<"$recs" >/dev/null; then
		die "name '$name' is already used by a running VM: 'fcvm stop $name' or choose another --name"
	fi
	root_full && die "$(full_msg)"

	# The image store disk (the image unpacked: nothing to load in the
	# guest) when fc-disk has one, else the archive (it said why).
	local img_json disk ref store
	img_json=$(fc-disk image --json -- "$image") || exit 125
	disk=$(jq -r '.store // .path' <<<"$img_json")
	store=$(jq -r 'if .store then "true" else "false" end' <<<"$img_json")
	ref=$(jq -r '.ref // .image_id // empty' <<<"$img_json")
	[ -n "$disk" ] && [ -n "$ref" ] || die "fc-disk gave no disk or image id for '$image'"

	# A service run before with the same VM and configuration restores the
	# snapshot its first run took once healthy, instead of booting.
	# A foreground run restores the snapshot of a VM booted before with
	# the same image, taken before its plan (startup_key_run: see there
	# for what it needs).
	local st_key="" st_tag="" st_kernel="" st_rootfs="" st_run=0
	[ "${FCVM_STARTUP_SNAPSHOTS:-1}" = 0 ] && nosnap=1
	if [ "$nosnap" = 0 ] && [ -n "$health" ] && [ "$rm" = 0 ] && [ -z "$hostname" ]; then
		st_run=0
	elif [ "$nosnap" = 0 ] && [ "$detach" = 0 ] && [ "$store" = true ] &&
		[ "$netmode" != rootless ] && [ ${#publish[@]} -eq 0 ] && [ "$hostlo" = 0 ]; then
		st_run=1
	else
		nosnap=1
	fi
	if [ "$nosnap" = 0 ]; then
		# both directories are named by their inputs
		st_kernel=$(readlink -f -- "$root/kernels/default") &&
			st_rootfs=$(readlink -f -- "$root/rootfs/default") || die "cannot compute the startup snapshot's key"
		if [ "$st_run" = 1 ]; then
			st_key=$(startup_key_run)
		else
			st_key=$(startup_key "$@")
		fi || die "cannot compute the startup snapshot's key"
		st_tag="startup-$st_key"
		if [ -f "$root/snapshots/$st_tag/manifest.json" ]; then
			[ "$st_run" = 0 ] && startup_restore
		elif jq -e .failed -- "$root/startup/$st_key.json" >/dev/null 2>&1; then
			st_tag="" st_run=0	# this key's snapshot failed: gc clears that
		fi
	fi

	local id; id=$(new_id)
	[ -n "$name" ] || name=$id
	local vmdir="$root/vm-disks/$id" plan="$root/vm-disks/$id/plan.json"
	local boot_pid="" run_pid="" running=0 rc net_up=0 volk_pid="" netjan=0 restored=0

	# From here on something may exist: every way out goes through cleanup.
	cleanup_vm() {
		[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
		[ -n "$run_pid" ] && kill -TERM "$run_pid" 2>/dev/null
		if [ -n "$boot_pid" ]; then
			kill -TERM "$boot_pid" 2>/dev/null
			until_ended "$boot_pid"
		fi
		[ -n "$run_pid" ] && until_ended "$run_pid"
		run_pid="" boot_pid=""
		vols_down
		net_down
		if [ "$rm" = 1 ] || [ "$running" = 0 ]; then
			fc-disk rm --vm "$id" >/dev/null 2>&1
		fi
	}
	# vols_down: the volume servers (their keeper stops them; ours to wait for).
	vols_down() {
		[ -n "$volk_pid" ] || return 0
		kill -TERM "$volk_pid" 2>/dev/null
		until_ended "$volk_pid"
		volk_pid=""
	}
	# net_down: what fc-net up made for this VM (the VM is gone by now).
	net_down() {
		[ "$net_up" = 1 ] || return 0
		fc-net down --vm "$id" >/dev/null 2>&1 ||
			echo "$prog: fc-net down --vm $id failed: 'fcvm gc' removes it later" >&2
		net_up=0
	}
	# fail MSG: clean up, then exit 125 (MSG may be empty: the tool said why).
	fail() {
		cleanup_vm
		[ -n "${1:-}" ] && echo "$prog: $1" >&2
		exit 125
	}
	trap 'cleanup_vm; exit 130' INT
	trap 'cleanup_vm; exit 143' TERM
	trap 'cleanup_vm; exit 129' HUP
	[ "$rm" = 1 ] && start_janitor "$id"
	[ -n "$jan_fd" ] && [ "$detach" = 1 ] && echo detached >&"$jan_fd"

	# The plan but for the guest's network (from fc-net up, or a restored
	# snapshot's record). The image disk (store or archive) is the second
	# drive: /dev/vdb in the guest. The guest runs the image by its id
	# ('ref'): names in archives may be bare tags.
	local env_json plan_json
	env_json=$(jq -nc '$ARGS.positional' --args -- "${env[@]}") || fail "cannot encode -e values"
	# -i/-t, -w, -u, --entrypoint (a JSON array as podman takes it, or one
	# command), -l, --hostname; -i means nothing for a detached run.
	local extra_json labels_json ep_json='null'
	labels_json=$(jq -nc '$ARGS.positional' --args -- "${labels[@]}") || fail "cannot encode --label values"
	if [ "$have_ep" = 1 ]; then
		if [[ "$entrypoint" == \[* ]]; then
			ep_json=$(jq -ce 'if type == "array" and all(.[]; type == "string") then . else error end' <<<"$entrypoint" 2>/dev/null) ||
				fail "invalid --entrypoint '$entrypoint': a JSON array of strings or one command"
		else
			ep_json=$(jq -nc --arg e "$entrypoint" 'if $e == "" then [] else [$e] end')
		fi
	fi
	[ "$detach" = 1 ] && interactive=0
	extra_json=$(jq -nc --argjson i "$interactive" --argjson t "$tty" --arg w "$workdir" --arg u "$user" \
		--arg h "$hostname" --argjson l "$labels_json" --argjson ep "$ep_json" \
		'(if $i == 1 then {stdin: true} else {} end) + (if $t == 1 then {tty: true} else {} end)
		 + (if $w != "" then {workdir: $w} else {} end) + (if $u != "" then {user: $u} else {} end)
		 + (if $h != "" then {hostname: $h} else {} end) + (if ($l | length) > 0 then {labels: $l} else {} end)
		 + (if $ep != null then {entrypoint: $ep} else {} end)') || fail "cannot encode the run options"
	plan_json=$(jq -nc --arg ref "$ref" --arg cname "$name" --argjson env "$env_json" \
		--argjson store "$store" \
		'{version: 1, image: ({disk: "/dev/vdb", ref: $ref} + (if $store then {store: true} else {} end)),
		  container_name: $cname,
		  env: $env, poweroff: true} + (if $ARGS.positional | length > 0 then {cmd: $ARGS.positional} else {} end)
		  + $extra + (if ($vols | length) > 0 then {volumes: $vols} else {} end)' \
		--argjson extra "$extra_json" --argjson vols "$vols_json" --args -- "$@") || fail "cannot encode the plan"
	local net_json="null" netfile="$vmdir/net.json"
	local -a netboot=()

	# (a clone's files go with it: only a --rm run, which keeps none, is one)
	if [ "$st_run" = 1 ] && [ "$rm" = 1 ] && [ -f "$root/snapshots/$st_tag/manifest.json" ] &&
		startup_resume; then
		restored=1
	else
		if ! fc-disk rootfs --vm "$id" >/dev/null; then
			fail ""
		fi
		# The network before the VM (its TAP must exist when the VMM
		# starts), with the VM's id; owned by us - and, once we are gone
		# (-d), by the VM's record (fc-net(1)). Its result goes to fc-boot
		# (record) and, as the guest's part, into the plan.
		if [ "$netmode" != none ]; then
			local -a netargs=(--vm "$id" --mode "$netmode" --owner-pid "$$")
			for p in "${publish[@]}"; do netargs+=(-p "$p"); done
			[ "$hostlo" = 1 ] && netargs+=(--host-loopback)
			[ -n "${FCVM_RESOLV_CONF:-}" ] && netargs+=(--resolv-conf "$FCVM_RESOLV_CONF")
			local net
			# Started first: a SIGKILL of fcvm from here on leaves nothing.
			[ "$netjan" = 1 ] || start_netjanitor "$id"
			net_up=1	# fc-net removes what a failed 'up' made; down is harmless
			net=$(fc-net up -q "${netargs[@]}") || fail ""
			printf '%s\n' "$net" | write_atomic "$netfile" || fail ""
			net_json=$(jq -c '{guest_ip, prefix, gateway, dns: (.dns // []), mac}' <<<"$net") ||
				fail "fc-net gave no usable result"
			netboot=(--tap "$(jq -r .tap <<<"$net")" --mac "$(jq -r .mac <<<"$net")" --network "$netfile")
			if [ "$netmode" = rootless ]; then
				netboot+=(--netns-holder "$(jq -r '"\(.netns.pid):\(.netns.pid_start)"' <<<"$net")")
			fi
		fi
	fi
	# vm-disks/ID is there (fc-disk's, or the clone's own): the janitor's
	# note and the plan.
	if [ -n "$jan_fd" ]; then
		printf '%s %s\n' "$JANITOR_PID" "$(proc_start "$JANITOR_PID")" |
			write_atomic "$vmdir/.rm" || fail ""
	fi
	jq -c --argjson net "$net_json" '. + (if $net then {network: $net} else {} end)' <<<"$plan_json" |
		write_atomic "$plan" || fail ""

	local -a boot=(fc-boot --name "$name" --id "$id" --cpus "$cpus" --memory "$memory"
		--rootfs "$vmdir/rootfs.ext4" --drive "$disk:ro" --boot-args "quiet" -q "${netboot[@]}")
	if [ $vi -gt 0 ]; then
		write_atomic "$vmdir/volumes.json" <<<"$vspec_json" || fail ""
		boot+=(--volumes "$vmdir/volumes.json")
	fi
	if [ "$restored" = 1 ]; then
		:	# fc-clone runs it
	elif [ "$detach" = 1 ]; then
		# The VM lives on in a detached fc-boot, which 'fcvm stop' ends;
		# it returns once the VM runs, or fails saying why.
		boot_pid=$("${boot[@]}" --detach) || {
			boot_pid=""
			root_full && fail "$(full_msg)"
			fail ""
		}
		[[ "$boot_pid" =~ ^[0-9]+$ ]] || fail "fc-boot --detach printed no pid"
		announce "$boot_pid"
	else
		# Foreground: the VM dies with us, even on SIGKILL.
		"${boot[@]}" --die-with-parent &
		boot_pid=$!
		announce "$boot_pid"
		# Until the VM runs, or at once when fc-boot fails (it says why).
		if ! owner_running; then
			kill -0 "$boot_pid" 2>/dev/null || boot_pid=""
			root_full && fail "$(full_msg)"
			fail ""
		fi
	fi
	running=1

	local vsock="$root/run/$id/vsock.sock" owner
	local start; start=$(field_of "$id" pid_start) || start=""
	owner=$boot_pid${start:+:$start}
	local -a run=(fc-run --vsock "$vsock" --timeout "$timeout" --owner-pid "$owner"
		--console "$vmdir/console.log" ${stop_timeout:+--stop-timeout "$stop_timeout"})
	[ "$st_run" = 1 ] && [ "$restored" = 0 ] && startup_take_run
	if [ $vi -gt 0 ]; then
		# The volume servers before the plan: the guest dials them at once.
		local vstat="$vmdir/volumes.status" vline
		( [ -n "$jan_fd" ] && eval "exec $jan_fd>&-"
		  exec setsid "$self" _volkeeper "$id" "$vsock" "$vstat" "${volargs[@]}" \
			</dev/null >/dev/null 2>>"$vmdir/volumes.log" ) &
		volk_pid=$!
		announce "$volk_pid"
		# each server is given 30 s; the keeper says, or dies
		vline=$(keeper_status "$vstat" "$volk_pid" $((600 * vi)))
		if [ "$vline" != ready ]; then
			[ -s "$vmdir/volumes.log" ] && tail -n 3 "$vmdir/volumes.log" >&2
			vline=${vline#error: }
			fail "${vline:-the volume servers did not start}"
		fi
	fi
	if [ "$detach" = 1 ]; then
		local fifo="$vmdir/started"
		mkfifo "$fifo" || fail "cannot make '$fifo'"
		# The fifo first: if a later redirection fails (a full disk) the
		# child still opens it and exits, so our open below cannot block.
		setsid "${run[@]}" --started-fd 3 -- "$plan" \
			3>"$fifo" >"$vmdir/stdout.log" 2>"$vmdir/stderr.log" </dev/null &
		run_pid=$!
		announce "$run_pid"
		# Recorded for 'fcvm stop' and people: the detached fc-run.
		local run_start; run_start=$(proc_start "$run_pid")
		printf '%s %s\n' "$run_pid" "$run_start" | write_atomic "$vmdir/fc-run.pid"
		( [ -n "$jan_fd" ] && eval "exec $jan_fd>&-"
		  exec setsid "$self" _runwatch "$id" "$run_pid" "$run_start" "$rm" </dev/null >/dev/null 2>&1 ) &
		local started=""
		read -r -t "$timeout" started < "$fifo"
		rm -f "$fifo"
		if [ "${started:-}" != started ]; then
			cat "$vmdir/stderr.log" >&2
			# cleanup_vm stops the VM we started: nothing runs in it.
			[ "$rm" = 1 ] && fail "container did not start"
			fail "container did not start (see 'fcvm logs $id')"
		fi
		if [ -n "$health" ]; then
			wait_healthy "$id" "$health" "$timeout" ||
				fail "the service did not pass --health-check within ${timeout}s (see 'fcvm logs $id')"
			[ -z "$st_tag" ] || startup_take "$id"
		fi
		trap - INT TERM HUP
		# From here the VM is the user's ('fcvm stop'), not the janitor's.
		[ -n "$jan_fd" ] && echo handed-over >&"$jan_fd"
		echo "$id"
		exit 0
	fi
	# In the background with 'wait', so a signal runs our trap at once
	# (bash defers traps while a foreground child runs).
	local -a runio=()
	[ "$interactive" = 1 ] && runio+=(-i)
	[ "$tty" = 1 ] && runio+=(-t)
	# fc-run says on fd 4 whether the agent reported the container's end
	# (then the guest powers itself off); the file is ours, in the VM dir.
	local exitf="$vmdir/run.exit"
	if [ "$interactive" = 1 ]; then
		# (an asynchronous command's stdin is /dev/null unless said otherwise)
		"${run[@]}" "${runio[@]}" --die-with-parent --exit-fd 4 -- "$plan" 0<&0 4>"$exitf" &
	else
		"${run[@]}" "${runio[@]}" --die-with-parent --exit-fd 4 -- "$plan" 4>"$exitf" &
	fi
	run_pid=$!
	announce "$run_pid"
	watch_space
	wait "$run_pid"
	rc=$?
	run_pid=""
	kill "$watch_pid" 2>/dev/null
	wait "$watch_pid" 2>/dev/null
	watch_pid=""
	# The container is gone (and with it the guest's mounts): its volumes go.
	vols_down
	# After the container's end the agent powers the guest off: give it a
	# moment. Without one (fc-run killed or failed) nothing will: stop now.
	local i
	if grep -q '^exit ' "$exitf" 2>/dev/null; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$boot_pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$exitf"
	kill -TERM "$boot_pid" 2>/dev/null
	wait "$boot_pid" 2>/dev/null
	boot_pid=""
	net_down
	trap - INT TERM HUP
	[ "$rm" = 1 ] && fc-disk rm --vm "$id" >/dev/null 2>&1
	exit "$rc"
}

cmd_ls() {
	local -a args=()
	while [ $# -gt 0 ]; do
		case "$1" in
		-a|--all) args+=(-a) ;;
		--json) args+=(--json) ;;
		*) usage_die "ls: unknown argument '$1'" ;;
		esac
		shift
	done
	need fc-state
	# The table gains PORTS: the published addresses of network.ports, and
	# FROM: what a clone or server runs from (its snapshot's tag, and for a
	# clone of a memory server "TAG@SERVE_PID", the server's PID column).
	if [[ " ${args[*]} " != *" --json "* ]]; then
		local table recs
		table=$(fc-state ls "${args[@]}") || exit 125
		[ -n "$table" ] || return 0
		recs=$(fc-state ls "${args[@]}" --json) || exit 125
		local -A ports=() from=()
		local id pl fr
		while IFS=$'\t' read -r id pl fr; do
			[ -n "$id" ] || continue
			[ "$pl" = - ] || ports[$id]=$pl
			[ "$fr" = - ] || from[$id]=$fr
		done < <(jq -r '.[] | [.id,
			(if .network.ports then .network.ports | map("\(.host_ip):\(.host_port)->\(.guest_port)/\(.proto)") | join(",") else "-" end),
			(if .snapshot then .snapshot + (if .serve_pid then "@\(.serve_pid)" else "" end) else "-" end)] | @tsv' <<<"$recs")
		local line first=1 w wp=5
		w=$(awk 'length($0) > w { w = length($0) } END { print w + 0 }' <<<"$table")
		for pl in "${ports[@]}"; do [ ${#pl} -le "$wp" ] || wp=${#pl}; done
		while IFS= read -r line; do
			if [ "$first" = 1 ]; then
				printf '%-*s  %-*s  %s\n' "$w" "$line" "$wp" PORTS FROM
				first=0
			else
				id=${line%% *}
				printf '%-*s  %-*s  %s\n' "$w" "$line" "$wp" "${ports[$id]:-}" "${from[$id]:-}"
			fi
		done <<<"$table"
		return 0
	fi
	fc-state ls "${args[@]}" || exit 125
}

# find_stopped NAME: the id of the stopped VM whose id is NAME, or whose plan
# named its container NAME (only if exactly one did).
find_stopped() {
	local d ids=()
	if valid_name "$1" && [ -d "$root/vm-disks/$1" ] && [ ! -L "$root/vm-disks/$1" ]; then
		echo "$1"
		return 0
	fi
	for d in "$root"/vm-disks/*/plan.json; do
		[ -f "$d" ] || continue
		[ "$(jq -r '.container_name // empty' "$d" 2>/dev/null)" = "$1" ] || continue
		d=${d%/plan.json}
		ids+=("${d##*/}")
	done
	case ${#ids[@]} in
	0) return 1 ;;
	1) echo "${ids[0]}" ;;
	*) die "several stopped VMs were named '$1' (${ids[*]}): give the id" ;;
	esac
}

cmd_stop() {
	[ $# -eq 1 ] || usage_die "stop needs a NAME"
	need fc-state
	local pid start i id
	pid=$(field_of "$1" pid) || die "no running VM named '$1' (see 'fcvm ls')"
	id=$(field_of "$1" id) || id=""
	start=$(field_of "$1" pid_start) || start=""
	[[ "$pid" =~ ^[0-9]+$ ]] || die "VM '$1' has no usable pid"
	kill -TERM "$pid" 2>/dev/null || die "cannot signal pid $pid"
	for ((i = 0; i < 100; i++)); do
		alive "$pid" "$start" || break
		sleep 0.1
	done
	alive "$pid" "$start" && kill -KILL "$pid" 2>/dev/null
	# A detached VM's network outlives fcvm run: it goes with the VM.
	if [ -n "$id" ] && command -v fc-net >/dev/null; then
		for ((i = 0; i < 50; i++)); do
			alive "$pid" "$start" || break
			sleep 0.1
		done
		fc-net down --vm "$id" >/dev/null 2>&1 ||
			echo "$prog: could not remove the network of '$1': 'fcvm gc' retries" >&2
	fi
	return 0
}

# vm_dir NAME: the disk directory of a live VM (by name or id), or of a
# stopped one (by id, or by the name it ran under).
vm_dir() {
	local d id
	if d=$(field_of "$1" disk_dir); then
		echo "$d"
	elif id=$(find_stopped "$1"); then
		echo "$root/vm-disks/$id"
	else
		die "no VM named '$1' (see 'fcvm ls -a')"
	fi
}

cmd_logs() {
	[ $# -eq 1 ] || usage_die "logs needs a NAME"
	need fc-state
	local d; d=$(vm_dir "$1") || exit 125
	[ -f "$d/stdout.log" ] && cat "$d/stdout.log"
	[ -f "$d/stderr.log" ] && cat "$d/stderr.log" >&2
	[ -f "$d/console.log" ] && sed 's/^/console: /' "$d/console.log" >&2
	return 0
}

cmd_rm() {
	[ $# -eq 1 ] || usage_die "rm needs a NAME"
	need fc-state; need fc-disk
	if field_of "$1" id >/dev/null; then
		die "VM '$1' is running: 'fcvm stop $1' first"
	fi
	local id; id=$(find_stopped "$1") || die "no stopped VM named '$1' (see 'fcvm ls -a')"
	fc-disk rm --vm "$id" || exit 125
}

# gc: fc-state gc, then the disk directories of --rm runs whose janitor is
# gone (killed itself) and whose VM has no live owner.
# fcvm exec [-i] [-t] [--vm] [-e K=V]... [-w DIR] [-u USER] (NAME | --pid PID) [--] CMD [ARG...]
cmd_exec() {
	local -a opts=() target=()
	while [ $# -gt 0 ]; do
		case "$1" in
		-i|--interactive|-t|--tty|--vm) opts+=("$1"); shift ;;
		-it|-ti) opts+=(-i -t); shift ;;
		-e|--env|-w|--workdir|-u|--user|--timeout)
			[ $# -ge 2 ] || usage_die "exec: $1 needs a value"; opts+=("$1" "$2"); shift 2 ;;
		--env=*|--workdir=*|--user=*|--timeout=*) opts+=("$1"); shift ;;
		--pid|--id|--name)
			[ $# -ge 2 ] || usage_die "exec: $1 needs a value"; target=("$1" "$2"); shift 2 ;;
		-h|--help) fc-exec --help; exit 0 ;;
		--) shift; break ;;
		-*) usage_die "exec: unknown option '$1'" ;;
		*) break ;;
		esac
	done
	if [ ${#target[@]} -eq 0 ]; then
		[ $# -ge 1 ] || usage_die "exec needs a VM name"
		target=(--name "$1"); shift
		[ "${1:-}" = -- ] && shift
	fi
	[ $# -ge 1 ] || usage_die "exec needs a command"
	need fc-exec
	exec fc-exec "${target[@]}" "${opts[@]}" -- "$@"
}

cmd_gc() {
	local dry=0 json=0
	local -a args=()
	while [ $# -gt 0 ]; do
		case "$1" in
		-n|--dry-run) dry=1; args+=(-n) ;;
		--json) json=1; args+=(--json) ;;
		*) usage_die "gc: unknown argument '$1'" ;;
		esac
		shift
	done
	need fc-state; need fc-disk; need jq
	local out; out=$(fc-state gc "${args[@]}") || { [ -n "$out" ] && printf '%s\n' "$out"; exit 125; }
	# Networks of dead owners (after a kill -9 of fcvm or of a VM).
	local netout=""
	if command -v fc-net >/dev/null; then
		netout=$(fc-net gc "${args[@]}") || { [ -n "$netout" ] && printf '%s\n' "$netout"; exit 125; }
	fi
	local m d id jp js extra=()
	for m in "$root"/vm-disks/*/.rm; do
		[ -f "$m" ] || continue
		d=${m%/.rm}; id=${d##*/}
		valid_name "$id" || continue
		read -r jp js < "$m" 2>/dev/null
		[[ "${jp:-}" =~ ^[0-9]+$ ]] && alive "$jp" "${js:-}" && continue
		field_of "$id" id >/dev/null && continue
		if [ "$dry" = 0 ]; then
			fc-disk rm --vm "$id" >/dev/null || continue
		fi
		extra+=("$d")
	done
	# Startup snapshots no run can use any more (their kernel, rootfs or
	# image is gone: a new one has a new key), or unused for
	# FCVM_STARTUP_MAX_DAYS days (7); fc-snap rm refuses while clones run.
	local sj tag k r img why days=${FCVM_STARTUP_MAX_DAYS:-7} startups_json='[]'
	[[ "$days" =~ ^[0-9]{1,5}$ ]] || die "invalid FCVM_STARTUP_MAX_DAYS '$days'"
	for sj in "$root"/startup/*.json; do
		[ -f "$sj" ] || continue
		tag="" k="" r="" img=""
		IFS=$'\t' read -r tag k r img < <(jq -r '[.tag, .kernel, .rootfs, .image_disk] | @tsv' "$sj" 2>/dev/null)
		if ! valid_name "$tag" || [[ "$tag" != startup-* ]]; then why="an unreadable record"
		elif [ ! -d "$root/snapshots/$tag" ]; then why="its snapshot is gone (or could not be taken)"
		elif [ ! -e "$k" ] || [ ! -e "$r" ] || [ ! -e "$img" ]; then why="its kernel, rootfs or image is gone"
		elif [ -n "$(find "$sj" -mtime +"$days" 2>/dev/null)" ]; then why="unused for $days days"
		else continue
		fi
		if [ "$dry" = 0 ]; then
			if valid_name "$tag" && [ -d "$root/snapshots/$tag" ]; then
				fc-snap rm "$tag" >/dev/null 2>&1 || continue
			fi
			rm -f -- "$sj"
		fi
		startups_json=$(jq -c --arg t "$tag" --arg w "$why" '. + [{kind: "startup-snapshot", tag: $t, reason: $w}]' <<<"$startups_json")
	done
	if [ "$json" = 1 ]; then
		jq -c --args --argjson net "${netout:-[]}" --argjson st "$startups_json" \
			'. + ($ARGS.positional | map({kind: "vm-disk", path: ., reason: "a --rm run whose janitor is gone"}))
			+ ($net | map({kind: "net", id: ., reason: "its owner is dead"})) + $st' \
			-- "${extra[@]}" <<<"${out:-[]}"
	else
		jq -r --arg v "$([ "$dry" = 1 ] && echo "would remove" || echo removed)" \
			'.[] | "\($v) startup-snapshot \(.tag) (\(.reason))"' <<<"$startups_json"
		[ -n "$out" ] && printf '%s\n' "$out"
		[ -n "$netout" ] && printf '%s\n' "$netout"
		for d in "${extra[@]}"; do
			printf '%s vm-disk %s (a --rm run whose janitor is gone)\n' \
			"$([ "$dry" = 1 ] && echo "would remove" || echo removed)" "${d#"$root"/}"
		done
	fi
	return 0
}

# fcvm snapshot serve TAG: fc-uffd in the foreground. Its pid (the serve
# record's, what 'snapshot run --pid' takes) is printed once it serves, so
# a clone started on that line finds it running. Signals are passed on;
# fc-uffd stops its clones and exits, and so do we, with its code. It dies
# with us (setpriv --pdeathsig) if we are killed outright.
snapshot_serve() {
	local tag="" prefetch=on
	while [ $# -gt 0 ]; do
		case "$1" in
		--prefetch)
			[ $# -ge 2 ] || usage_die "snapshot serve: --prefetch needs on or off"
			[ "$2" = on ] || [ "$2" = off ] || usage_die "invalid --prefetch '$2': on or off"
			prefetch=$2; shift 2 ;;
		-h|--help) usage; exit 0 ;;
		-*) usage_die "snapshot serve: unknown argument '$1'" ;;
		*) [ -z "$tag" ] || usage_die "snapshot serve: one TAG only ('$1')"
		   tag=$1; shift ;;
		esac
	done
	[ -n "$tag" ] || usage_die "snapshot serve needs a TAG"
	valid_name "$tag" || usage_die "invalid TAG '$tag'"
	need fc-uffd
	local ready spid rc i
	ready=$(mktemp "${TMPDIR:-/tmp}/fcvm-serve.XXXXXX") || die "cannot create a temporary file"
	setpriv --pdeathsig TERM -- fc-uffd serve --snapshot "$tag" --prefetch "$prefetch" \
		--ready-fd 3 3>"$ready" &
	spid=$!
	trap 'kill -TERM "$spid" 2>/dev/null' TERM INT HUP
	for ((i = 0; i < 600; i++)); do
		grep -q '^ready ' "$ready" 2>/dev/null && break
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q '^ready ' "$ready" 2>/dev/null; then
		rm -f "$ready"
		kill -TERM "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
		die "the memory server for snapshot '$tag' did not start"
	fi
	rm -f "$ready"
	echo "$spid"
	# wait returns early (>128) when a trapped signal arrives: wait again
	while :; do
		wait "$spid" && rc=0 || rc=$?
		kill -0 "$spid" 2>/dev/null || break
	done
	[ "$rc" = 0 ] || exit 125
	return 0
}

# clone_volumes ID TAG SERVE_PID [SPEC...]: the volumes of the snapshot
# (TAG's, or SERVE_PID's), each served again for clone ID by a volume
# keeper: from the HOST directory of a -v HOST:GUEST[:ro] naming its guest
# path, else from the snapshot's own directory, read-only. A -v for a path
# the snapshot has no volume at, or a snapshot directory that is gone,
# ends fcvm (125) before anything is made. Sets cv_file (the clone's
# --volumes, removed when fcvm exits) and cv_pid (the keeper), both empty
# when the snapshot has no volumes.
cv_file="" cv_pid="" cv_stat=""
clone_volumes() {
	local id=$1 tag=$2 spid=$3 man vols n i g h ro p spec
	shift 3
	if [ -z "$tag" ]; then
		tag=$(fc-state ls --json | jq -r --argjson p "$spid" \
			'[.[] | select(.pid == $p and .process_type == "serve")][0].snapshot // empty') ||
			die "cannot read the records"
		[ -n "$tag" ] || die "no memory server has pid $spid (see 'fcvm ls')"
	fi
	man="$root/snapshots/$tag/manifest.json"
	[ -f "$man" ] || { [ $# -eq 0 ] && return 0; die "no snapshot '$tag' (see 'fcvm snapshot ls')"; }
	vols=$(jq -c '.source.config.volumes // [] | if type == "array" then . else error("not an array") end' \
		"$man") || die "snapshot '$tag': its manifest's volumes cannot be read"
	n=$(jq length <<<"$vols")
	local vol_host vol_guest vol_ro
	local -a given=()
	for spec in "$@"; do
		vol_check "$spec"
		jq -e --arg g "$vol_guest" 'any(.[]; .guest == $g)' <<<"$vols" >/dev/null ||
			die "invalid -v '$spec': snapshot '$tag' has no volume at '$vol_guest'" \
				"(a clone keeps its snapshot's mounts: $(jq -r 'if length == 0 then "none" else map(.guest) | join(", ") end' <<<"$vols"))"
		for p in "${given[@]}"; do
			[ "${p%%$'\t'*}" != "$vol_guest" ] || die "invalid -v '$spec': '$vol_guest' is mapped twice"
		done
		given+=("$vol_guest"$'\t'"$vol_host"$'\t'"$vol_ro")
	done
	[ "$n" -gt 0 ] || return 0
	need fc-volume; need setpriv
	local spec_json='[]' port
	local -a volargs=()
	for ((i = 0; i < n; i++)); do
		IFS=$'\t' read -r port g h <<<"$(jq -r --argjson i "$i" '.[$i] | [.port, .guest, .host] | @tsv' <<<"$vols")"
		[[ "$port" =~ ^[0-9]{4,5}$ ]] || die "snapshot '$tag': volume $i has a bad port"
		ro=true
		for p in "${given[@]}"; do
			if [ "${p%%$'\t'*}" = "$g" ]; then
				h=${p#*$'\t'}; ro=${h#*$'\t'}; h=${h%%$'\t'*}
			fi
		done
		[ -d "$h" ] || die "snapshot '$tag': the directory '$h' of its volume at '$g' is gone: give -v DIR:$g"
		vol_check "$h:$g"
		volargs+=("$port" "$ro" "$vol_host")
		spec_json=$(jq -c --argjson port "$port" --arg g "$g" --arg h "$vol_host" --argjson ro "$ro" \
			'. + [{port: $port, guest: $g, host: $h, read_only: $ro}]' <<<"$spec_json") ||
			die "cannot encode the volumes"
	done
	cv_file=$(mktemp "${TMPDIR:-/tmp}/fcvm-volumes.XXXXXX") || die "mktemp failed"
	trap 'rm -f -- "$cv_file" "$cv_stat"' EXIT
	printf '%s\n' "$spec_json" > "$cv_file" || die "cannot write '$cv_file'"
	# The keeper waits for the clone's record and run directory, then
	# serves; the guest's fc-volfs redials until its server is there.
	cv_stat="$cv_file.status"
	( exec setsid "$self" _volkeeper "$id" "$root/run/$id/vsock.sock" "$cv_stat" "${volargs[@]}" \
		</dev/null >/dev/null 2>&1 ) &
	cv_pid=$!
}

# keeper_status FILE PID TENTHS: the volume keeper's line ("ready" or
# "error: WHY") once it wrote FILE, or nothing when it died or TENTHS of a
# second went by first.
keeper_status() {
	local i line=""
	for ((i = 0; i < $3; i++)); do
		[ -e "$1" ] && break
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	[ -e "$1" ] && read -r line < "$1"
	echo "$line"
}

# clone_prepare ID TAG SERVE_PID [SPEC...]: what a clone needs before
# fc-clone runs: its volumes (clone_volumes) and its network janitor.
clone_prepare() {
	clone_volumes "$@"
	command -v fc-net >/dev/null && start_netjanitor "$1"
	return 0
}

# clone_detach ID NAME FC-CLONE-ARGS...: fc-clone --detach of the clone
# clone_prepare made ready. 1: fc-clone failed (it said why; the volume
# keeper is stopped); 2: its volumes did not start (said here).
clone_detach() {
	local id=$1 name=$2 line
	shift 2
	[ -z "$cv_file" ] || set -- "$@" --volumes "$cv_file"
	if ! fc-clone -q "$@" --name "$name" --id "$id" --detach >/dev/null; then
		clone_volumes_stop
		return 1
	fi
	[ -n "$cv_pid" ] || return 0
	line=$(keeper_status "$cv_stat" "$cv_pid" 600)
	[ "$line" = ready ] && return 0
	echo "$prog: ${line#error: }" >&2
	return 2
}

# clone_volumes_stop: the clone's volume keeper, if any, stopped and waited for.
clone_volumes_stop() {
	[ -z "$cv_pid" ] || { kill -TERM "$cv_pid" 2>/dev/null; until_ended "$cv_pid"; }
	cv_pid="" cv_file=""
}

# fcvm snapshot create|run|serve|ls|rm: fc-snap, fc-clone and fc-uffd.
# create snapshots a running VM, found by its owner's pid (fc-boot's, what
# 'fcvm ls' shows as PID) or its name; run starts a clone (in the
# foreground, or -d: once its agent answers, printing its id), from the
# snapshot's memory file or, --pid, from a memory server; serve is that
# server; ls and rm are fc-snap's.
cmd_snapshot() {
	[ $# -ge 1 ] || usage_die "snapshot needs create, run, serve, ls or rm"
	local sub=$1
	shift
	case "$sub" in
	create)
		local -a target=()
		local tag=""
		while [ $# -gt 0 ]; do
			case "$1" in
			--pid|--name|--vm|--tag)
				[ $# -ge 2 ] || usage_die "snapshot create: $1 needs a value"
				case "$1" in
				--pid) [[ "$2" =~ ^[1-9][0-9]{0,9}$ ]] || usage_die "invalid --pid '$2'"
				       target+=(--pid "$2") ;;
				--name|--vm) valid_name "$2" || usage_die "invalid --name '$2'"
				       target+=(--vm "$2") ;;
				--tag) tag=$2 ;;
				esac
				shift 2 ;;
			-h|--help) usage; exit 0 ;;
			*) usage_die "snapshot create: unknown argument '$1'" ;;
			esac
		done
		[ ${#target[@]} -eq 2 ] || usage_die "snapshot create needs one of --pid and --name"
		[ -n "$tag" ] || usage_die "snapshot create needs --tag"
		valid_name "$tag" || usage_die "invalid --tag '$tag': use 1-63 letters, digits, '_', '.', '-'"
		need fc-snap
		fc-snap create "${target[@]}" --tag "$tag" || exit 125 ;;
	run)
		local tag="" name="" detach=0 spid=""
		local -a pub=() from=() vspecs=()
		while [ $# -gt 0 ]; do
			case "$1" in
			--snapshot|--name|--pid)
				[ $# -ge 2 ] || usage_die "snapshot run: $1 needs a value"
				case "$1" in
				--snapshot) tag=$2 ;;
				--name) name=$2 ;;
				--pid) [[ "$2" =~ ^[1-9][0-9]{0,9}$ ]] || usage_die "invalid --pid '$2'"
				       spid=$2 ;;
				esac
				shift 2 ;;
			-p|--publish)
				[ $# -ge 2 ] || usage_die "snapshot run: $1 needs a value"
				pub+=(-p "$2"); shift 2 ;;
			-p*) pub+=(-p "${1#-p}"); shift ;;
			--publish=*) pub+=(-p "${1#*=}"); shift ;;
			-v|--volume|--map)
				[ $# -ge 2 ] || usage_die "snapshot run: $1 needs HOST:GUEST[:ro]"
				vspecs+=("$2"); shift 2 ;;
			--volume=*|--map=*) vspecs+=("${1#*=}"); shift ;;
			-d|--detach) detach=1; shift ;;
			-h|--help) usage; exit 0 ;;
			*) usage_die "snapshot run: unknown argument '$1'" ;;
			esac
		done
		[ -n "$tag$spid" ] || usage_die "snapshot run needs --snapshot or --pid"
		if [ -n "$tag" ]; then
			valid_name "$tag" || usage_die "invalid --snapshot '$tag'"
			from+=(--snapshot "$tag")
		fi
		[ -z "$spid" ] || from+=(--pid "$spid")
		[ -n "$name" ] || name="clone-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
		valid_name "$name" || usage_die "invalid --name '$name'"
		need fc-clone
		# The clone's id is ours to choose, so that the network janitor
		# can name it before fc-clone runs: fc-clone's network (fc-net
		# clone mode) goes with the clone's owner by itself, and should
		# its holder be killed too, the janitor removes it once we and
		# the clone are gone (as for 'podman run').
		local id; id="vm-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
		clone_prepare "$id" "$tag" "$spid" "${vspecs[@]}"
		if [ "$detach" = 1 ]; then
			clone_detach "$id" "$name" "${from[@]}" "${pub[@]}" || exit 125
			fc-state get --field id -- "$name" || exit 125
			return 0
		fi
		[ -z "$cv_file" ] || from+=(--volumes "$cv_file")
		local rc=0
		fc-clone "${from[@]}" --name "$name" --id "$id" "${pub[@]}" || rc=$?
		clone_volumes_stop
		[ "$rc" = 1 ] && exit 125
		exit "$rc" ;;
	serve) snapshot_serve "$@" ;;
	ls) need fc-snap; fc-snap ls "$@" || exit 125 ;;
	rm) need fc-snap; fc-snap rm "$@" || exit 125 ;;
	*) usage_die "snapshot: unknown command '$sub' (create, run, serve, ls, rm)" ;;
	esac
}

[ $# -ge 1 ] || usage_die "missing command"
case "$1" in
podman)
	[ "${2:-}" = run ] || usage_die "only 'podman run' is supported"
	shift 2; cmd_run "$@" ;;
run) shift; cmd_run "$@" ;;
ls|ps) shift; cmd_ls "$@" ;;
stop) shift; cmd_stop "$@" ;;
logs) shift; cmd_logs "$@" ;;
rm) shift; cmd_rm "$@" ;;
gc) shift; cmd_gc "$@" ;;
exec) shift; cmd_exec "$@" ;;
snapshot) shift; cmd_snapshot "$@" ;;
_janitor) shift; cmd_janitor "$@" ;;
_netjanitor) shift; cmd_netjanitor "$@" ;;
_runwatch) shift; cmd_runwatch "$@" ;;
_volkeeper) shift; cmd_volkeeper "$@" ;;
-h|--help|help) usage ;;
*) usage_die "unknown command '$1'" ;;
esac
