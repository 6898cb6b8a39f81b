#!/bin/sh
# RUSTC_WRAPPER for `make fuzz`, `make fuzz-build` and `make fuzz-cmin`:
# SanitizerCoverage for our own code only. backupd_sim and the targets are instrumented; every dependency
# (zlib-rs and flate2 for DEFLATE, tokio, bytes, serde, ...) is built without
# it. Dependencies still run, and a panic in them is still a crash; only their
# edges and comparisons no longer steer the fuzzer. A generic function of theirs
# that backupd_sim instantiates (Conn<DuplexStream>) is compiled in backupd_sim
# and keeps its coverage. Measured on the driver target: see fuzz/README.md.
rustc=$1
shift
# By package, not crate name: a new target in fuzz/Cargo.toml is covered
# without being named here.
case ${CARGO_PKG_NAME:-} in
backupd-sim | backupd-sim-fuzz) exec "$rustc" "$@" ;;
esac
for arg; do
  shift
  case $arg in
  # sancov-module today; older cargo-fuzz passed -Cpasses=sancov.
  -Cpasses=sancov* | -Cllvm-args=-sanitizer-coverage-*) ;;
  *) set -- "$@" "$arg" ;;
  esac
done
exec "$rustc" "$@"
