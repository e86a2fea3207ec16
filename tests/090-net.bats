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
	taps_before=$(count_taps)
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
	assert_eq "$(count_taps)" "$taps_before" "no TAP left" || return 1
	assert_eq "$(count_tables)" "$tables_before" "no nftables table of ours left" || return 1
	leak_check
}

count_taps() { ip -o link show type tun 2>/dev/null | grep -c ': fc[0-9a-f]\{8\}[:@]' || true; }
count_tables() { nft list tables 2>/dev/null | grep -c '^table ip fcvm-' || true; }
count_netns() { ip netns list 2>/dev/null | grep -c "^fcnt-$T" || true; }

# up_vm ID ARGS...: fc-net up, the result JSON in $NET.
up_vm() {
	local id=$1
	shift
	run_fc 0 --timeout 30 fc-net up --vm "$id" --owner-pid $$ "$@"
	VMS+=("$id")
	NET=$output
	jq -e . <<<"$NET" >/dev/null
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
		"${pre[@]}" timeout 10 python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b"x", (sys.argv[1], int(sys.argv[2]))); print(s.recv(2048).decode().strip())' "$addr" "$port"
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
	assert_eq "$output" "[\"$T-dead\"]" "gc removed exactly the dead one"
	run ip -o link show "$dtap"
	[ "$status" -ne 0 ]
	run nft list table ip "fcvm-$dtap"
	[ "$status" -ne 0 ]
	run_fc 0 fc-net ls --json
	assert_eq "$(jq -r '[.[].id] | join(" ")' <<<"$output")" "$T-live" "the live one stays"
}

@test "down and gc leave zero taps, tables and namespaces (counted before and after)" {
	local ns_before; ns_before=$(count_netns)
	up_vm "$T-a" -p 8080:80
	up_vm "$T-b" -p 8080:80
	guest "$T-a"; guest "$T-b"
	[ "$(count_taps)" -eq $((taps_before + 2)) ]
	[ "$(count_tables)" -eq $((tables_before + 2)) ]
	local p
	for p in "${PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	PIDS=()
	for n in "${NSS[@]}"; do ip netns del "$n"; done
	NSS=()
	run_fc 0 fc-net down --vm "$T-a"
	run_fc 0 fc-net down --vm "$T-a"	# idempotent
	# b's owner is this shell (alive): gc keeps it; down removes it.
	run_fc 0 fc-net gc --json
	assert_eq "$output" "[]" "gc leaves a live owner's network alone"
	run_fc 0 fc-net down --vm "$T-b"
	assert_eq "$(count_taps)" "$taps_before" "no TAP left"
	assert_eq "$(count_tables)" "$tables_before" "no table left"
	assert_eq "$(count_netns)" "$ns_before" "no namespace left"
}
