#!/bin/sh
# One line of fuzz/campaigns.log from a libFuzzer log run with -print_final_stats=1:
#   date target seconds executions cov ft corpus_inputs new_units peak_rss_mb commit [workers]
# cov: coverage edges (libFuzzer's `cov:`), ft: features (`ft:`), both from the last
# status line; executions and the rest from the final stats.
# A -fork=N log has no final stats: its executions are the count on the parent's
# last status line (`#N: cov: ...`, the jobs that ended; a job cut off at the end
# is not counted), its seconds from `INFO: exiting`, and new inputs and peak RSS
# are not known (`?`). Its line ends in workers=N. A -fork log whose parent
# counted an out-of-memory, a timeout or a crash (`oom/timeout/crash: a/b/c`,
# only when they were ignored) is refused: no line, exit 1.
set -eu
target=$1 log=$2
stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
field() { printf '%s\n' "$last" | sed -n "s/.* $1: \([0-9]*\).*/\1/p"; }
corp=$(printf '%s\n' "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
workers=$(sed -n 's/^INFO: -fork=\([0-9]*\): fuzzing in separate.*/\1/p' "$log" | tail -1)
if [ -n "$workers" ]; then
  execs=$(printf '%s\n' "$last" | sed -n 's/^#\([0-9]*\): .*/\1/p')
  secs=$(sed -n 's/^INFO: exiting: [0-9-]* time: \([0-9]*\)s.*/\1/p' "$log" | tail -1)
  failed=$(printf '%s\n' "$last" | sed -n 's|.* oom/timeout/crash: \([0-9/]*\).*|\1|p')
  case ${failed:-0/0/0} in
  0/0/0) ;;
  *) echo "$log: oom/timeout/crash $failed (inputs in fuzz/artifacts/$target/)" >&2; exit 1 ;;
  esac
  new='?' rss='?' tail=" workers=$workers"
else
  execs=$(stat number_of_executed_units)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}')
  new=$(stat new_units_added) rss=$(stat peak_rss_mb) tail=''
fi
[ -n "$execs" ] || { echo "no final stats in $log" >&2; exit 1; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
git diff --quiet HEAD -- src fuzz/fuzz_targets fuzz/rustc-wrapper.sh 2>/dev/null || commit="$commit+changes"
printf '%s %s seconds=%s executions=%s cov=%s ft=%s corpus=%s new=%s peak_rss_mb=%s commit=%s%s\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$target" "${secs:-?}" "$execs" "$(field cov)" "$(field ft)" \
  "$corp" "$new" "$rss" "$commit" "$tail"
