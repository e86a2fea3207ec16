#!/usr/bin/env bats
# fc-net without a VM: 'fc-net attach' plays the guest behind the VM's TAP
# (it opens the TAP the way a VMM does and copies frames to a TAP inside a
# network namespace this test makes), so published ports, the guest's way
# to the host and its masqueraded egress go through the real TAP, routes
# and nftables rules. All traffic stays on loopback, on the TAPs and in
# namespaces made here; an "outside" namespace behind a veth pair plays
# the world for egress.

load helpers

setup() {
	[ "$(id -u)" = 0 ] || skip "bridged mode needs root"
	command -v python3 >/dev/null || skip "needs python3 for the test servers"
	fc_setup_root
	T="n${BATS_TEST_NUMBER}x$$"
	NSS=()
	PIDS=()
	VMS=()
	VETH=""
	SRV="$BATS_TEST_TMPDIR/srv.py"
	cat >"$SRV" <<'EOF'
# srv.py ADDR PORT [tcp|udp] READYFILE: answer every client with
# "hello <peer address>" (TCP: one line then close; UDP: one datagram back).
import socket, sys
addr, port, proto, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
if proto == "tcp":
    s.listen(16)
open(ready, "w").write("ready\n")
while True:
    if proto == "tcp":
        c, peer = s.accept()
        c.sendall(("hello %s\n" % peer[0]).encode())
        c.close()
    else:
        data, peer = s.recvfrom(2048)
        s.sendto(("hello %s\n" % peer[0]).encode(), peer)
EOF
	SEEN=()
	tables_before=$(count_tables)
}

teardown() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	for v in "${VMS[@]}"; do fc-net down --vm "$v" >/dev/null 2>&1 || true; done
	for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
	[ -n "$VETH" ] && ip link del "$VETH" 2>/dev/null || true
	[ -n "${FCVM_ROOT:-}" ] || return 0
	local left
	left=$(ls "$FCVM_ROOT/net" 2>/dev/null || true)
	assert_eq "$left" "" "no fc-net record left" || return 1
	assert_eq "$(count_taps)" 0 "no TAP left" || return 1
	assert_eq "$(seen_tables)" "" "no nftables table of ours left" || return 1
	leak_check
}

# Ours: the TAPs whose alias names a record in this test's data root (other
# runs on the machine make TAPs too). Tables by name, machine-wide (right
# after a failed up), or those of the TAPs this test saw (seen_tables).
count_taps() {
	ip -o link show type tun 2>/dev/null | grep -cF "alias fcvm-net $(realpath "$FCVM_ROOT")/net/" || true
}
count_tables() { nft list tables 2>/dev/null | grep -c '^table ip fcvm-' || true; }
# drop_orphans: gc --json's output without the orphaned TAPs of other data
# roots it also collected (any run's on this machine).
drop_orphans() { output=$(jq -c '[.[] | select(startswith("orphan:") | not)]' <<<"$output"); }
seen_tables() {
	local t
	for t in "${SEEN[@]}"; do nft list table ip "fcvm-$t" >/dev/null 2>&1 && echo "fcvm-$t"; done
	return 0
}
count_netns() { ip netns list 2>/dev/null | grep -c "^fcnt-$T" || true; }

# up_vm ID ARGS...: fc-net up, the result JSON in $NET.
up_vm() {
	local id=$1
	shift
	run_fc 0 --timeout 30 fc-net up --vm "$id" --owner-pid $$ "$@"
	VMS+=("$id")
	NET=$output
	jq -e . <<<"$NET" >/dev/null
	SEEN+=("$(jq -r .tap <<<"$NET")")
}

# guest ID: a namespace fcnt-$T-ID behind the VM's TAP.
guest() {
	local id=$1 ns="fcnt-$T-$1" ready="$BATS_TEST_TMPDIR/attach-$1"
	ip netns add "$ns"
	NSS+=("$ns")
	fc-net attach --vm "$id" --netns "$ns" --ready-fd 3 3>"$ready" 2>"$BATS_TEST_TMPDIR/attach-$1.log" &
	PIDS+=($!)
	wait_line "$ready" '^ready$' 20 $! || { cat "$BATS_TEST_TMPDIR/attach-$1.log" >&2; return 1; }
}

# serve [NS|-] ADDR PORT PROTO: start srv.py (in namespace NS, or on the host).
serve() {
	local ns=$1 addr=$2 port=$3 proto=$4 ready="$BATS_TEST_TMPDIR/srv-$RANDOM"
	if [ "$ns" = - ]; then
		python3 "$SRV" "$addr" "$port" "$proto" "$ready" 2>>"$BATS_TEST_TMPDIR/srv.log" &
	else
		ip netns exec "$ns" python3 "$SRV" "$addr" "$port" "$proto" "$ready" 2>>"$BATS_TEST_TMPDIR/srv.log" &
	fi
	PIDS+=($!)
	wait_line "$ready" '^ready$' 20 $!
}

# ask [NS|-] ADDR PORT [udp]: one exchange with srv.py; its answer on stdout.
ask() {
	local ns=$1 addr=$2 port=$3 proto=${4:-tcp}
	local -a pre=()
	[ "$ns" = - ] || pre=(ip netns exec "$ns")
	if [ "$proto" = udp ]; then
		# UDP has no retransmission: like any UDP client, ask again a few
		# times (slirp4netns drops the first datagram while it resolves
		# the guest's MAC).
		"${pre[@]}" timeout 10 python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
for i in range(5):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(2048).decode().strip()); break
    except socket.timeout:
        pass' "$addr" "$port"
	else
		"${pre[@]}" timeout 10 bash -c 'exec 3<>/dev/tcp/$0/$1 && head -1 <&3' "$addr" "$port"
	fi
}

@test "published ports reach the guest from the host on the VM's loopback address, TCP and UDP" {
	up_vm "$T-a" -p 8080:80 -p 127.0.0.1::81/udp
	local lo gw g tap
	lo=$(jq -r .loopback_ip <<<"$NET"); gw=$(jq -r .gateway <<<"$NET"); g=$(jq -r .guest_ip <<<"$NET")
	tap=$(jq -r .tap <<<"$NET")
	[[ "$lo" == 127.* ]]
	assert_eq "$(jq -r '.ports[0] | "\(.host_ip):\(.host_port)->\(.guest_port)/\(.proto)"' <<<"$NET")" \
		"$lo:8080->80/tcp" "the first port is published on the VM's loopback address"
	local up=$(jq -r '.ports[1].host_port' <<<"$NET")
	assert_eq "$(jq -r '.ports[1].host_ip' <<<"$NET")" 127.0.0.1 "an explicit host address is kept"
	[ "$up" -gt 0 ]
	assert_contains "$(ip -o link show "$tap")" "$tap" "the TAP exists"
	assert_eq "$(cat /proc/sys/net/ipv4/conf/$tap/route_localnet)" 1 "route_localnet is on for the TAP"
	guest "$T-a"
	serve "fcnt-$T-$T-a" 0.0.0.0 80 tcp
	serve "fcnt-$T-$T-a" 0.0.0.0 81 udp
	run ask - "$lo" 8080
	assert_eq "$output" "hello $gw" "TCP through DNAT reaches the guest, which sees the gateway (127/8 source masqueraded)"
	run ask - 127.0.0.1 "$up" udp
	assert_eq "$output" "hello $gw" "UDP through DNAT reaches the guest"
	run_fc 0 fc-net down --vm "$T-a"
	run ask - "$lo" 8080
	[ "$status" -ne 0 ]
	run ip -o link show "$tap"
	[ "$status" -ne 0 ]
}

@test "two VMs publish the same port, each on its own loopback address" {
	up_vm "$T-a" -p 8080:80
	local a=$NET
	up_vm "$T-b" -p 8080:80
	local b=$NET
	local la lb
	la=$(jq -r .loopback_ip <<<"$a"); lb=$(jq -r .loopback_ip <<<"$b")
	[ "$la" != "$lb" ]
	[ "$(jq -r .subnet <<<"$a")" != "$(jq -r .subnet <<<"$b")" ]
	guest "$T-a"; guest "$T-b"
	serve "fcnt-$T-$T-a" 0.0.0.0 80 tcp
	serve "fcnt-$T-$T-b" 0.0.0.0 80 tcp
	run ask - "$la" 8080
	assert_eq "$output" "hello $(jq -r .gateway <<<"$a")" "VM a answers on its address"
	run ask - "$lb" 8080
	assert_eq "$output" "hello $(jq -r .gateway <<<"$b")" "VM b answers on its address"
}

@test "with --host-loopback the guest reaches the host's 127.0.0.1 at its gateway address" {
	up_vm "$T-a" --host-loopback
	local gw g
	gw=$(jq -r .gateway <<<"$NET"); g=$(jq -r .guest_ip <<<"$NET")
	assert_eq "$(jq -r .host_loopback <<<"$NET")" true "the result says host loopback is reachable"
	guest "$T-a"
	local p=$((20000 + RANDOM % 20000))
	serve - 127.0.0.1 "$p" tcp
	run ask "fcnt-$T-$T-a" "$gw" "$p"
	assert_eq "$output" "hello $g" "gateway:PORT reaches the host's 127.0.0.1:PORT"
}

@test "without --host-loopback the guest reaches a host server on its gateway, not the host's 127.0.0.1" {
	up_vm "$T-a"
	local gw g
	gw=$(jq -r .gateway <<<"$NET"); g=$(jq -r .guest_ip <<<"$NET")
	guest "$T-a"
	local p1=$((20000 + RANDOM % 20000)) p2=$((20000 + RANDOM % 20000))
	[ "$p1" != "$p2" ] || p2=$((p1 + 1))
	serve - "$gw" "$p1" tcp
	run ask "fcnt-$T-$T-a" "$gw" "$p1"
	assert_eq "$output" "hello $g" "the guest reaches a host server on the gateway address"
	serve - 127.0.0.1 "$p2" tcp
	run ask "fcnt-$T-$T-a" "$gw" "$p2"
	[ "$status" -ne 0 ]
	[[ "$output" != hello* ]]
}

@test "DNS: the host's resolvers are handed on; a loopback resolver is reached at the gateway" {
	printf 'search example\nnameserver 192.0.2.53\nnameserver ::1\nnameserver 198.51.100.53\n' \
		>"$BATS_TEST_TMPDIR/resolv.a"
	up_vm "$T-a" --resolv-conf "$BATS_TEST_TMPDIR/resolv.a"
	assert_eq "$(jq -c .dns <<<"$NET")" '["192.0.2.53","198.51.100.53"]' "IPv4 resolvers passed on"
	run_fc 0 fc-net down --vm "$T-a"
	# A resolver on the host's loopback (as systemd-resolved or dnsmasq):
	# the guest asks its gateway, which is DNATed to it.
	printf 'nameserver 127.0.0.1\nnameserver 192.0.2.53\n' >"$BATS_TEST_TMPDIR/resolv.b"
	up_vm "$T-b" --resolv-conf "$BATS_TEST_TMPDIR/resolv.b"
	local gw g
	gw=$(jq -r .gateway <<<"$NET"); g=$(jq -r .guest_ip <<<"$NET")
	assert_eq "$(jq -c .dns <<<"$NET")" "[\"$gw\"]" "the guest's resolver is its gateway"
	guest "$T-b"
	ss -Hlun 'sport = :53' | grep -q . && skip "something already listens on UDP port 53 here"
	serve - 127.0.0.1 53 udp
	serve - 127.0.0.1 53 tcp
	run ask "fcnt-$T-$T-b" "$gw" 53 udp
	assert_eq "$output" "hello $g" "UDP port 53 on the gateway reaches the host's loopback resolver"
	run ask "fcnt-$T-$T-b" "$gw" 53
	assert_eq "$output" "hello $g" "so does TCP port 53"
}

@test "egress is masqueraded: a server outside sees the host, not the guest" {
	up_vm "$T-a"
	local g; g=$(jq -r .guest_ip <<<"$NET")
	guest "$T-a"
	# The world: a namespace behind a veth pair, on a /30 of its own.
	local out="fcnt-$T-out" hv="fcv${T: -8}" o=10.251.$((RANDOM % 250)).
	ip netns add "$out"; NSS+=("$out")
	ip link add "$hv" type veth peer name eth0 netns "$out"; VETH=$hv
	ip addr add "${o}1/30" dev "$hv"; ip link set "$hv" up
	ip -n "$out" addr add "${o}2/30" dev eth0; ip -n "$out" link set eth0 up; ip -n "$out" link set lo up
	serve "$out" 0.0.0.0 7000 tcp
	run ask "fcnt-$T-$T-a" "${o}2" 7000
	assert_eq "$output" "hello ${o}1" "the outside sees the host's address (masquerade), not $g"
}

@test "-p forms: podman's are accepted, bad ones refused with one clear line and nothing made" {
	up_vm "$T-a" -p 8080 -p 8081:80 -p 127.0.0.1:8082:80 -p 8083:53/udp -p 8000-8002:9000-9002 -p 127.0.0.1::90
	assert_eq "$(jq -c '[.ports[1:7][] | [.host_port, .guest_port, .proto]]' <<<"$NET")" \
		'[[8081,80,"tcp"],[8082,80,"tcp"],[8083,53,"udp"],[8000,9000,"tcp"],[8001,9001,"tcp"],[8002,9002,"tcp"]]' \
		"HOSTPORT:GUESTPORT, HOSTIP:..., /udp and ranges map as podman does"
	[ "$(jq '.ports[0].guest_port' <<<"$NET")" = 8080 ]
	[ "$(jq '.ports[0].host_port' <<<"$NET")" -gt 0 ]
	[ "$(jq -r '.ports[7].host_ip' <<<"$NET")" = 127.0.0.1 ]
	local bad
	for bad in 'x' '0' '65536' '80:' '1:2:3:4' '8000-8002:80' '90-80' '80/sctp' '[::1]:80:80' \
		'127.0.0.1:80' 'a.b.c.d:80:80' '-5'; do
		run_fc 2 fc-net up --vm "$T-bad" -p "$bad"
		assert_contains "$output" "fc-net: invalid port" "-p '$bad' is refused naming the problem"
		[ "$(echo "$output" | wc -l)" -eq 1 ] || { echo "more than one line for '$bad': $output" >&2; false; }
	done
	[ ! -e "$FCVM_ROOT/net/$T-bad.json" ]
}

@test "a host port already taken, or published by another VM, is refused before anything is made" {
	local p=$((20000 + RANDOM % 20000))
	serve - 127.0.0.1 "$p" tcp
	local taps=$(count_taps) tables=$(count_tables)
	run_fc 1 fc-net up --vm "$T-a" --owner-pid $$ -p "127.0.0.1:$p:80"
	assert_contains "$output" "host port 127.0.0.1:$p/tcp is already in use" "a listener is detected"
	assert_eq "$(count_taps)" "$taps" "no TAP made"
	assert_eq "$(count_tables)" "$tables" "no table made"
	[ ! -e "$FCVM_ROOT/net/$T-a.json" ]
	up_vm "$T-b" -p "127.0.0.1:$((p + 1)):80"
	run_fc 1 fc-net up --vm "$T-c" --owner-pid $$ -p "127.0.0.1:$((p + 1)):81"
	assert_contains "$output" "is already published by VM '$T-b'" "a port DNATed for another VM is detected"
	run_fc 1 fc-net up --vm "$T-b" --owner-pid $$
	assert_contains "$output" "already has a network" "one network per VM"
	[ ! -e "$FCVM_ROOT/net/$T-c.json" ]
}

@test "pool exhausted: a clear error and nothing half-made" {
	local pool="10.213.$((200 + RANDOM % 50)).$((4 * (RANDOM % 60)))/30"
	up_vm "$T-a" --pool "$pool"
	local taps=$(count_taps) tables=$(count_tables)
	run_fc 1 fc-net up --vm "$T-b" --owner-pid $$ --pool "$pool"
	assert_contains "$output" "address pool $pool is exhausted" "the error names the pool"
	assert_eq "$(count_taps)" "$taps" "no TAP made"
	assert_eq "$(count_tables)" "$tables" "no table made"
	[ ! -e "$FCVM_ROOT/net/$T-b.json" ]
	run_fc 0 fc-net down --vm "$T-a"
	up_vm "$T-b" --pool "$pool"
	assert_eq "$(jq -r .subnet <<<"$NET")" "$pool" "down released the subnet"
}

@test "a failure in the nftables step undoes the TAP and the record" {
	up_vm "$T-a"
	local tap; tap=$(jq -r .tap <<<"$NET")
	run_fc 0 fc-net down --vm "$T-a"
	# The same id gets the same TAP name; a table of that name already there
	# makes the nftables batch fail after the TAP was made.
	nft add table ip "fcvm-$tap"
	local taps=$(count_taps)
	run_fc 1 fc-net up --vm "$T-a" --owner-pid $$
	nft delete table ip "fcvm-$tap"
	assert_contains "$output" "create nftables table 'fcvm-$tap'" "the failing step is named"
	assert_contains "$output" "File exists" "with the kernel's reason"
	run ip -o link show "$tap"
	[ "$status" -ne 0 ]
	assert_eq "$(count_taps)" "$taps" "the TAP was removed again"
	[ ! -e "$FCVM_ROOT/net/$T-a.json" ]
}

@test "a record naming objects fc-net does not make is refused by down and skipped by gc" {
	local victim="fcnt-victim-$T"
	nft add table ip "$victim"
	mkdir -p "$FCVM_ROOT/net"
	jq -n --arg id "$T-evil" --arg t "$victim" \
		'{version: 1, id: $id, mode: "bridged", status: "up", owner_pid: 999999, owner_start: 1,
		  tap: "eth0", table: $t}' >"$FCVM_ROOT/net/$T-evil.json"
	run_fc 1 fc-net down --vm "$T-evil"
	assert_contains "$output" "'tap' is not a name fc-net makes" "the record is refused"
	run_fc 0 fc-net gc --json
	drop_orphans
	assert_eq "$output" "[]" "gc skips it"
	run nft list table ip "$victim"
	local st=$status
	nft delete table ip "$victim"
	rm "$FCVM_ROOT/net/$T-evil.json"
	assert_eq "$st" 0 "the table it named is untouched"
	ip -o link show eth0 >/dev/null
}

@test "gc removes what belongs to owners that died (kill -9) and keeps the rest; ls --json lists" {
	sleep 600 &
	local victim=$!
	PIDS+=($victim)
	run_fc 0 fc-net up --vm "$T-dead" --owner-pid "$victim" -p 8080:80
	VMS+=("$T-dead")
	local dtap; dtap=$(jq -r .tap <<<"$output")
	up_vm "$T-live"
	run_fc 0 fc-net ls --json
	assert_eq "$(jq -r '[.[] | "\(.id)=\(.live)"] | join(" ")' <<<"$output")" \
		"$T-dead=true $T-live=true" "ls lists both as live"
	kill -9 "$victim"; wait "$victim" 2>/dev/null || true
	run_fc 0 fc-net ls --json
	assert_eq "$(jq -r '[.[] | "\(.id)=\(.live)"] | join(" ")' <<<"$output")" \
		"$T-dead=false $T-live=true" "the dead owner's network shows as dead"
	run_fc 0 fc-net gc -n
	assert_contains "$output" "would remove $T-dead" "gc -n names it"
	[ -e "$FCVM_ROOT/net/$T-dead.json" ]
	run_fc 0 fc-net gc --json
	drop_orphans
	assert_eq "$output" "[\"$T-dead\"]" "gc removed exactly the dead one"
	run ip -o link show "$dtap"
	[ "$status" -ne 0 ]
	run nft list table ip "fcvm-$dtap"
	[ "$status" -ne 0 ]
	run_fc 0 fc-net ls --json
	assert_eq "$(jq -r '[.[].id] | join(" ")' <<<"$output")" "$T-live" "the live one stays"
}

@test "gc collects the TAP and table of a VM whose data root was removed, and nothing live" {
	local r2=$BATS_TEST_TMPDIR/root2 otap
	mkdir -p "$r2"
	FCVM_ROOT=$r2 fc-setup storage --dir "$r2" --without-reflink >/dev/null 2>&1
	run_fc 0 --timeout 30 env FCVM_ROOT="$r2" fc-net up --vm "$T-o" --owner-pid $$
	otap=$(jq -r .tap <<<"$output")
	assert_contains "$(ip -o link show "$otap")" "alias fcvm-net $(realpath "$r2")/net/$T-o.json" "the TAP names its record"
	up_vm "$T-live"
	rm -rf "$r2"	# its owner (this shell) lives on: only the record says whose it is
	run_fc 0 fc-net gc -n
	assert_contains "$output" "would remove orphaned tap $otap" "a dry run names it"
	ip -o link show "$otap" >/dev/null
	run_fc 0 fc-net gc --json
	assert_contains "$output" "\"orphan:$otap\"" "gc reports it"
	drop_orphans
	assert_eq "$output" "[]" "the live VM of this root is kept"
	run ip -o link show "$otap"
	[ "$status" -ne 0 ]
	run nft list table ip "fcvm-$otap"
	[ "$status" -ne 0 ]
	ip -o link show "$(jq -r .tap <<<"$NET")" >/dev/null
}

@test "down and gc leave zero taps, tables and namespaces (counted before and after)" {
	local ns_before; ns_before=$(count_netns)
	up_vm "$T-a" -p 8080:80
	up_vm "$T-b" -p 8080:80
	guest "$T-a"; guest "$T-b"
	[ "$(count_taps)" -eq 2 ]
	[ "$(seen_tables | wc -l)" -eq 2 ]
	local p
	for p in "${PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	PIDS=()
	for n in "${NSS[@]}"; do ip netns del "$n"; done
	NSS=()
	run_fc 0 fc-net down --vm "$T-a"
	run_fc 0 fc-net down --vm "$T-a"	# idempotent
	# b's owner is this shell (alive): gc keeps it; down removes it.
	run_fc 0 fc-net gc --json
	drop_orphans
	assert_eq "$output" "[]" "gc leaves a live owner's network alone"
	run_fc 0 fc-net down --vm "$T-b"
	assert_eq "$(count_taps)" 0 "no TAP left"
	assert_eq "$(seen_tables)" "" "no table left"
	assert_eq "$(count_netns)" "$ns_before" "no namespace left"
}

# ---- rootless: as an ordinary user (nobody), no privilege used -------------

# rl_setup: a data root the user owns, and /dev/net/tun with the 0666 mode a
# normal distro gives it (this machine has 0600).
rl_setup() {
	command -v slirp4netns >/dev/null || skip "slirp4netns not installed"
	command -v setpriv >/dev/null || skip "setpriv not installed"
	RL_ROOT=$(mktemp -d /tmp/fcnet-rl.XXXXXX)
	chmod 755 "$RL_ROOT"
	fc-setup storage --dir "$RL_ROOT" --without-reflink >/dev/null 2>&1
	chown -R 65534:65534 "$RL_ROOT"
	export FCVM_ROOT=$RL_ROOT
	chmod 0666 /dev/net/tun
	cp "$SRV" "$RL_ROOT/srv.py"; chmod 644 "$RL_ROOT/srv.py"
	SRV=$RL_ROOT/srv.py
	rl_before=$(count_rl_procs)
}

# The ordinary user every rootless command runs as (word-split on purpose).
AS_USER="setpriv --reuid=65534 --regid=65534 --clear-groups"

# slirp4netns processes and namespace holders of this data root.
count_rl_procs() {
	local p n=0
	for p in $(pgrep -f 'slirp4netns|fc-net up' 2>/dev/null); do
		tr '\0' '\n' 2>/dev/null </proc/$p/environ | grep -qx "FCVM_ROOT=$FCVM_ROOT" && n=$((n + 1))
	done
	echo "$n"
}

# ended PID: the process has ended within 5 s (a zombie that its new
# parent has not reaped yet counts: it runs nothing and holds nothing).
ended() {
	local i
	for ((i = 0; i < 50; i++)); do
		[ -e "/proc/$1" ] || return 0
		grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "process $1 still runs: $(tr '\0' ' ' </proc/$1/cmdline 2>/dev/null)" >&2
	return 1
}

rl_teardown_check() {
	assert_eq "$(count_rl_procs)" "$rl_before" "no slirp4netns or namespace holder left" || return 1
	rm -rf "$RL_ROOT"
}

# rl_up ID ARGS...: fc-net up --mode rootless as the user; result in $NET.
rl_up() {
	local id=$1
	shift
	run_fc 0 --timeout 30 $AS_USER fc-net up --vm "$id" --mode rootless "$@"
	VMS+=("$id")
	NET=$output
	jq -e . <<<"$NET" >/dev/null
	SEEN+=("$(jq -r .tap <<<"$NET")")
}

# rl_guest ID PORT PROTO...: the guest (as the user) serving srv.py on
# each PORT/PROTO pair, in the background until killed; returns once every
# server listens (srv.py writes its ready file then).
rl_guest() {
	local id=$1 ready=$RL_ROOT/ready-$RANDOM script="" n=0 i
	shift
	while [ $# -gt 0 ]; do
		script+="python3 $SRV 0.0.0.0 $1 $2 $ready.$1 & "
		n=$((n + 1))
		shift 2
	done
	$AS_USER fc-net attach --vm "$id" -- sh -c "${script}wait" 2>"$RL_ROOT/attach.log" &
	PIDS+=($!)
	for ((i = 0; i < 200; i++)); do
		[ "$(ls "$ready".* 2>/dev/null | wc -l)" -eq "$n" ] && return 0
		sleep 0.1
	done
	cat "$RL_ROOT/attach.log" >&2
	return 1
}

@test "rootless: published ports (TCP, UDP) reach the guest, as an ordinary user" {
	rl_setup
	local owner
	sleep 600 & owner=$!; PIDS+=($owner)
	run_fc 1 $AS_USER fc-net up --vm "$T-r" --mode rootless --owner-pid "$owner" -p 81/udp
	assert_contains "$output" "UDP port 81 needs --host-loopback" "UDP without host loopback is refused (slirp4netns would drop the replies)"
	rl_up "$T-r" --owner-pid "$owner" --host-loopback -p 8080:80 -p 127.0.0.1::81/udp
	local lo up
	lo=$(jq -r .loopback_ip <<<"$NET"); up=$(jq -r '.ports[1].host_port' <<<"$NET")
	assert_eq "$(jq -r '[.guest_ip, .gateway, .prefix, .dns[0]] | join(" ")' <<<"$NET")" \
		"10.0.2.15 10.0.2.2 24 10.0.2.3" "slirp4netns's addressing"
	local holder; holder=$(jq -r .netns.pid "$FCVM_ROOT/net/$T-r.json")
	assert_eq "$(stat -c %u /proc/$holder)" 65534 "the namespace holder runs as the user"
	rl_guest "$T-r" 80 tcp 81 udp
	run ask - "$lo" 8080
	assert_eq "$output" "hello 10.0.2.2" "TCP on the VM's loopback address reaches the guest through slirp4netns"
	run ask - 127.0.0.1 "$up" udp
	assert_eq "$output" "hello 10.0.2.2" "UDP reaches the guest"
	run_fc 0 $AS_USER fc-net down --vm "$T-r"
	run ask - "$lo" 8080
	[ "$status" -ne 0 ]
	ended "$holder"
	rl_teardown_check
}

@test "rootless: the guest reaches host loopback (--host-loopback) and the outside; not host loopback without" {
	rl_setup
	local p=$((20000 + RANDOM % 20000))
	serve - 127.0.0.1 "$p" tcp
	local out="fcnt-$T-out" hv="fcv${T: -8}" o=10.252.$((RANDOM % 250)).
	ip netns add "$out"; NSS+=("$out")
	ip link add "$hv" type veth peer name eth0 netns "$out"; VETH=$hv
	ip addr add "${o}1/30" dev "$hv"; ip link set "$hv" up
	ip -n "$out" addr add "${o}2/30" dev eth0; ip -n "$out" link set eth0 up
	serve "$out" 0.0.0.0 7000 tcp
	rl_up "$T-h" --host-loopback --owner-pid $$
	local q='exec 3<>/dev/tcp/$0/$1 && head -1 <&3'
	run_fc 0 --timeout 30 $AS_USER fc-net attach --vm "$T-h" -- timeout 10 bash -c "$q" 10.0.2.2 "$p"
	assert_eq "$output" "hello 127.0.0.1" "10.0.2.2:PORT is the host's 127.0.0.1:PORT"
	run_fc 0 --timeout 30 $AS_USER fc-net attach --vm "$T-h" -- timeout 10 bash -c "$q" "${o}2" 7000
	assert_eq "$output" "hello ${o}1" "egress leaves from the host's own address"
	run_fc 0 $AS_USER fc-net down --vm "$T-h"
	rl_up "$T-n" --owner-pid $$
	run $AS_USER fc-net attach --vm "$T-n" -- timeout 10 bash -c "$q" 10.0.2.2 "$p"
	[[ "$output" != hello* ]]
	run_fc 0 $AS_USER fc-net down --vm "$T-n"
	rl_teardown_check
}

@test "rootless: gc after the owner is killed leaves no slirp4netns, holder or record" {
	rl_setup
	local owner
	$AS_USER sleep 600 & owner=$!; PIDS+=($owner)
	rl_up "$T-g" --owner-pid "$owner" -p 8080:80
	local holder; holder=$(jq -r .netns.pid "$FCVM_ROOT/net/$T-g.json")
	[ "$(count_rl_procs)" -eq $((rl_before + 2)) ]
	kill -9 "$owner"; wait "$owner" 2>/dev/null || true
	# The holder follows its owner at once; slirp4netns follows the holder.
	local i
	for ((i = 0; i < 100; i++)); do [ "$(count_rl_procs)" -eq "$rl_before" ] && break; sleep 0.1; done
	assert_eq "$(count_rl_procs)" "$rl_before" "holder and slirp4netns ended with the owner"
	run_fc 0 $AS_USER fc-net gc --json
	drop_orphans
	assert_eq "$output" "[\"$T-g\"]" "gc removed the dead owner's record"
	[ -z "$(ls "$FCVM_ROOT/net")" ]
	rl_teardown_check
}

# fake_vm_record ID PID: a minimal live state record for VM ID owned by PID
# (what fc-boot writes while starting), readable by the user.
fake_vm_record() {
	mkdir -p "$FCVM_ROOT/state"
	jq -n --arg id "$1" --argjson pid "$2" --argjson st "$(awk '{print $22}' /proc/$2/stat)" \
		'{version: 1, id: $id, name: $id, process_type: "vm", pid: $pid, pid_start: $st,
		  status: "starting", created: "2026-12-01T00:00:00Z"}' >"$FCVM_ROOT/state/$1.json"
	chmod 644 "$FCVM_ROOT/state/$1.json"
}

@test "ownership passes to the VM's live state record: gc and the rootless holder keep the network" {
	rl_setup
	local first vm
	sleep 600 & first=$!; PIDS+=($first)
	sleep 600 & vm=$!; PIDS+=($vm)
	fake_vm_record "$T-o" "$vm"
	rl_up "$T-o" --owner-pid "$first" -p 8080:80
	local lo holder
	lo=$(jq -r .loopback_ip <<<"$NET"); holder=$(jq -r .netns.pid "$FCVM_ROOT/net/$T-o.json")
	rl_guest "$T-o" 80 tcp
	kill -9 "$first"; wait "$first" 2>/dev/null || true
	sleep 1
	[ -e "/proc/$holder" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$holder/status"
	run ask - "$lo" 8080
	assert_eq "$output" "hello 10.0.2.2" "the network outlives its first owner while the VM's record is live"
	run_fc 0 $AS_USER fc-net gc --json
	drop_orphans
	assert_eq "$output" "[]" "gc keeps it"
	kill -9 "$vm"; wait "$vm" 2>/dev/null || true
	ended "$holder"
	run_fc 0 $AS_USER fc-net gc --json
	drop_orphans
	assert_eq "$output" "[\"$T-o\"]" "with the VM's owner gone too, gc removes it"
	rm -f "$FCVM_ROOT/state/$T-o.json"
	rl_teardown_check
}

@test "rootless: slirp4netns missing, no user namespaces, a taken port: one clear line, nothing made" {
	rl_setup
	local nobin="$RL_ROOT/nobin"
	mkdir -p "$nobin"
	ln -s "$FCVM_BUILD/bin/fc-net" "$nobin/fc-net"
	run_fc 1 $AS_USER env PATH="$nobin" fc-net up --vm "$T-x" --mode rootless --owner-pid $$
	assert_contains "$output" "slirp4netns not found" "a missing slirp4netns is named"
	run_fc 1 $AS_USER unshare --user --map-root-user sh -c \
		'echo 0 >/proc/sys/user/max_user_namespaces && exec "$0" up --vm "$1" --mode rootless --owner-pid "$2"' \
		"$(command -v fc-net)" "$T-x" $$
	assert_contains "$output" "user namespaces are not available here" "missing user namespaces are named"
	[ "$(echo "$output" | wc -l)" -eq 1 ]
	local p=$((20000 + RANDOM % 20000))
	serve - 127.0.0.1 "$p" tcp
	run_fc 1 $AS_USER fc-net up --vm "$T-x" --mode rootless --owner-pid $$ -p "127.0.0.1:$p:80"
	assert_contains "$output" "host port 127.0.0.1:$p/tcp is already in use" "a taken port is detected first"
	[ -z "$(ls "$FCVM_ROOT/net")" ]
	rl_teardown_check
}
