#!/usr/bin/env bats
# Networking end to end under fc-qemu: fcvm podman run --network bridged |
# rootless | none with -p. fc-net makes the TAP (or the rootless holder),
# fc-boot hands it to the VMM (entering the holder's namespaces when
# rootless), fc-agent configures eth0, the route and resolv.conf from the
# plan, and podman in the guest runs the container with the guest's network.
# All traffic stays on loopback and on the TAPs / namespaces made here: the
# "host" servers (HTTP, DNS) listen on loopback addresses only.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	export IMG="$BATS_FILE_TMPDIR/busybox.oci.tar"
	"$BATS_TEST_DIRNAME/lib/mkimage" "$IMG" --name localhost/fcvm-test:latest >/dev/null
}

setup() {
	[ "$(id -u)" = 0 ] || skip "bridged mode needs root"
	command -v python3 >/dev/null || skip "needs python3 for the test servers"
	command -v curl >/dev/null || skip "needs curl"
	fc_vm_root net
	PIDS=()
	TAPS=()
}

teardown() {
	local p r=0 t
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	# Whatever a failed test left running: stop it, so the checks below
	# test the normal path's leftovers only on a passing test.
	for p in $(fc-state ls --json 2>/dev/null | jq -r '.[].id'); do fcvm stop "$p" >/dev/null 2>&1 || true; done
	fc-net gc >/dev/null 2>&1 || true
	no_net_left || r=1
	leak_check || r=1
	rm -rf "$FCVM_ROOT"
	return $r
}

# no_net_left: no fc-net record, and none of the TAPs / nft tables / rootless
# holders this test saw still exist.
no_net_left() {
	local t left
	left=$(ls "$FCVM_ROOT/net" 2>/dev/null || true)
	assert_eq "$left" "" "no fc-net record or socket left in $FCVM_ROOT/net" || return 1
	for t in "${TAPS[@]}"; do
		[ ! -e "/sys/class/net/$t" ] || { echo "TAP $t left" >&2; return 1; }
		if nft list table ip "fcvm-$t" >/dev/null 2>&1; then echo "nft table fcvm-$t left" >&2; return 1; fi
	done
	if pgrep -f "slirp4netns.*$FCVM_ROOT" >/dev/null; then echo "slirp4netns left" >&2; return 1; fi
}

# free_port: a TCP port nothing listens on (loopback only is used).
free_port() {
	local p
	for ((;;)); do
		p=$((20000 + RANDOM % 30000))
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return 0; }
	done
}

# httpd_cmd TEXT: the container command - busybox httpd serving TEXT as
# /index.html on port 8080.
httpd_cmd() {
	printf 'busybox mkdir -p /www && echo %q > /www/index.html && exec busybox httpd -f -p 8080 -h /www' "$1"
}

# run_httpd NAME TEXT ARGS...: fcvm podman run -d of the httpd; records the
# VM's TAP (bridged) for the leak checks.
run_httpd() {
	local name=$1 text=$2
	shift 2
	run_fc 0 --timeout 300 fcvm podman run -d --rm --name "$name" "$@" "$IMG" sh -c "$(httpd_cmd "$text")"
	local tap
	tap=$(fc-state get --field network.tap "$name") || { echo "no network in the record of $name" >&2; return 1; }
	[ "$tap" = tap0 ] || TAPS+=("$tap")
}

# get_until URL WANT: curl URL until the body is WANT (bounded: the guest's
# httpd may take a while to start under TCG).
get_until() {
	local url=$1 want=$2 i body=""
	for ((i = 0; i < 120; i++)); do
		body=$(curl -fsS --max-time 5 "$url" 2>/dev/null) && [ "$body" = "$want" ] && return 0
		sleep 1
	done
	echo "GET $url: got '$body', want '$want'" >&2
	return 1
}

@test "net-vm: bridged -p 127.0.0.1:PORT:8080 answers curl with the file's content; ls shows it; stop removes it all" {
	local port; port=$(free_port)
	run_httpd web1 "hello over the TAP" --network bridged -p "127.0.0.1:$port:8080"
	get_until "http://127.0.0.1:$port/index.html" "hello over the TAP"
	run_fc 0 fcvm ls
	assert_contains "$output" "127.0.0.1:$port->8080/tcp" "fcvm ls shows the published port"
	run_fc 0 fcvm ls --json
	assert_eq "$(jq -r '.[0].network.mode' <<<"$output")" bridged "the record's network is fc-net's result"
	[ -f "$FCVM_ROOT/net/$(fc-state get --field id web1).json" ]
	run_fc 0 fcvm stop web1
	no_net_left
	run -7 curl -fsS --max-time 5 "http://127.0.0.1:$port/"	# 7: nothing listens any more
}

@test "net-vm: two VMs publish the same guest port on their own loopback addresses" {
	local port; port=$(free_port)
	run_httpd a "from a" -p "$port:8080"
	run_httpd b "from b" -p "$port:8080"
	local la lb
	la=$(fc-state get --field network.loopback_ip a)
	lb=$(fc-state get --field network.loopback_ip b)
	[[ "$la" =~ ^127\. ]] && [[ "$lb" =~ ^127\. ]]
	[ "$la" != "$lb" ] || { echo "both VMs got $la" >&2; false; }
	get_until "http://$la:$port/" "from a"
	get_until "http://$lb:$port/" "from b"
	run_fc 0 fcvm ls
	assert_contains "$output" "$la:$port->8080/tcp" "a's address in ls"
	assert_contains "$output" "$lb:$port->8080/tcp" "b's address in ls"
	run_fc 0 fcvm stop a
	run_fc 0 fcvm stop b
	no_net_left
}

@test "net-vm: the container resolves a name and fetches from a server on the host (--host-loopback)" {
	# A test resolver on the host's 127.0.0.1:53 (fc-net DNATs the guest's
	# gateway:53 to a loopback first resolver) and an HTTP server on the
	# host's loopback, which --host-loopback makes the guest's gateway.
	ss -Hlun "sport = :53" | grep -q . && skip "something listens on port 53 here"
	local port; port=$(free_port)
	mkdir -p "$BATS_TEST_TMPDIR/www"
	echo "from the host" >"$BATS_TEST_TMPDIR/www/f.txt"
	python3 -m http.server --bind 127.0.0.1 --directory "$BATS_TEST_TMPDIR/www" "$port" \
		>/dev/null 2>&1 3>&- &
	PIDS+=($!)
	cat >"$BATS_TEST_TMPDIR/dns.py" <<'EOF'
# dns.py READY: A records for *.fcvm.test on 127.0.0.1:53, NXDOMAIN else.
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[1], "w").write("ready\n")
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace")); i += 1 + q[i]
    name, qend = ".".join(labels).lower(), i + 5
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0] if qend <= len(q) else 0
    ok = name == "web.fcvm.test"
    ans = qtype == 1 and ok
    hdr = q[:2] + struct.pack("!HHHHH", 0x8180 if ok else 0x8183, 1, 1 if ans else 0, 0, 0)
    r = hdr + q[12:qend]
    if ans:
        r += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.77")
    s.sendto(r, peer)
EOF
	python3 "$BATS_TEST_TMPDIR/dns.py" "$BATS_TEST_TMPDIR/dns.ready" 3>&- &
	PIDS+=($!)
	wait_line "$BATS_TEST_TMPDIR/dns.ready" ready 10 "${PIDS[-1]}"
	echo "nameserver 127.0.0.1" >"$BATS_TEST_TMPDIR/resolv.conf"
	FCVM_RESOLV_CONF="$BATS_TEST_TMPDIR/resolv.conf" \
		run_fc 0 --timeout 300 fcvm podman run --rm --host-loopback "$IMG" sh -c "
		gw=\$(busybox ip route | busybox awk '/^default/ { print \$3 }')
		echo gw=\$gw
		busybox nslookup web.fcvm.test
		busybox wget -q -O - http://\$gw:$port/f.txt"
	assert_contains "$output" "192.0.2.77" "the name resolved through the host's test resolver"
	assert_contains "$output" "from the host" "the file fetched from the host's loopback server"
	no_net_left
}

@test "net-vm: --network none: the container has no network but lo" {
	run_fc 0 --timeout 300 fcvm podman run --rm --network none "$IMG" sh -c 'busybox ip -o link | busybox wc -l'
	assert_eq "$output" 1 "only lo"
	assert_eq "$(ls "$FCVM_ROOT/net" 2>/dev/null)" "" "no fc-net record made"
}

@test "net-vm: rootless (as root): -p reaches the httpd through slirp4netns, stop removes the holder" {
	command -v slirp4netns >/dev/null || skip "slirp4netns is not installed"
	local port; port=$(free_port)
	run_httpd r1 "hello via slirp4netns" --network rootless -p "127.0.0.1:$port:8080"
	assert_eq "$(fc-state get --field network.mode r1)" rootless "rootless network in the record"
	local holder; holder=$(fc-state get --field network.holder_pid r1)
	get_until "http://127.0.0.1:$port/" "hello via slirp4netns"
	run_fc 0 fcvm stop r1
	no_net_left
	local i
	for ((i = 0; i < 50; i++)); do kill -0 "$holder" 2>/dev/null || break; sleep 0.2; done
	if kill -0 "$holder" 2>/dev/null; then echo "holder $holder still runs" >&2; false; fi
}

@test "net-vm: bad network arguments are refused with exit 125 before anything is made" {
	run_fc 125 fcvm podman run --network bogus "$IMG" true
	assert_contains "$output" "invalid --network 'bogus'" "the mode is named"
	run_fc 125 fcvm podman run -p 80:abc "$IMG" true
	assert_contains "$output" "invalid -p '80:abc'" "the -p is named"
	run_fc 125 fcvm podman run --network none -p 8080 "$IMG" true
	assert_contains "$output" "-p needs a network" "-p without a network"
	# fc-net's own refusals (here: a range of different lengths) stop the run too.
	run_fc 125 --timeout 120 fcvm podman run -p 8000-8002:80-81 "$IMG" true
	assert_contains "$output" "fc-net" "fc-net says why"
	assert_eq "$(ls "$FCVM_ROOT/vm-disks" 2>/dev/null)" "" "no VM directory left"
	assert_eq "$(ls "$FCVM_ROOT/net" 2>/dev/null)" "" "no network left"
}

# start_k1 PORT: a foreground fcvm run of the httpd as k1, in the
# background ($FCVM_PID); waits until it answers.
start_k1() {
	local port=$1 i tap=""
	fcvm podman run --name k1 -p "127.0.0.1:$port:8080" "$IMG" sh -c "$(httpd_cmd killed)" \
		>/dev/null 2>&1 3>&- &
	FCVM_PID=$!
	for ((i = 0; i < 300; i++)); do
		tap=$(fc-state get --field network.tap k1 2>/dev/null) && break
		sleep 0.5
	done
	[ -n "$tap" ] || { echo "k1 never got a record with a network" >&2; return 1; }
	TAPS+=("$tap")
	K1_ID=$(fc-state get --field id k1)
	get_until "http://127.0.0.1:$port/" killed
}

@test "net-vm: SIGKILL of fcvm: the network goes with the VM (fcvm's network janitor)" {
	local port; port=$(free_port)
	start_k1 "$port"
	[ -f "$FCVM_ROOT/net/$K1_ID.json" ]
	kill -KILL "$FCVM_PID"
	wait "$FCVM_PID" 2>/dev/null || true
	local i
	for ((i = 0; i < 150; i++)); do [ -e "$FCVM_ROOT/net/$K1_ID.json" ] || break; sleep 0.2; done
	no_net_left
}

@test "net-vm: SIGKILL of fcvm and of its network janitor: fcvm gc removes the network" {
	local port; port=$(free_port)
	start_k1 "$port"
	local nj; nj=$(pgrep -f "_netjanitor $K1_ID ")
	[ -n "$nj" ] || { echo "no network janitor for $K1_ID" >&2; false; }
	kill -KILL $nj "$FCVM_PID"
	wait "$FCVM_PID" 2>/dev/null || true
	# The VM dies with fcvm (--die-with-parent); its network stays.
	local i
	for ((i = 0; i < 100; i++)); do fc-state get k1 >/dev/null 2>&1 || break; sleep 0.2; done
	sleep 2
	[ -f "$FCVM_ROOT/net/$K1_ID.json" ] || { echo "the network went without gc" >&2; false; }
	run_fc 0 fcvm gc
	assert_contains "$output" "$K1_ID" "fcvm gc names the network it removed"
	no_net_left
}

@test "net-vm: rootless as an ordinary user (nobody): the default network, -p, curl, stop" {
	command -v slirp4netns >/dev/null || skip "slirp4netns is not installed"
	command -v setpriv >/dev/null || skip "setpriv is not installed"
	# What root does once (fcvm(1)): a data root the user owns, and
	# /dev/net/tun with the 0666 mode a normal distribution gives it.
	chmod 0666 /dev/net/tun
	mkdir -p "$FCVM_ROOT/home"
	cp "$IMG" "$FCVM_ROOT/img.tar"
	chown -R 65534:65534 "$FCVM_ROOT"
	local -a as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups
		env HOME="$FCVM_ROOT/home" PATH="$PATH" FCVM_ROOT="$FCVM_ROOT" FCVM_VMM=fc-qemu)
	local port; port=$(free_port)
	run_fc 0 --timeout 300 "${as_user[@]}" fcvm podman run -d --rm --name u1 \
		-p "127.0.0.1:$port:8080" "$FCVM_ROOT/img.tar" sh -c "$(httpd_cmd "hello, nobody")"
	get_until "http://127.0.0.1:$port/" "hello, nobody"
	assert_eq "$(fc-state get --field network.mode u1)" rootless "an ordinary user's default is rootless"
	local vmm; vmm=$(fc-state get --field vmm_pid u1)
	assert_eq "$(stat -c %u "/proc/$vmm")" 65534 "the VMM runs as the user"
	[ "$(readlink "/proc/$vmm/ns/net")" != "$(readlink /proc/self/ns/net)" ] ||
		{ echo "the VMM is in the host's network namespace" >&2; false; }
	local holder; holder=$(fc-state get --field network.holder_pid u1)
	run_fc 0 "${as_user[@]}" fcvm stop u1
	no_net_left
	local i
	for ((i = 0; i < 50; i++)); do kill -0 "$holder" 2>/dev/null || break; sleep 0.2; done
	if kill -0 "$holder" 2>/dev/null; then echo "holder $holder still runs" >&2; false; fi
}
