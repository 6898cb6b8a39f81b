# backupd-sim: the commands users and CI run. `make help` lists them.
#
#   make run    build, install Cyrus if missing, run the built-in end-to-end replication
#   make test   the full test suite, Cyrus tests included (they fail, never skip, here)
#
# CYRUS_BIN=DIR points everything at another Cyrus build (default /usr/lib/cyrus/bin).

CARGO ?= cargo
CYRUS_BIN ?= /usr/lib/cyrus/bin
export CYRUS_BIN

.PHONY: help setup build run test lint fmt clean

help:
	@sed -n 's/^#   make /make /p' Makefile
	@echo "make setup  install cyrus-common cyrus-imapd cyrus-replication with apt-get when missing"
	@echo "make build  build the release binary target/release/backupd-sim"
	@echo "make lint   cargo fmt --check and cargo clippy -D warnings"

setup:
	@scripts/install-cyrus.sh

build:
	$(CARGO) build --release --locked

run: setup build
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
