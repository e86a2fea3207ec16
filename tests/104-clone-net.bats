#!/usr/bin/env bats
# The network for clones (fc-net --mode clone, fc-clone, fcvm snapshot run):
# every clone of a snapshot of a bridged VM keeps the guest's IP, MAC and
# gateway inside a network namespace of its own, behind a veth pair and NAT,
# with the source's published ports (and -p) on the clone's own loopback
# address. First without a VM ('fc-net attach' plays the guest behind the
# clone's TAP, in the holder's namespace, as the VMM opens it), then with
# real clones under fc-qemu. All traffic stays on loopback, the TAPs and the
# namespaces made here: the host servers listen on 127.0.0.1 and the guests
# reach them at their gateway (--host-loopback).

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	[ "$(id -u)" = 0 ] || skip "bridged and clone networks need root"
	command -v python3 >/dev/null || skip "needs python3 for the test servers"
	command -v curl >/dev/null || skip "needs curl"
	PIDS=()
	NSS=()
	VMS=()
	HOLDERS=()	# "PID NETNS-INODE" of every clone namespace holder seen
	OBJS=()		# "link NAME" / "table NAME" of every network seen
	# Other tests on this machine (other data roots, other worktrees) make
	# TAPs, veths and fcvm- tables of their own while this one runs: a
	# machine-wide count would be flaky. What this test made is counted
	# by name instead (count_ours: before 0, while up N, after 0).
}

teardown() {
	local p r=0 n v
	[ -n "${FCVM_ROOT:-}" ] || return 0
	for p in $(fc-state ls --json 2>/dev/null | jq -r '.[] | select(.process_type == "clone") | .name'); do
		fcvm stop "$p" >/dev/null 2>&1 || true
	done
	fcvm stop src >/dev/null 2>&1 || true
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	for v in "${VMS[@]}"; do fc-net down --vm "$v" >/dev/null 2>&1 || true; done
	for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
	fc-net gc >/dev/null 2>&1 || true
	nothing_left || r=1
	leak_check || r=1
	rm -rf "$FCVM_ROOT"
	return $r
}

# count_ours: how many of the links and tables this test saw still exist.
count_ours() {
	local h n=0
	for h in "${OBJS[@]}"; do
		case $h in
		"link "*) [ -e "/sys/class/net/${h#link }" ] && n=$((n + 1)) ;;
		"table "*) nft list table ip "${h#table }" >/dev/null 2>&1 && n=$((n + 1)) ;;
		esac
	done
	echo "$n"
}

# net_seen NETJSON: remember what a network made on the host (its TAP or
# veth, its table) and, for a clone, its namespace holder (pid and the
# inode of its network namespace) for nothing_left; all of it must exist.
net_seen() {
	local v t pid
	for v in $(jq -r '(.veth // .tap)' <<<"$1"); do
		ip link show "$v" >/dev/null || { echo "no link $v" >&2; return 1; }
		OBJS+=("link $v")
	done
	t=$(jq -r .table <<<"$1")
	nft list table ip "$t" >/dev/null || { echo "no table $t" >&2; return 1; }
	OBJS+=("table $t")
	[ "$(jq -r .mode <<<"$1")" = clone ] || return 0
	pid=$(jq -r .holder_pid <<<"$1")
	[[ "$pid" =~ ^[0-9]+$ ]] || { echo "no holder in $1" >&2; return 1; }
	HOLDERS+=("$pid $(stat -L -c %i "/proc/$pid/ns/net")")
}

# nothing_left: no fc-net record, the counts as before the test, every
# holder gone and no process left in any clone namespace.
nothing_left() {
	local h pid ino p i left
	assert_eq "$(ls "$FCVM_ROOT/net" 2>/dev/null)" "" "no fc-net record left" || return 1
	assert_eq "$(count_ours)" 0 "none of the TAPs, veths and tables seen is left" || return 1
	for h in "${OBJS[@]}"; do
		case $h in
		"link "*) [ ! -e "/sys/class/net/${h#link }" ] || { echo "${h#link } left" >&2; return 1; } ;;
		"table "*) if nft list table ip "${h#table }" >/dev/null 2>&1; then
				echo "nft table ${h#table } left" >&2; return 1
			   fi ;;
		esac
	done
	for h in "${HOLDERS[@]}"; do
		pid=${h% *} ino=${h#* }
		# bounded: a holder that removed the network itself is exiting
		timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null ||
			{ echo "namespace holder $pid still runs" >&2; return 1; }
		# bounded too: a process killed just now (fc-net attach's
		# helpers die with it) may still be exiting
		for ((i = 0; i < 100; i++)); do
			left=""
			for p in /proc/[0-9]*/ns/net; do
				[ "$(stat -L -c %i "$p" 2>/dev/null)" = "$ino" ] && left=$p
			done
			[ -z "$left" ] && break
			sleep 0.1
		done
		if [ -n "$left" ]; then
			echo "a process ($left: $(tr '\0' ' ' < "${left%/ns/net}/cmdline" 2>/dev/null)) is still in a clone's namespace" >&2
			return 1
		fi
	done
}

free_port() {
	local p
	for ((;;)); do
		p=$((20000 + RANDOM % 30000))
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return 0; }
	done
}

# host_http PORT TEXT: a server on the host's 127.0.0.1:PORT serving TEXT as /f.txt.
host_http() {
	mkdir -p "$BATS_TEST_TMPDIR/www"
	echo "$2" >"$BATS_TEST_TMPDIR/www/f.txt"
	python3 -m http.server --bind 127.0.0.1 --directory "$BATS_TEST_TMPDIR/www" "$1" \
		>/dev/null 2>&1 3>&- &
	PIDS+=($!)
	local i
	for ((i = 0; i < 100; i++)); do
		curl -fsS --max-time 2 "http://127.0.0.1:$1/f.txt" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "the host's test server did not start" >&2
	return 1
}

# ask [NS|-] ADDR PORT: one line from a TCP server (in namespace NS).
ask() {
	local -a pre=()
	[ "$1" = - ] || pre=(ip netns exec "$1")
	"${pre[@]}" timeout 10 bash -c 'exec 3<>/dev/tcp/$0/$1 && head -1 <&3' "$2" "$3"
}

@test "clone-net without a VM: two clones of one bridged network keep its guest address; ports, egress, down, and a dead owner leave nothing" {
	fc_setup_root
	local T="c${BATS_TEST_NUMBER}x$$"
	run_fc 0 --timeout 30 fc-net up --vm "$T-src" --owner-pid $$ -p 18080:80 --host-loopback
	VMS+=("$T-src")
	local src=$output
	net_seen "$src"
	echo "$src" >"$BATS_TEST_TMPDIR/src.json"

	# usage and refusals first: nothing is made
	run_fc 2 fc-net up --vm "$T-x" --mode clone
	assert_contains "$output" "needs one of --from-snapshot TAG and --like FILE" "clone mode needs a source"
	run_fc 2 fc-net up --vm "$T-x" --mode clone --like "$BATS_TEST_TMPDIR/src.json" --host-loopback
	assert_contains "$output" "keeps the source's network" "the source's options are not the clone's to change"
	jq '.mode = "rootless" | .tap = "tap0"' "$BATS_TEST_TMPDIR/src.json" >"$BATS_TEST_TMPDIR/rl.json"
	run_fc 1 fc-net up --vm "$T-x" --mode clone --like "$BATS_TEST_TMPDIR/rl.json" --owner-pid $$
	assert_contains "$output" "clones need a bridged one" "a rootless source is refused"
	jq '.guest_ip = "10.0.0.1; rm -rf /"' "$BATS_TEST_TMPDIR/src.json" >"$BATS_TEST_TMPDIR/bad.json"
	run_fc 1 fc-net up --vm "$T-x" --mode clone --like "$BATS_TEST_TMPDIR/bad.json" --owner-pid $$
	assert_contains "$output" "'guest_ip' is not an IPv4 address" "a malformed source is refused"
	assert_eq "$(ls "$FCVM_ROOT/net")" "$T-src.json" "the refusals made no record"

	# two clones, owned by a process of ours that the test kills later
	sleep 1d 3>&- &
	local owner=$!
	PIDS+=("$owner")
	local c net
	declare -A NET
	for c in a b; do
		run_fc 0 --timeout 30 fc-net up --vm "$T-$c" --mode clone --like "$BATS_TEST_TMPDIR/src.json" \
			--owner-pid "$owner" -p 127.0.0.1::81
		VMS+=("$T-$c")
		NET[$c]=$output
		net_seen "$output"
		assert_eq "$(jq -r '.mode + " " + .tap + " " + .guest_ip + " " + .gateway + " " + .mac' <<<"$output")" \
			"$(jq -r '"clone " + .tap + " " + .guest_ip + " " + .gateway + " " + .mac' <<<"$src")" \
			"clone $c: the source's TAP name, guest address, gateway and MAC"
		[ "$(jq -r .loopback_ip <<<"$output")" != "$(jq -r .loopback_ip <<<"$src")" ]
	done
	local la lb
	la=$(jq -r .loopback_ip <<<"${NET[a]}")
	lb=$(jq -r .loopback_ip <<<"${NET[b]}")
	[ "$la" != "$lb" ] || { echo "both clones got $la" >&2; false; }
	assert_eq "$(jq -r '[.ports[] | "\(.host_ip):\(.host_port)->\(.guest_port)"] | join(" ")' <<<"${NET[a]}")" \
		"127.0.0.1:$(jq -r '.ports[0].host_port' <<<"${NET[a]}")->81 $la:18080->80" \
		"clone a: -p, then the source's port re-created on its own loopback address"
	assert_eq "$(count_ours)" 6 "the source's TAP and table, a veth and a table per clone"
	run_fc 0 fc-net ls
	assert_contains "$output" "$(jq -r .veth <<<"${NET[a]}")" "ls names a clone's host interface, its veth"

	# each clone's guest stand-in, in a namespace of the test's, with a server
	for c in a b; do
		local ns="fcnt-$T-$c" ready="$BATS_TEST_TMPDIR/attach-$c"
		ip netns add "$ns"
		NSS+=("$ns")
		fc-net attach --vm "$T-$c" --netns "$ns" --ready-fd 3 3>"$ready" 2>"$BATS_TEST_TMPDIR/attach-$c.log" &
		PIDS+=($!)
		wait_line "$ready" '^ready$' 20 $! || { cat "$BATS_TEST_TMPDIR/attach-$c.log" >&2; false; }
		ip netns exec "$ns" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(16); open(sys.argv[2], "w").write("ready\n")
while True:
    c, p = s.accept(); c.sendall(("hello from %s\n" % sys.argv[1]).encode()); c.close()' "$c" \
			"$BATS_TEST_TMPDIR/srv-$c" 3>&- &
		PIDS+=($!)
		wait_line "$BATS_TEST_TMPDIR/srv-$c" '^ready$' 20 $!
	done
	# the same guest address twice, each reached through its own loopback address
	assert_eq "$(ask - "$la" 18080)" "hello from a" "clone a's published port"
	assert_eq "$(ask - "$lb" 18080)" "hello from b" "clone b's published port"
	# egress: the guest's gateway:PORT is the host's loopback (--host-loopback of the source)
	local hp; hp=$(free_port)
	host_http "$hp" "from the host"
	local gw; gw=$(jq -r .gateway <<<"$src")
	for c in a b; do
		run_fc 0 ip netns exec "fcnt-$T-$c" curl -fsS --max-time 5 "http://$gw:$hp/f.txt"
		assert_eq "$output" "from the host" "clone $c reaches the host's server"
	done

	# down removes exactly clone a's network; b's still works
	run_fc 0 fc-net down --vm "$T-a"
	[ ! -e "$FCVM_ROOT/net/$T-a.json" ]
	assert_eq "$(count_ours)" 4 "clone a's veth and table went"
	if nft list table ip "$(jq -r .table <<<"${NET[a]}")" >/dev/null 2>&1; then
		echo "clone a's table is left" >&2; false
	fi
	assert_eq "$(ask - "$lb" 18080)" "hello from b" "clone b unaffected by a's down"

	# the owner dies: b's holder removes b's network itself (fc-net gc for
	# a holder that could not)
	kill -KILL "$owner"
	local hb; hb=$(jq -r .holder_pid <<<"${NET[b]}")
	timeout 30 tail --pid="$hb" -f /dev/null
	run_fc 0 fc-net gc
	[ ! -e "$FCVM_ROOT/net/$T-b.json" ]
	run_fc 0 fc-net down --vm "$T-src"
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
	nothing_left
}

need_snap_qemu() {
	if [ -z "${FCVM_TEST_QEMU:-}" ] || [ ! -x "$FCVM_TEST_QEMU" ]; then
		local why="fcvm's QEMU could not be built (${FCVM_TEST_QEMU_WHY:-see fc-setup qemu})"
		[ -n "${CI:-}" ] && { echo "CI must not skip: $why" >&2; return 1; }
		skip "$why"
	fi
	export FCVM_QEMU="$FCVM_TEST_QEMU"
}

# get_until URL WANT: curl URL until the body is WANT (bounded: a guest
# under TCG may take a while).
get_until() {
	local url=$1 want=$2 i body=""
	for ((i = 0; i < 120; i++)); do
		body=$(curl -fsS --max-time 5 "$url" 2>/dev/null) && [ "$body" = "$want" ] && return 0
		sleep 1
	done
	echo "GET $url: got '$body', want '$want'" >&2
	return 1
}

@test "clone-net: clones of a snapshot of a bridged httpd VM each answer on their own loopback address and reach the host; nothing is left" {
	need_snap_qemu
	fc_vm_root clonenet
	local port hp
	port=$(free_port)
	hp=$(free_port)
	host_http "$hp" "from the host"
	run_fc 0 --timeout 300 fcvm podman run -d --name src --network bridged -p "$port:8080" --host-loopback \
		"$IMG" sh -c 'busybox mkdir -p /www && echo source >/www/index.html && exec busybox httpd -f -p 8080 -h /www'
	local slo gw
	net_seen "$(fc-state get --field network src)"
	slo=$(fc-state get --field network.loopback_ip src)
	gw=$(fc-state get --field network.gateway src)
	get_until "http://$slo:$port/index.html" source
	run_fc 0 --timeout 300 fcvm snapshot create --name src --tag t1
	assert_eq "$(jq -r .source.network.mode "$FCVM_ROOT/snapshots/t1/manifest.json")" bridged \
		"the manifest records the source's network"

	# two clones through fcvm, one through fc-clone with a -p of its own
	local p2; p2=$(free_port)
	run_fc 0 --timeout 300 fcvm snapshot run --snapshot t1 --name c1 -d 3>&-
	run_fc 0 --timeout 300 fcvm snapshot run --snapshot t1 --name c2 -d 3>&-
	run_fc 0 --timeout 300 fc-clone -q --snapshot t1 --name c3 -p "127.0.0.1:$p2:8080" --detach 3>&-
	local c net
	declare -A LO
	for c in c1 c2 c3; do
		net=$(fc-state get --field network "$c")
		net_seen "$net"
		assert_eq "$(jq -r '.mode + " " + .guest_ip' <<<"$net")" \
			"clone $(fc-state get --field network.guest_ip src)" "$c: the source's guest address, in clone mode"
		LO[$c]=$(jq -r .loopback_ip <<<"$net")
		local vmm; vmm=$(fc-state get --field vmm_pid "$c")
		assert_eq "$(stat -L -c %i "/proc/$vmm/ns/net")" "$(stat -L -c %i "/proc/$(jq -r .holder_pid <<<"$net")/ns/net")" \
			"$c: the VMM runs in the clone's namespace"
	done
	[ "${LO[c1]}" != "${LO[c2]}" ] && [ "${LO[c2]}" != "${LO[c3]}" ] && [ "${LO[c1]}" != "$slo" ] ||
		{ echo "loopback addresses are not distinct: ${LO[*]} $slo" >&2; false; }

	# each clone's httpd (restored from memory) answers on its own
	# address; a file each clone writes tells them apart
	for c in c1 c2 c3; do
		run_fc 0 --timeout 120 fc-exec --name "$c" -- sh -c "echo $c >/www/index.html"
	done
	for c in c1 c2 c3; do
		get_until "http://${LO[$c]}:$port/index.html" "$c"
	done
	get_until "http://127.0.0.1:$p2/index.html" c3
	run_fc 0 fcvm ls
	assert_contains "$output" "${LO[c1]}:$port->8080/tcp" "fcvm ls shows a clone's published port"

	# egress: each clone fetches from the host's server at its gateway
	for c in c1 c2 c3; do
		run_fc 0 --timeout 120 fc-exec --name "$c" -- busybox wget -q -O - "http://$gw:$hp/f.txt"
		assert_eq "$output" "from the host" "$c reaches the host"
	done

	# the source keeps working
	get_until "http://$slo:$port/index.html" source

	run_fc 0 fcvm stop c1
	run_fc 0 fcvm stop c2
	run_fc 0 fcvm stop c3

	# kill -9 of a clone's fc-clone: its network goes (the holder itself,
	# fcvm gc for anything it could not)
	fc-clone --snapshot t1 --name k >/dev/null 2>"$BATS_TEST_TMPDIR/k.err" 3>&- &
	local kpid=$! i
	for ((i = 0; i < 1500; i++)); do
		[ "$(fc-state get --field status k 2>/dev/null)" = running ] && break
		kill -0 "$kpid" 2>/dev/null || break
		sleep 0.2
	done
	assert_eq "$(fc-state get --field status k)" running "the clone came up" || { cat "$BATS_TEST_TMPDIR/k.err" >&2; false; }
	net=$(fc-state get --field network k)
	net_seen "$net"
	kill -KILL "$kpid"
	wait "$kpid" 2>/dev/null || true
	timeout 30 tail --pid="$(jq -r .holder_pid <<<"$net")" -f /dev/null
	run_fc 0 fcvm gc
	run_fc 0 fcvm stop src
	for ((i = 0; i < 100; i++)); do [ -z "$(ls "$FCVM_ROOT/net" 2>/dev/null)" ] && break; sleep 0.1; done
	nothing_left
}

@test "clone-net: a snapshot of a VM without a network: fc-net and fc-clone -p refuse, nothing is made" {
	fc_setup_root
	# a consistent snapshot that is never started (as tests/101 crafts them)
	local d="$FCVM_ROOT/snapshots/nonet"
	mkdir -p "$d"
	head -c 4096 /dev/urandom >"$d/vmstate"
	truncate -s 16M "$d/memory"
	truncate -s 1M "$d/disk.ext4"
	jq -n --arg sum "$(sha256sum <"$d/vmstate" | cut -d' ' -f1)" '{
		version: 1, tag: "nonet", created: "2026-01-01T00:00:00Z",
		source: {id: "vm-000000000000", name: "x", config: {}, network: null},
		machine: {cpus: 1, memory_mib: 16, vsock_cid: 3},
		vmm: {program: "fc-qemu", version: "x"}, backends: ["File"],
		files: {vmstate: {name: "vmstate", size: 4096, sha256: $sum},
			memory: {name: "memory", size: 16777216},
			disk: {name: "disk.ext4", size: 1048576}}}' >"$d/manifest.json"
	run_fc 1 fc-net up --vm c1 --mode clone --from-snapshot nonet --owner-pid $$
	assert_contains "$output" "had no network" "fc-net: nothing to clone"
	run_fc 1 fc-clone --snapshot nonet --name c1 -p 8080:80
	assert_contains "$output" "-p needs a network" "fc-clone: -p without a network"
	run_fc 2 fc-net up --vm c1 --mode clone --from-snapshot ../x
	assert_contains "$output" "invalid --from-snapshot" "a tag is a plain name"
	assert_eq "$(ls "$FCVM_ROOT/net" 2>/dev/null)" "" "no record made"
	assert_eq "$(ls "$FCVM_ROOT/state" 2>/dev/null)" "" "no state record made"
}

@test "clone-net: a failure in the last step (the host's nftables batch) undoes the namespace, the veth and the record" {
	fc_setup_root
	local T="c${BATS_TEST_NUMBER}x$$"
	run_fc 0 --timeout 30 fc-net up --vm "$T-src" --owner-pid $$ -p 18081:80
	VMS+=("$T-src")
	net_seen "$output"
	echo "$output" >"$BATS_TEST_TMPDIR/src.json"
	run_fc 0 --timeout 30 fc-net up --vm "$T-c" --mode clone --like "$BATS_TEST_TMPDIR/src.json" --owner-pid $$
	local veth
	veth=$(jq -r .veth <<<"$output")
	run_fc 0 fc-net down --vm "$T-c"
	# The same id gets the same veth name; a table of that name already
	# there makes the host's batch fail after everything else was made.
	nft add table ip "fcvm-$veth"
	run_fc 1 --timeout 30 fc-net up --vm "$T-c" --mode clone --like "$BATS_TEST_TMPDIR/src.json" --owner-pid $$ -v
	nft delete table ip "fcvm-$veth"
	assert_contains "$output" "create nftables table 'fcvm-$veth'" "the failing step is named"
	[ ! -e "/sys/class/net/$veth" ] || { echo "veth $veth left" >&2; false; }
	[ ! -e "$FCVM_ROOT/net/$T-c.json" ] || { echo "record left" >&2; false; }
	[ "$(ip -o link show type veth | grep -c ": $veth@")" = 0 ] || { echo "veth $veth left" >&2; false; }
	# no namespace holder of this data root left
	local p
	for p in $(pgrep -x fc-net); do
		if tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" | grep -qx "FCVM_ROOT=$FCVM_ROOT"; then
			echo "holder $p left" >&2
			false
		fi
	done
	run_fc 0 fc-net down --vm "$T-src"
}
