# backupd-sim: the commands users and CI run. `make help` lists them.
#
#   make run    build, install Cyrus if missing, run the bundled scenario suite (scenarios/)
#   make test   the full test suite, Cyrus tests included (they fail, never skip, here)
#   make matrix the bundled suite on Cyrus 3.6.1, 3.10.2 and 3.12.4, with a version x scenario table
#
# CYRUS_PREFIX=DIR points everything at an installed Cyrus tree (`make install`'s
# libexec/, sbin/, bin/), CYRUS_BIN=DIR at one directory of executables; neither
# set: Debian's /usr/lib/cyrus/bin. The CLI and the tests read both.

CARGO ?= cargo
CYRUS_PREFIX ?=
CYRUS_BIN ?=
export CYRUS_PREFIX CYRUS_BIN

.PHONY: help setup setup-matrix build run demo test matrix lint fmt clean bench patched-demo

help:
	@sed -n 's/^#   make /make /p' Makefile
	@echo "make setup  install cyrus-common cyrus-imapd cyrus-replication sqlite3 with apt-get when missing"
	@echo "make setup-matrix  build the Cyrus 3.10 and 3.12 chroots (backupd-sim cyrus install; once, ~2x400 MiB)"
	@echo "make build  build the release binary target/release/backupd-sim"
	@echo "make demo   one built-in end-to-end replication, printing what it verified"
	@echo "make lint   cargo fmt --check and cargo clippy -D warnings"
	@echo "make hygiene  HYGIENE_RUNS (50) runs + interrupts: no leftover Cyrus process or sandbox"
	@echo "make fuzz   each cargo-fuzz target for FUZZ_SECONDS (60); fails on a crash"
	@echo "make fuzz-build  build the fuzz targets only (FUZZ_TARGETS)"
	@echo "make fuzz-cmin   minimise each target's corpus in place (FUZZ_TARGETS), after a campaign"
	@echo "make abuse  the fake under abuse at full counts (slow loris, floods, oversized input, bombs, SIGKILLed saves, control garbage)"
	@echo "make soak   convergence scenarios SOAK_RUNS (1000) times correct, then with lie/hide-missing"
	@echo "make bench  fake vs real backupd vs real sync_server vs a floor: bench/results.md and .json"
	@echo "make patched-demo  build Cyrus 3.6 with PATCH (the sync_client backoff), run the lock suites on stock and patched side by side"

setup:
	@scripts/install-cyrus.sh

build:
	$(CARGO) build --release --locked

# JOBS scenarios at once; extra arguments in RUN_ARGS (e.g. RUN_ARGS="--junit junit.xml").
JOBS ?= 2
run: setup build
	target/release/backupd-sim run scenarios -j $(JOBS) $(RUN_ARGS)

# The built-in end-to-end replication, printing every fact it verifies.
demo: setup build
	target/release/backupd-sim demo

# Benchmarks (issue 6): every workload against the fake, the real backupd, the real
# sync_server and a floor; writes bench/results.md and bench/results.json (~10 min).
# Extra arguments in BENCH_ARGS (e.g. BENCH_ARGS="--quick --reps 1").
bench: setup build
	target/release/backupd-sim bench --out bench $(BENCH_ARGS)

# The developer's loop (issue 18): build Cyrus PATCH_VERSION from Debian's source
# package with PATCH (cached: a no-op once built; a few minutes the first time),
# then run the lock suites on the stock client and the patched one, side by side
# (verdicts, connections, reconnect rate, time to converge, lost changes).
# Not part of `make test`: it compiles Cyrus. docs/your-own-cyrus.md.
PATCH ?= fixtures/patches/sync-client-backoff.patch
PATCH_VERSION ?= 3.6
PATCHED_SCENARIOS ?= scenarios/locks scenarios/source-locks
patched-demo: setup build
	@set -e; P=$$(target/release/backupd-sim cyrus build $(PATCH_VERSION) --patch $(PATCH) --print-prefix); \
	  target/release/backupd-sim run $(PATCHED_SCENARIOS) -j $(JOBS) --cyrus $(PATCH_VERSION) --cyrus "$$P" $(RUN_ARGS)

# The Cyrus versions of the matrix beside the host's 3.6.1: Debian chroots in
# $(BACKUPD_SIM_CYRUS_CACHE) (default /var/cache/backupd-sim/cyrus), built once
# (~30-120 s each, ~400 MiB each); a no-op when installed.
setup-matrix:
	$(CARGO) run --locked --quiet -- cyrus install 3.10 3.12

# The Cyrus tests are required here: setup installed Cyrus (and setup-matrix the
# 3.10 and 3.12 chroots), so a missing one is a failure.
test: setup setup-matrix
	BACKUPD_SIM_REQUIRE_CYRUS=1 $(CARGO) test --locked

# The bundled suite on every version in MATRIX_VERSIONS (3.6 = the host's; a
# chroot root or a directory of Cyrus executables works too), then the
# version x scenario table. Extra arguments in RUN_ARGS (e.g. --json m.json).
MATRIX_VERSIONS ?= 3.6 3.10 3.12
matrix: setup setup-matrix build
	target/release/backupd-sim run scenarios -j $(JOBS) $(foreach v,$(MATRIX_VERSIONS),--cyrus $(v)) $(RUN_ARGS)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

.PHONY: hygiene fuzz fuzz-build fuzz-cmin soak abuse

# No orphans (issue 7): SIGINT/SIGTERM mid-run, a killed sync_client, and
# HYGIENE_RUNS runs of a short scenario leave no Cyrus process and no sandbox.
HYGIENE_RUNS ?= 50
hygiene: setup
	HYGIENE_RUNS=$(HYGIENE_RUNS) BACKUPD_SIM_REQUIRE_CYRUS=1 $(CARGO) test --locked --test it hygiene -- --nocapture

# cargo-fuzz targets (fuzz/, a crate of its own) for FUZZ_SECONDS each; a crash
# fails (its input is in fuzz/artifacts/<target>/). Stable Rust needs
# RUSTC_BOOTSTRAP=1 for cargo-fuzz's -Z flags. The corpus is one lineage per
# target, kept in the repository: new inputs go straight into fuzz/corpus/<target>/,
# `make fuzz-cmin` minimises it (libFuzzer -set_cover_merge=1) before a commit, and
# every campaign's final stats are appended to fuzz/campaigns.log (see fuzz/README.md).
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096
FUZZ_TARGETS ?= dlist_frame_decode session driver
# The crate has no `unsafe`: AddressSanitizer finds nothing in safe Rust that a
# panic would not, and costs ~5x the executions. FUZZ_SANITIZER=address for it.
FUZZ_SANITIZER ?= none
# FUZZ_FORK=N: libFuzzer's -fork=N, N worker processes on the one corpus. A
# timeout or an out-of-memory stops it as a crash does (-fork ignores both by
# default).
FUZZ_FORK ?=
# Coverage for our own code only (fuzz/rustc-wrapper.sh); the --cfg marks these
# builds so that cargo rebuilds when a build made without the wrapper is there.
# Temporary files on tmpfs when there is one: every execution of `session` and
# `driver` makes a fresh store, whose body pack is an O_TMPFILE, and on ext4 the
# inode allocator's scan of recently deleted inodes took about 30% of `driver`'s
# time (perf; fuzz/README.md). libFuzzer's -fork job directories go there too.
FUZZ_TMPDIR ?= $(shell test -d /dev/shm -a -w /dev/shm && echo /dev/shm || echo "$${TMPDIR:-/tmp}")
FUZZ_ENV = RUSTC_BOOTSTRAP=1 RUSTC_WRAPPER="$(CURDIR)/fuzz/rustc-wrapper.sh" \
  RUSTFLAGS="$(RUSTFLAGS) --cfg backupd_sim_fuzz_own_coverage" TMPDIR="$(FUZZ_TMPDIR)"
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s$(if $(FUZZ_FORK), with $(FUZZ_FORK) workers)"; \
	  mkdir -p fuzz/corpus/$$t; \
	  if ! $(FUZZ_ENV) $(CARGO) fuzz run --sanitizer $(FUZZ_SANITIZER) $$t fuzz/corpus/$$t -- \
	    $(if $(FUZZ_FORK),-fork=$(FUZZ_FORK) -ignore_timeouts=0 -ignore_ooms=0) \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=30 -print_final_stats=1 \
	    > fuzz/last-$$t.log 2>&1; then tail -40 fuzz/last-$$t.log; exit 1; fi; \
	  scripts/fuzz-stats.sh $$t fuzz/last-$$t.log | tee -a fuzz/campaigns.log; \
	done

# Build the targets as `make fuzz` does, without running them (to measure one on a copy).
fuzz-build:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@set -e; for t in $(FUZZ_TARGETS); do \
	  $(FUZZ_ENV) $(CARGO) fuzz build --sanitizer $(FUZZ_SANITIZER) $$t; done

# Minimise each target's corpus in place before committing it: libFuzzer's
# -set_cover_merge=1 keeps a small set of inputs with every feature of the old one.
fuzz-cmin:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  rm -rf fuzz/cmin-tmp/$$t; mkdir -p fuzz/cmin-tmp/$$t; \
	  $(FUZZ_ENV) $(CARGO) fuzz run --sanitizer $(FUZZ_SANITIZER) $$t fuzz/cmin-tmp/$$t fuzz/corpus/$$t -- \
	    -set_cover_merge=1 -max_len=$(FUZZ_MAX_LEN) -timeout=30 > fuzz/last-cmin-$$t.log 2>&1; \
	  rm -rf fuzz/corpus/$$t; mv fuzz/cmin-tmp/$$t fuzz/corpus/$$t; \
	  echo "$$t: $$(ls fuzz/corpus/$$t | wc -l) inputs, $$(du -sb --apparent-size fuzz/corpus/$$t | cut -f1) bytes; $$(tail -n 1 fuzz/last-cmin-$$t.log)"; \
	done

# The fake under abuse (issue 20): tests/it/abuse.rs at full counts, one at a
# time (their RSS and timing figures are printed); `make test` runs them reduced.
abuse:
	ABUSE_FULL=1 $(CARGO) test --locked --test it abuse -- --nocapture --test-threads=1

# Soak (issue 7): scripts/soak.sh; SOAK_RUNS per phase, SOAK_JOBS at a time.
SOAK_RUNS ?= 1000
SOAK_JOBS ?= 3
soak: setup build
	SOAK_RUNS=$(SOAK_RUNS) SOAK_JOBS=$(SOAK_JOBS) BIN=target/release/backupd-sim scripts/soak.sh
