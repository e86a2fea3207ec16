# fcvm - top-level build. Each bin/<tool>/ directory is one program; lib/ is
# linked into every one of them; agent/ builds the static guest agent.
#
#   make              build everything into build/
#   make check        unit tests + bats end-to-end tests
#   make check-asan   the same tests with every tool built with ASan+UBSan
#   make install PREFIX=/usr/local

PREFIX    ?= /usr/local
BUILD     ?= build
CC        ?= cc
SANITIZE  ?=
OPT       ?= -O2
CFLAGS    ?= $(OPT) -g
WARN      := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
HARDEN    := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
ALL_CFLAGS = $(WARN) $(HARDEN) $(CFLAGS) $(SANITIZE) -D_GNU_SOURCE -Ilib -MMD -MP
LDFLAGS   ?=
ALL_LDFLAGS = -pie -Wl,-z,relro,-z,now $(SANITIZE) $(LDFLAGS)
LDLIBS    := -lcurl -ljansson -lpthread -lmnl -lnftnl

TOOLS     := $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard bin/*/*.c)))))
SCRIPTS   := $(notdir $(wildcard bin/*.sh))
LIB_SRC   := $(wildcard lib/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
AGENT_SRC := $(wildcard agent/*.c)
# The agent runs in the guest: static, so it needs nothing from the rootfs.
AGENT_LIB := lib/err.c lib/log.c lib/util.c lib/proto.c lib/json.c lib/sock.c lib/proc.c lib/fsutil.c lib/paths.c lib/text.c lib/clonefix.c
TEST_SRC  := $(wildcard tests/unit/*.c)

BINS      := $(TOOLS:%=$(BUILD)/bin/%) $(SCRIPTS:%.sh=$(BUILD)/bin/%)
UNIT_BINS := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BINS) $(if $(AGENT_SRC),$(BUILD)/bin/fc-agent) $(UNIT_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libfc.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Scripts first: with equal stems make takes the first matching rule.
# Replaced by a rename, never rewritten in place: bash reads a script as it
# runs, and every running fcvm front end would read the new text at its old
# offsets.
$(BUILD)/bin/%: bin/%.sh
	@mkdir -p $(dir $@)
	install -m 0755 $< $@.tmp
	mv -f $@.tmp $@

# Objects of tool $(1). A function, because a literal '%' in a pattern
# rule's prerequisites would be replaced by the stem.
tool_objs = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard bin/$(1)/*.c))

# fc-setup embeds the QEMU patches (.incbin): rebuild it when one changes.
$(BUILD)/obj/bin/fc-setup/qemu.o: bin/fc-setup/qemu-vhost-user-vsock-migration.patch \
	bin/fc-setup/qemu-uffd-socket.patch

# Keep objects: they are not throw-away intermediates.
.SECONDARY:

.SECONDEXPANSION:
$(BUILD)/bin/%: $$(call tool_objs,$$*) $(BUILD)/libfc.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(BUILD)/libfc.a $(LDLIBS)

# Static and unsanitized on purpose: it must run inside the guest alone.
$(BUILD)/bin/fc-agent: $(AGENT_SRC) $(AGENT_LIB) $(wildcard agent/*.h lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -D_GNU_SOURCE -Ilib -O2 -g -static -o $@ $(AGENT_SRC) $(AGENT_LIB) -ljansson

# fc-volfs (the volume FUSE client) runs in the guest too: static like the
# agent, and the only tool that links libfuse3.
VOLFS_LIB := lib/err.c lib/log.c lib/util.c lib/vproto.c lib/sock.c
$(BUILD)/bin/fc-volfs: $(wildcard bin/fc-volfs/*.[ch]) $(VOLFS_LIB) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -D_FORTIFY_SOURCE=2 -fstack-protector-strong -D_GNU_SOURCE -Ilib \
		-I/usr/include/fuse3 -O2 -g -static -o $@ $(filter %.c,$^) -lfuse3 -lpthread

# Unit tests link libfc.a; a test of code outside lib/ names its sources.
unit_extra_test_plan := agent/plan.c
unit_extra_test_net := bin/fc-net/ports.c
unit_extra_test_agent_loop := agent/ev.c agent/conn.c
unit_extra_test_volfs_ids := bin/fc-volfs/ids.c

$(BUILD)/tests/%: tests/unit/%.c $$(unit_extra_$$*) $(BUILD)/libfc.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Iagent $(ALL_LDFLAGS) -o $@ $< $(unit_extra_$*) $(BUILD)/libfc.a $(LDLIBS)

check: all
	tests/run-tests $(BUILD)

# The slow files too (tests/*-slow.bats: the kill matrix of every tool x
# signal x phase x mode).
check-slow: all
	FCVM_TEST_SLOW=1 tests/run-tests $(BUILD)

check-unit: all
	tests/run-tests --unit-only $(BUILD)

# Same tests, tools built with AddressSanitizer + UndefinedBehaviorSanitizer.
check-asan:
	$(MAKE) BUILD=build-asan OPT=-O1 \
		SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		tests/run-tests build-asan

# Debian packages from .ci/packages (needs root). fc-setup qemu builds
# fcvm's QEMU from Debian's own source package, so a deb-src entry for
# bookworm is added once (a fresh Debian 12 has none; nothing is touched
# when one exists).
DEB_SRC_LIST := /etc/apt/sources.list.d/fcvm-deb-src.sources
deps:
	@if ! grep -rqsE '^(Types:.*deb-src|deb-src .*bookworm)' \
		/etc/apt/sources.list /etc/apt/sources.list.d/; then \
		echo "deps: adding $(DEB_SRC_LIST) (deb-src for bookworm, for fc-setup qemu)"; \
		printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' \
			'Suites: bookworm bookworm-updates' 'Components: main' \
			'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' \
			'Types: deb-src' 'URIs: http://deb.debian.org/debian-security' \
			'Suites: bookworm-security' 'Components: main' \
			'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
			> $(DEB_SRC_LIST).tmp && mv $(DEB_SRC_LIST).tmp $(DEB_SRC_LIST); \
	fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		$$(grep -v '^#' .ci/packages)

# The main job on a fresh machine: storage, kernel, rootfs, a local image,
# and a container in a microVM.
demo: all
	examples/demo.sh $(BUILD)

# Benchmarks print medians and ratios against a baseline measured in the
# same run; no test asserts on time.
bench: bench-boot bench-run bench-vsock bench-net
bench-boot: all
	tests/bench/boot $(BUILD)
bench-run: all
	tests/bench/run $(BUILD)
bench-vsock: all
	tests/bench/vsock $(BUILD)
bench-net: all
	tests/bench/net $(BUILD)
bench-clone: all
	tests/bench/clone $(BUILD)
# fcvm exec latency against --vm and a raw vsock round trip (tests/bench/exec).
bench-exec: all
	tests/bench/exec $(BUILD)
.PHONY: bench-exec

# libFuzzer targets, one per parser of outside input; each also builds
# without -DFC_LIBFUZZER as a replay program for a saved crash.
FUZZ_SRC   := $(wildcard fuzz/*.c)
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -DFC_LIBFUZZER -D_GNU_SOURCE \
	-Ilib -Ibin/fc-qemu -Ibin/fc-vsock
FUZZ_SECONDS ?= 60
fuzz_extra_http_api_fuzz      := bin/fc-qemu/api.c
fuzz_extra_proto_fuzz         := agent/plan.c
fuzz_extra_vhost_user_fuzz    := bin/fc-vsock/vhost.c
fuzz_extra_vsock_connect_fuzz := bin/fc-vsock/connline.c
fuzz_extra_vproto_fuzz        := bin/fc-volume/fs.c

fuzz: $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: fuzz/%.c $(LIB_SRC) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ $< $(fuzz_extra_$*) $(LIB_SRC) $(LDLIBS)

# Run every fuzzer for FUZZ_SECONDS on a scratch copy of its corpus (if
# any), so the committed seeds stay as they are.
fuzz-run: fuzz
	for f in $(FUZZ_SRC:fuzz/%.c=%); do \
		c=fuzz/corpus/$${f%_fuzz}; w=$$(mktemp -d); \
		[ -d $$c ] && cp -r $$c/. $$w/; \
		$(BUILD)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) $$w; r=$$?; \
		rm -rf $$w; [ $$r -eq 0 ] || exit 1; \
	done

# Static analysis: cppcheck must be clean. It does not read the system's
# <stdnoreturn.h>, so it is told what noreturn means (else every path
# after usage_err() or fc_err_exit() looks like it goes on).
lint:
	cppcheck --quiet --enable=warning,portability --inline-suppr --error-exitcode=1 \
		-D_GNU_SOURCE '-Dnoreturn=__attribute__((noreturn))' -Ilib \
		--suppress=missingIncludeSystem lib bin agent

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	# (each by a rename: running front ends keep the script they started)
	for f in $(BINS) $(wildcard $(BUILD)/bin/fc-agent); do \
		install -m 0755 $$f $(DESTDIR)$(PREFIX)/bin/.$${f##*/}.tmp && \
		mv -f $(DESTDIR)$(PREFIX)/bin/.$${f##*/}.tmp $(DESTDIR)$(PREFIX)/bin/$${f##*/} || exit 1; \
	done
	install -m 0644 $(wildcard man/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf build build-asan

.PHONY: check-slow fuzz fuzz-run bench-run bench-vsock bench-net lint deps demo all check check-unit check-asan bench bench-boot install clean

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Host directory volumes: 1024 x 4 KiB files read by 1/16/256 readers and
# written with fsync, host directory vs an fc-volfs mount, as ratios.
bench-volume: $(BUILD)/bin/fc-volume $(BUILD)/bin/fc-volfs
	tests/bench/volume $(BUILD)
.PHONY: bench-volume

# fc-uffd: the test client that does Firecracker's side of the Uffd
# backend (tests/140-uffd.bats, make bench-uffd).
UFFD_CLIENT := $(BUILD)/test-helpers/uffd-client
all: $(UFFD_CLIENT)
$(UFFD_CLIENT): tests/uffd/client.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(HARDEN) $(CFLAGS) $(SANITIZE) -D_GNU_SOURCE $(ALL_LDFLAGS) -o $@ $<

# fc-uffd against the kernel's own first-touch faults, with and without
# prefetch; then clone time, Uffd against File backend (real guests).
bench-uffd: all $(UFFD_CLIENT)
	tests/bench/uffd $(BUILD)
	SECTIONS="file uffd" tests/bench/clone $(BUILD)
.PHONY: bench-uffd
