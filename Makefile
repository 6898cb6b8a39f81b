# backupd-sim: the commands users and CI run. `make help` lists them.
#
#   make run    build, install Cyrus if missing, run the bundled scenario suite (scenarios/)
#   make test   the full test suite, Cyrus tests included (they fail, never skip, here)
#
# CYRUS_BIN=DIR points everything at another Cyrus build (default /usr/lib/cyrus/bin).

CARGO ?= cargo
CYRUS_BIN ?= /usr/lib/cyrus/bin
export CYRUS_BIN

.PHONY: help setup build run demo test lint fmt clean

help:
	@sed -n 's/^#   make /make /p' Makefile
	@echo "make setup  install cyrus-common cyrus-imapd cyrus-replication with apt-get when missing"
	@echo "make build  build the release binary target/release/backupd-sim"
	@echo "make demo   one built-in end-to-end replication, printing what it verified"
	@echo "make lint   cargo fmt --check and cargo clippy -D warnings"

setup:
	@scripts/install-cyrus.sh

build:
	$(CARGO) build --release --locked

# JOBS scenarios at once; extra arguments in RUN_ARGS (e.g. RUN_ARGS="--junit junit.xml").
JOBS ?= 2
run: setup build
	target/release/backupd-sim run scenarios -j $(JOBS) --cyrus-bin "$(CYRUS_BIN)" $(RUN_ARGS)

# The built-in end-to-end replication, printing every fact it verifies.
demo: setup build
	target/release/backupd-sim demo --cyrus-bin "$(CYRUS_BIN)"

# The Cyrus tests are required here: setup installed Cyrus, so a missing one is a failure.
test: setup
	BACKUPD_SIM_REQUIRE_CYRUS=1 $(CARGO) test --locked

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
