# ldprof - zero-code OSProfiler-compatible tracing for unmodified servers.
#
#   make [all]      build everything into $(O)/ (default build/)
#   make test       install missing Debian packages, build, start private
#                   test servers, run the unit (Criterion) and e2e suites
#   make bench      benchmarks (BENCH_QUICK=1 for a short pass)
#   make demo       the guided demo
#   make install    PREFIX=/usr/local DESTDIR=
#   make deps       install the Debian packages the project needs
#   make clean
#
# Switches: DEBUG=1 (-O0 -g3), ASAN=1 (address + undefined sanitizers on every
# binary and test), O=DIR (build directory), V=1 (show commands).

CC ?= cc
O ?= build
PREFIX ?= /usr/local
DESTDIR ?=
PKG_CONFIG ?= pkg-config

ifeq ($(V),1)
Q :=
else
Q := @
endif

WARNINGS := -Wall -Wextra -Werror -Wstrict-prototypes -Wwrite-strings \
            -Wno-missing-field-initializers
OPTFLAGS := -O2 -g
ifeq ($(DEBUG),1)
OPTFLAGS := -O0 -g3
endif
SANFLAGS :=
ifeq ($(ASAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

BASE_CFLAGS := -std=gnu11 $(OPTFLAGS) $(SANFLAGS) $(WARNINGS) -D_GNU_SOURCE -MMD -MP
BASE_LDFLAGS := $(SANFLAGS) -Wl,--as-needed

pc = $(shell $(PKG_CONFIG) --silence-errors $(1) $(2))

# ---------------------------------------------------------------- zaqard
# The target server.  It knows nothing about ldprof: it must never include
# or link an ldprof file (tests/e2e checks ldd/nm).
ZAQARD_PKGS := libmicrohttpd jansson libmongoc-1.0 hiredis libpq
ZAQARD_SRCS := $(sort $(wildcard tests/zaqard/*.c))
ZAQARD_LIB_SRCS := $(filter-out tests/zaqard/main.c,$(ZAQARD_SRCS))
ZAQARD_OBJS := $(ZAQARD_SRCS:%.c=$(O)/%.o)
ZAQARD_LIB_OBJS := $(ZAQARD_LIB_SRCS:%.c=$(O)/%.o)
ZAQARD_CFLAGS := $(call pc,--cflags,$(ZAQARD_PKGS))
ZAQARD_LIBS := $(call pc,--libs,$(ZAQARD_PKGS)) -lpthread
ZAQARD := $(O)/tests/zaqard/zaqard

# ---------------------------------------------------------------- unit tests
# One Criterion binary from the suites listed here, linked with zaqard's
# non-main objects (store tests) and the libraries the suites talk to.
UNIT_SRCS := tests/unit/test_mongo_standin.c tests/unit/test_store_redis.c \
             tests/unit/test_store_mongo.c \
             $(sort $(wildcard tests/unit/test_preload_*.c)) tests/unit/test_propagation.c
UNIT_OBJS := $(UNIT_SRCS:%.c=$(O)/%.o)
UNIT_PKGS := criterion $(ZAQARD_PKGS)
UNIT_CFLAGS := $(call pc,--cflags,$(UNIT_PKGS)) -Itests/zaqard
UNIT_LIBS := $(call pc,--libs,$(UNIT_PKGS)) -lpthread
UNIT := $(O)/tests/unit/unit-tests

ALL_TARGETS := $(ZAQARD) $(UNIT)

# ---------------------------------------------------------------- libldprof.so
# The preload: every preload/*.c and hooks/*.c, position-independent, hidden
# by default (only LDPROF_EXPORT symbols, listed in preload/libldprof.map,
# are exported), no undefined symbols, immediate binding (-z now: no lazy PLT
# resolution inside a wrapper, which could re-enter the dynamic linker from
# a signal handler).  The SHA-1 of preload/propagation.c is self-contained,
# so the library does not link libcrypto.
LDPROF_SRCS := $(sort $(wildcard preload/*.c) $(wildcard hooks/*.c))
LDPROF_OBJS := $(LDPROF_SRCS:%.c=$(O)/pic/%.o)
# The driver hooks (hooks/mongoc.c, hiredis.c, libpq.c) need the drivers'
# headers for their types only: the library never links a driver, it finds
# the real functions with dlsym(RTLD_NEXT) on first call.
# Only the three driver hook files get those cflags: they also carry
# -D_FILE_OFFSET_BITS=64, which would rename libc wrappers such as
# sendfile to sendfile64 in hooks/libc_socket.c and preload/.
DRIVER_PKGS := libmongoc-1.0 hiredis libpq
DRIVER_CFLAGS := $(call pc,--cflags,$(DRIVER_PKGS))
# Code and data layout: every function and variable in a section of its
# own; a relocatable link with preload/hot.ld gathers the functions a
# traced request runs through, in order, into .text.hot.ldprof, which the
# final link puts first in .text, and the variables it reads into a few
# lines of .bss (ldprof's code runs with cold caches between the kernel and
# the server's libraries: fewer, contiguous lines and pages).  -fno-plt:
# calls into libc go through the GOT directly, without a PLT stub's line
# (the library is bound at load time anyway, -z now).
LIB_CFLAGS := -fPIC -fvisibility=hidden -ffunction-sections -fdata-sections -fno-plt \
              -Iinclude -I. -Ipreload
$(O)/pic/hooks/mongoc.o $(O)/pic/hooks/hiredis.o $(O)/pic/hooks/libpq.o: LIB_CFLAGS += $(DRIVER_CFLAGS)
LIB_LDFLAGS := -shared -Wl,--no-undefined -Wl,-z,now -Wl,-z,relro \
               -Wl,--version-script=preload/libldprof.map
LIB_LIBS := -lhttp_parser -linih -ldl -lpthread
LIBLDPROF := $(O)/libldprof.so

$(O)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(LIB_CFLAGS) $(CFLAGS) -c $< -o $@

$(O)/pic/ldprof.o: $(LDPROF_OBJS) preload/hot.ld preload/check-hot.sh
	@echo "  LD -r   $@"
	$(Q)sh preload/check-hot.sh preload/hot.ld $(LDPROF_SRCS) $(wildcard preload/*.h)
	$(Q)$(LD) -r -T preload/hot.ld -o $@ $(LDPROF_OBJS)

$(LIBLDPROF): $(O)/pic/ldprof.o preload/libldprof.map
	@echo "  LD      $@"
	$(Q)$(CC) $(BASE_LDFLAGS) $(LDFLAGS) $(LIB_LDFLAGS) -o $@ $(O)/pic/ldprof.o $(LIB_LIBS)

# The preload modules the unit tests link directly (never the constructor,
# the wrappers or the flusher: the test runner is not preloaded).
# tests/unit/test_preload_*.c provide the transport stubs they need.
UNIT_PRELOAD_SRCS := preload/real.c preload/log.c preload/tls.c preload/config.c \
                     preload/span.c preload/buffer.c preload/http.c preload/exec.c \
                     preload/propagation.c preload/clock.c
UNIT_PRELOAD_OBJS := $(UNIT_PRELOAD_SRCS:%.c=$(O)/%.o)
$(O)/preload/%.o: preload/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) -Iinclude -I. -Ipreload $(CFLAGS) -c $< -o $@
# Append to the unit binary: objects, include paths, libraries.
UNIT_CFLAGS += -Iinclude -I. -Ipreload
UNIT_LIBS += -lhttp_parser -linih -ldl -lcrypto

# ---------------------------------------------------------------- test targets
# Small programs the e2e layer (and tests/unit/test_preload_e2e.c) runs under
# LD_PRELOAD.  They know nothing about ldprof.
# tests/targets/lib*.c are shared libraries (libctor.so: a constructor that
# calls hooked functions before ours has run); the rest are programs.
# -D_FORTIFY_SOURCE=2 so that the __read_chk/__recv_chk wrappers are used.
TARGET_CFLAGS := -D_FORTIFY_SOURCE=2 $(DRIVER_CFLAGS)
TARGET_LIBS := $(call pc,--libs,$(DRIVER_PKGS)) -lpthread
TARGET_SRCS := $(sort $(filter-out tests/targets/lib%.c,$(wildcard tests/targets/*.c)))
TARGET_LIB_SRCS := $(sort $(wildcard tests/targets/lib*.c))
TARGETS := $(TARGET_SRCS:tests/targets/%.c=$(O)/tests/targets/%) \
           $(TARGET_LIB_SRCS:tests/targets/%.c=$(O)/tests/targets/%.so)
$(O)/tests/targets/%.so: tests/targets/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(TARGET_CFLAGS) -fPIC $(CFLAGS) $(BASE_LDFLAGS) $(LDFLAGS) -shared -o $@ $<
$(O)/tests/targets/%: tests/targets/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(TARGET_CFLAGS) $(CFLAGS) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $< $(TARGET_LIBS)

ALL_TARGETS += $(LIBLDPROF) $(TARGETS)
-include $(LDPROF_OBJS:.o=.d) $(UNIT_PRELOAD_OBJS:.o=.d) $(TARGETS:=.d)


# ---------------------------------------------------------------- collector
# ldprof-collectord (the daemon) and ldprof (the CLI).  collector/ depends on
# include/ only (never on preload/ or hooks/).  Every collector/*.c except
# the two main() files is also linked into the unit-test binary, with the
# tests/unit/test_collector_*.c suites; the daemon and CLI suites run the two
# binaries from $(LDPROF_BUILD)/collector/ (order-only prerequisites).
COLL_PKGS := jansson libcrypto hiredis
COLL_CFLAGS := $(call pc,--cflags,$(COLL_PKGS)) -Iinclude
COLL_LIBS := $(call pc,--libs,$(COLL_PKGS))
COLL_MAIN_SRCS := collector/collectord.c collector/cli.c
COLL_LIB_SRCS := $(filter-out $(COLL_MAIN_SRCS),$(sort $(wildcard collector/*.c)))
COLL_LIB_OBJS := $(COLL_LIB_SRCS:%.c=$(O)/%.o)
COLL_UNIT_SRCS := $(sort $(wildcard tests/unit/test_collector_*.c))
COLLECTORD := $(O)/collector/ldprof-collectord
LDPROF_CLI := $(O)/collector/ldprof

$(O)/collector/%.o: collector/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(COLL_CFLAGS) $(CFLAGS) -c $< -o $@

$(COLLECTORD): $(O)/collector/collectord.o $(COLL_LIB_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $^ $(COLL_LIBS)

$(LDPROF_CLI): $(O)/collector/cli.o $(COLL_LIB_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $^ $(COLL_LIBS)

ALL_TARGETS += $(COLLECTORD) $(LDPROF_CLI)
UNIT_OBJS += $(COLL_UNIT_SRCS:%.c=$(O)/%.o) $(COLL_LIB_OBJS)
UNIT_LIBS += $(COLL_LIBS)
$(UNIT): | $(COLLECTORD) $(LDPROF_CLI)
-include $(COLL_LIB_OBJS:.o=.d) $(O)/collector/collectord.d $(O)/collector/cli.d

.PHONY: all test unit e2e bench demo install uninstall deps clean help
.DEFAULT_GOAL := all

all: $(ALL_TARGETS)

help:
	@sed -n '3,16p' Makefile

$(O)/tests/zaqard/%.o: tests/zaqard/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(ZAQARD_CFLAGS) $(CFLAGS) -c $< -o $@

$(ZAQARD): $(ZAQARD_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $^ $(ZAQARD_LIBS)

$(O)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(UNIT_CFLAGS) $(CFLAGS) -c $< -o $@

# The unit binary also runs the library and the targets (order-only: they
# are run, not linked).
$(UNIT): $(UNIT_OBJS) $(ZAQARD_LIB_OBJS) $(UNIT_PRELOAD_OBJS) | $(LIBLDPROF) $(TARGETS)
	@echo "  LD      $@"
	$(Q)$(CC) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $(UNIT_OBJS) $(ZAQARD_LIB_OBJS) $(UNIT_PRELOAD_OBJS) $(UNIT_LIBS)

# ---------------------------------------------------------------- benchmarks
# Benchmark programs (tests/bench/*.c) are built by `make bench` only; each
# part adds its programs to BENCH_TOOLS with its own rule below.
BENCH_TOOLS :=

# (bench rules go here)

# micro.sh (parts 2-4): micro_calls knows nothing of ldprof (run with and
# without the preload); micro_preload links the preload's objects, as the
# unit tests do.
MICRO_CALLS := $(O)/tests/bench/micro_calls
MICRO_PRELOAD := $(O)/tests/bench/micro_preload
BENCH_TOOLS += $(MICRO_CALLS) $(MICRO_PRELOAD)
$(MICRO_CALLS): tests/bench/micro_calls.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(DRIVER_CFLAGS) $(CFLAGS) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $< $(call pc,--libs,hiredis libpq)
$(MICRO_PRELOAD): tests/bench/micro_preload.c $(UNIT_PRELOAD_OBJS)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) -Iinclude -I. -Ipreload $(CFLAGS) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $< $(UNIT_PRELOAD_OBJS) -lhttp_parser -linih -ldl -lpthread
-include $(MICRO_CALLS).d $(MICRO_PRELOAD).d

# 5. collector (tests/bench/collector.sh): the datagram sender.
COLL_BLAST := $(O)/tests/bench/collector_blast
BENCH_TOOLS += $(COLL_BLAST)
$(COLL_BLAST): tests/bench/collector_blast.c include/ldprof/wire.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) -Iinclude $(CFLAGS) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $<

.PHONY: bench-tools
bench-tools: $(BENCH_TOOLS)

# ---------------------------------------------------------------- test
# make test = deps + build + private servers + both suites.  The servers are
# started once (tests/env/with-services.sh) and stopped on exit, even when a
# suite fails or the run is interrupted.
TEST_ENV = LDPROF_BUILD=$(abspath $(O)) ZAQARD=$(abspath $(ZAQARD)) LDPROF_TOP=$(CURDIR)

# ASAN=1: sanitizer reports go to files and any report fails the run
# (Criterion takes a test's result from its worker's messages, not its exit
# status: a leak found when the worker exits would pass unseen).
SAN_RUN :=
ifeq ($(ASAN),1)
SAN_RUN := tests/env/sanitizer-reports.sh $(abspath $(O))/sanitizer
endif

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(TEST_ENV) $(SAN_RUN) tests/env/with-services.sh tests/run-all.sh

unit: all
	$(Q)$(TEST_ENV) $(SAN_RUN) tests/env/with-services.sh $(UNIT) $(UNIT_ARGS)

e2e: all
	$(Q)$(TEST_ENV) $(SAN_RUN) tests/env/with-services.sh tests/e2e/run.sh $(E2E_ARGS)

bench: deps
	$(Q)$(MAKE) --no-print-directory all bench-tools
	$(Q)$(TEST_ENV) BENCH_QUICK=$(BENCH_QUICK) tests/env/with-services.sh tests/bench/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)LDPROF_BUILD=$(abspath $(O)) ZAQARD=$(abspath $(ZAQARD)) tests/demo.sh

deps:
	$(Q)tests/env/deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/lib/ldprof $(DESTDIR)$(PREFIX)/share/ldprof \
		$(DESTDIR)$(PREFIX)/share/doc/ldprof
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(LIBLDPROF) $(DESTDIR)$(PREFIX)/lib/ldprof/libldprof.so
	install -m 0755 $(COLLECTORD) $(LDPROF_CLI) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 profiler.ini $(DESTDIR)$(PREFIX)/share/ldprof/profiler.ini
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/ldprof/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/ldprof/libldprof.so $(DESTDIR)$(PREFIX)/bin/ldprof \
		$(DESTDIR)$(PREFIX)/bin/ldprof-collectord \
		$(DESTDIR)$(PREFIX)/share/ldprof/profiler.ini
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/ldprof
	-rmdir $(DESTDIR)$(PREFIX)/lib/ldprof $(DESTDIR)$(PREFIX)/share/ldprof

clean:
	rm -rf $(O)

-include $(ZAQARD_OBJS:.o=.d) $(UNIT_OBJS:.o=.d)
