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
             tests/unit/test_store_mongo.c
UNIT_OBJS := $(UNIT_SRCS:%.c=$(O)/%.o)
UNIT_PKGS := criterion $(ZAQARD_PKGS)
UNIT_CFLAGS := $(call pc,--cflags,$(UNIT_PKGS)) -Itests/zaqard
UNIT_LIBS := $(call pc,--libs,$(UNIT_PKGS)) -lpthread
UNIT := $(O)/tests/unit/unit-tests

ALL_TARGETS := $(ZAQARD) $(UNIT)

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

$(UNIT): $(UNIT_OBJS) $(ZAQARD_LIB_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(BASE_LDFLAGS) $(LDFLAGS) -o $@ $^ $(UNIT_LIBS)

# ---------------------------------------------------------------- test
# make test = deps + build + private servers + both suites.  The servers are
# started once (tests/env/with-services.sh) and stopped on exit, even when a
# suite fails or the run is interrupted.
TEST_ENV = LDPROF_BUILD=$(abspath $(O)) ZAQARD=$(abspath $(ZAQARD)) LDPROF_TOP=$(CURDIR)

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(TEST_ENV) tests/env/with-services.sh tests/run-all.sh

unit: all
	$(Q)$(TEST_ENV) tests/env/with-services.sh $(UNIT) $(UNIT_ARGS)

e2e: all
	$(Q)$(TEST_ENV) tests/env/with-services.sh tests/e2e/run.sh $(E2E_ARGS)

bench: deps
	@echo "make bench: the benchmarks arrive with the profiler (issue: performance)."

demo: deps
	@echo "make demo: coming with the profiler (libldprof.so); for now: make test."

deps:
	$(Q)tests/env/deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/share/ldprof
	install -m 0644 profiler.ini $(DESTDIR)$(PREFIX)/share/ldprof/profiler.ini

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/share/ldprof/profiler.ini
	-rmdir $(DESTDIR)$(PREFIX)/share/ldprof

clean:
	rm -rf $(O)

-include $(ZAQARD_OBJS:.o=.d) $(UNIT_OBJS:.o=.d)
