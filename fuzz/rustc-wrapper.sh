#!/bin/sh
# RUSTC_WRAPPER for `make fuzz` and `make fuzz-cmin`: SanitizerCoverage for our
# own code only. backupd_sim and the targets are instrumented; every dependency
# (zlib-rs and flate2 for DEFLATE, tokio, bytes, serde, ...) is built without
# it. Dependencies still run, and a panic in them is still a crash; only their
# edges and comparisons no longer steer the fuzzer. A generic function of theirs
# that backupd_sim instantiates (Conn<DuplexStream>) is compiled in backupd_sim
# and keeps its coverage. Measured on the driver target: see fuzz/README.md.
rustc=$1
shift
case " $* " in
*" --crate-name backupd_sim "* | *" --crate-name driver "* | \
  *" --crate-name session "* | *" --crate-name dlist_frame_decode "*) ;;
*)
  for arg; do
    shift
    case $arg in
    -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
    *) set -- "$@" "$arg" ;;
    esac
  done
  ;;
esac
exec "$rustc" "$@"
