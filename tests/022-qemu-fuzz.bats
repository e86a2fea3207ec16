#!/usr/bin/env bats
# The fuzz targets for fc-qemu's HTTP parser and API layer still build and
# replay their seed corpus cleanly (replay mains, no libFuzzer needed), with
# ASan+UBSan when the compiler has them.

load helpers

TOP="$BATS_TEST_DIRNAME/.."

setup() {
	fc_setup_root
}

teardown() {
	leak_check
}

build_replay() {
	local out=$1
	shift
	local san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
	echo 'int main(void){return 0;}' >"$BATS_TEST_TMPDIR/t.c"
	${CC:-cc} $san "$BATS_TEST_TMPDIR/t.c" -o "$BATS_TEST_TMPDIR/t" 2>/dev/null || san=""
	${CC:-cc} -std=gnu11 -Wall -Wextra -Werror -g -O1 $san -D_GNU_SOURCE -I"$TOP/lib" \
		-I"$TOP/bin/fc-qemu" -o "$out" "$@" -ljansson
}

@test "fuzz: http_fuzz replays its corpus" {
	build_replay "$BATS_TEST_TMPDIR/http_fuzz" "$TOP/fuzz/http_fuzz.c" \
		"$TOP"/lib/{http,err,util,log}.c
	run_fc 0 "$BATS_TEST_TMPDIR/http_fuzz" "$TOP"/fuzz/corpus/http/*
	assert_contains "$output" "get: ok" "seed replayed"
}

@test "fuzz: http_api_fuzz replays its corpus" {
	[ "$(id -u)" = 0 ] || skip "needs root (private mount namespace)"
	build_replay "$BATS_TEST_TMPDIR/http_api_fuzz" "$TOP/fuzz/http_api_fuzz.c" \
		"$TOP/bin/fc-qemu/api.c" "$TOP"/lib/{http,err,util,log,json,fsutil,paths}.c
	run_fc 0 "$BATS_TEST_TMPDIR/http_api_fuzz" "$TOP"/fuzz/corpus/http/*
	assert_contains "$output" "start: ok" "seed replayed"
}
