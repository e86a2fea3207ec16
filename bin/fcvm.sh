#!/usr/bin/env bash
# fcvm - the front end: composes fc-disk, fc-boot and fc-run into podman-like
# commands. Each step is one tool; this script only wires them together.
#
#   fcvm podman run [OPTIONS] IMAGE [CMD [ARG...]]
#   fcvm ls [--json] | fcvm stop NAME | fcvm logs NAME | fcvm rm NAME
#
# Exit codes: the container's own for 'podman run' (128+N for a signal);
# 125 when fcvm or a tool failed before the container could report; 2 usage.
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
# Tools beside this script first (a build tree works uninstalled).
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
export PATH="$here:$PATH"

usage() {
	cat <<'EOF'
usage: fcvm podman run [--name NAME] [-e K=V]... [--cpus N] [--memory MIB] [--rm] [-d]
                       [--timeout S] IMAGE [CMD [ARG...]]
       fcvm ls [--json]
       fcvm stop NAME
       fcvm logs NAME
       fcvm rm NAME
EOF
}

die() { echo "$prog: $*" >&2; exit 125; }
usage_die() { echo "$prog: $*" >&2; usage >&2; exit 2; }

need() {
	command -v "$1" >/dev/null || die "'$1' not found: build fcvm ('make') or install it"
}

new_id() { printf 'vm-%s' "$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"; }

# live_record FILE: print the record if its owner still runs (same pid and
# start time: pids are reused), else fail.
live_record() {
	local pid start now
	pid=$(jq -r '.pid // empty' "$1" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	start=$(jq -r .pid_start "$1")
	now=$(awk '{sub(/.*\) /, ""); print $20}' "/proc/$pid/stat" 2>/dev/null)
	[ -n "$now" ] && [ "$now" = "$start" ] && cat "$1"
}

# state_of NAME_OR_ID: the live record (jq reads it); fails if none.
state_of() {
	local f
	for f in "$root"/state/*.json; do
		[ -f "$f" ] || continue
		live_record "$f" | jq -e --arg k "$1" 'select(.name == $k or .id == $k)' 2>/dev/null && return 0
	done
	return 1
}

cmd_run() {
	local name="" cpus=2 memory=1024 rm=0 detach=0 timeout=180
	local -a env=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--name) [ $# -ge 2 ] || usage_die "--name needs a value"; name=$2; shift 2 ;;
		--name=*) name=${1#*=}; shift ;;
		-e|--env) [ $# -ge 2 ] || usage_die "$1 needs K=V"; env+=("$2"); shift 2 ;;
		--env=*) env+=("${1#*=}"); shift ;;
		--cpus) [ $# -ge 2 ] || usage_die "--cpus needs a value"; cpus=$2; shift 2 ;;
		--memory|-m) [ $# -ge 2 ] || usage_die "$1 needs a value"; memory=$2; shift 2 ;;
		--timeout) [ $# -ge 2 ] || usage_die "--timeout needs seconds"; timeout=$2; shift 2 ;;
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
	local e
	for e in "${env[@]}"; do
		[[ "$e" == [A-Za-z_]*=* ]] || usage_die "invalid -e '$e': want NAME=VALUE"
	done
	[[ "$cpus" =~ ^[0-9]+$ ]] || usage_die "invalid --cpus '$cpus'"
	[[ "$memory" =~ ^[0-9]+$ ]] || usage_die "invalid --memory '$memory'"
	[[ "$timeout" =~ ^[0-9]+$ ]] || usage_die "invalid --timeout '$timeout'"
	need fc-disk; need fc-boot; need fc-run; need jq

	local id; id=$(new_id)
	[ -n "$name" ] || name=$id
	if state_of "$name" >/dev/null; then
		die "name '$name' is already used by a running VM: 'fcvm stop $name' or choose another --name"
	fi

	local img_json disk ref rootfs
	img_json=$(fc-disk image --json "$image") || exit 125
	disk=$(jq -r .path <<<"$img_json")
	ref=$(jq -r '.ref // .image_id // empty' <<<"$img_json")
	rootfs=$(fc-disk rootfs --vm "$id") || exit 125
	local vmdir="$root/vm-disks/$id"
	local plan="$vmdir/plan.json"
	# The image disk is the second drive: /dev/vdb in the guest.
	# '--' keeps jq from taking the container's own options (sh -c) as its.
	local env_json
	env_json=$(jq -nc '$ARGS.positional' --args -- "${env[@]}")
	jq -n --arg ref "$ref" --argjson env "$env_json" \
		'{version: 1, image: ({disk: "/dev/vdb"} + (if $ref == "" then {} else {ref: $ref} end)),
		  env: $env, poweroff: true} + (if $ARGS.positional | length > 0 then {cmd: $ARGS.positional} else {} end)' \
		--args -- "$@" > "$plan" || die "cannot write the plan '$plan'"

	local boot_pid="" run_pid="" rc
	cleanup_vm() {
		[ -n "$run_pid" ] && kill -TERM "$run_pid" 2>/dev/null
		[ -n "$boot_pid" ] && kill -TERM "$boot_pid" 2>/dev/null && wait "$boot_pid" 2>/dev/null
		[ -n "$run_pid" ] && wait "$run_pid" 2>/dev/null
		[ "$rm" = 1 ] && fc-disk rm --vm "$id" >/dev/null 2>&1
	}
	trap 'cleanup_vm; exit 130' INT
	trap 'cleanup_vm; exit 143' TERM HUP

	if [ "$detach" = 1 ]; then
		# The VM lives on in a detached fc-boot, which 'fcvm stop' ends;
		# it returns once the VM runs, or fails saying why.
		boot_pid=$(fc-boot --name "$name" --id "$id" --cpus "$cpus" --memory "$memory" \
			--rootfs "$rootfs" --drive "$disk:ro" --boot-args "quiet" -q --detach) || {
			boot_pid=""
			[ "$rm" = 1 ] && fc-disk rm --vm "$id" >/dev/null 2>&1
			exit 125
		}
	else
		# Foreground: the VM dies with us, even on SIGKILL.
		fc-boot --name "$name" --id "$id" --cpus "$cpus" --memory "$memory" \
			--rootfs "$rootfs" --drive "$disk:ro" --boot-args "quiet" -q --die-with-parent &
		boot_pid=$!
		# Wait until the VM runs, or fc-boot has failed (it says why).
		while :; do
			if ! kill -0 "$boot_pid" 2>/dev/null; then
				wait "$boot_pid"; boot_pid=""
				[ "$rm" = 1 ] && fc-disk rm --vm "$id" >/dev/null 2>&1
				exit 125
			fi
			[ "$(jq -r .status "$root/state/$id.json" 2>/dev/null)" = running ] && break
			sleep 0.05
		done
	fi

	local vsock="$root/run/$id/vsock.sock"
	if [ "$detach" = 1 ]; then
		local fifo="$vmdir/started"
		mkfifo "$fifo" || die "mkfifo '$fifo'"
		setsid fc-run --vsock "$vsock" --timeout "$timeout" --started-fd 3 "$plan" \
			>"$vmdir/stdout.log" 2>"$vmdir/stderr.log" 3>"$fifo" </dev/null &
		local started
		read -r -t "$timeout" started < "$fifo"
		rm -f "$fifo"
		trap - INT TERM HUP
		if [ "${started:-}" != started ]; then
			cat "$vmdir/stderr.log" >&2
			cleanup_vm
			die "container did not start (see 'fcvm logs $name')"
		fi
		echo "$id"
		exit 0
	fi
	# In the background with 'wait', so a signal runs our trap at once
	# (bash defers traps while a foreground child runs).
	fc-run --vsock "$vsock" --timeout "$timeout" --die-with-parent "$plan" &
	run_pid=$!
	wait "$run_pid"
	rc=$?
	run_pid=""
	# The agent powers the guest off after the container ends; give it a moment.
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$boot_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -TERM "$boot_pid" 2>/dev/null
	wait "$boot_pid" 2>/dev/null
	boot_pid=""
	[ "$rm" = 1 ] && fc-disk rm --vm "$id" >/dev/null 2>&1
	exit "$rc"
}

cmd_ls() {
	local json=0
	case "${1:-}" in
	--json) json=1 ;;
	"") ;;
	*) usage_die "ls: unknown argument '$1'" ;;
	esac
	local recs
	recs=$(for f in "$root"/state/*.json; do
		[ -f "$f" ] && live_record "$f"
	done | jq -s '.')
	if [ "$json" = 1 ]; then
		printf '%s\n' "$recs"
	else
		jq -r '(["ID", "NAME", "TYPE", "PID", "STATUS", "CREATED"] | @tsv),
		       (.[] | [.id, .name, .process_type, (.pid | tostring), .status, .created] | @tsv)' \
			<<<"$recs" | column -t -s $'\t'
	fi
}

cmd_stop() {
	[ $# -eq 1 ] || usage_die "stop needs a NAME"
	local rec pid i
	rec=$(state_of "$1") || die "no running VM named '$1' (see 'fcvm ls')"
	pid=$(jq -r .pid <<<"$rec")
	kill -TERM "$pid" 2>/dev/null || die "cannot signal pid $pid"
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
}

# vm_dir NAME: the disk directory of a live VM by name, or of a stopped one by id.
vm_dir() {
	local rec
	if rec=$(state_of "$1"); then
		jq -r .disk_dir <<<"$rec"
	elif [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] && [ -d "$root/vm-disks/$1" ]; then
		echo "$root/vm-disks/$1"
	else
		die "no VM named '$1' (see 'fcvm ls'; stopped VMs are known by id)"
	fi
}

cmd_logs() {
	[ $# -eq 1 ] || usage_die "logs needs a NAME"
	local d; d=$(vm_dir "$1") || exit 125
	[ -f "$d/stdout.log" ] && cat "$d/stdout.log"
	[ -f "$d/stderr.log" ] && cat "$d/stderr.log" >&2
	[ -f "$d/console.log" ] && sed 's/^/console: /' "$d/console.log" >&2
	return 0
}

cmd_rm() {
	[ $# -eq 1 ] || usage_die "rm needs a NAME"
	if state_of "$1" >/dev/null; then
		die "VM '$1' is running: 'fcvm stop $1' first"
	fi
	local d; d=$(vm_dir "$1") || exit 125
	fc-disk rm --vm "$(basename "$d")"
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
-h|--help|help) usage ;;
*) usage_die "unknown command '$1'" ;;
esac
