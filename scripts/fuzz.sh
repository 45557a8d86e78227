#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (fuzz/README.md) for FUZZ_SECONDS each, one after another,
# and exits non-zero when any of them crashed. Run through `make fuzz`.
#
#   FUZZ_SECONDS    seconds per target (default 60)
#   FUZZ_TARGETS    which targets, space-separated (default: all)
#   FUZZ_SANITIZER  address (default) or none: cargo fuzz's -s
#
# The corpus grows in target/fuzz-corpus/<target> (out of git), read together with the
# committed seeds in fuzz/corpus/<target>; crashes land in target/fuzz-artifacts/<target>/.
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-address}
# cargo fuzz passes nightly-only flags (-Zsanitizer, …); the stable compiler accepts them so.
export RUSTC_BOOTSTRAP=1

cargo_tool cargo-fuzz cargo-fuzz "$CARGO_FUZZ_VERSION"
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"

step "building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer"

crashed=0
summary=()
total=0
for target in "${targets[@]}"; do
  corpus=target/fuzz-corpus/$target
  artifacts=target/fuzz-artifacts/$target
  log=target/fuzz-logs/$target.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  step "fuzzing $target for ${seconds}s"
  dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=("-dict=fuzz/dict/$target.dict")
  # New inputs go to the first corpus directory only: fuzz/corpus is read, never written.
  status=0
  cargo fuzz run -s "$sanitizer" "$target" "$corpus" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=20 \
    -artifact_prefix="$artifacts/" "${dict[@]}" >"$log" 2>&1 || status=$?
  execs=$(awk '/^stat::number_of_executed_units/ { n = $NF } END { print n + 0 }' "$log")
  rate=$(awk '/^stat::average_exec_per_sec/ { n = $NF } END { print n + 0 }' "$log")
  corp=$(awk '{ for (i = 1; i < NF; i++) if ($i == "corp:") { split($(i + 1), c, "/"); n = c[1] } } END { print n }' "$log")
  total=$((total + execs))
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="CRASHED (exit $status; $log, $artifacts/)"
    crashed=1
    grep -E -m 5 'panicked|ERROR|SUMMARY|Test unit written' "$log" || tail -20 "$log"
  fi
  summary+=("$(printf '%-18s %6ss %12s execs %8s exec/s  corpus %5s  %s' \
    "$target" "$seconds" "$execs" "$rate" "${corp:-?}" "$result")")
done

step "fuzz summary"
printf '%s\n' "${summary[@]}"
echo "total: $total executions"
exit "$crashed"
