#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 300) each, one after the other at the lowest priority, on
# the seeds from seed.sh plus the corpus kept in fuzz/corpus/<target>/ from earlier runs, then prints a table
# of the executions per target (libFuzzer's final stats). Exits 1 if any target found a crash, a panic (a
# failed invariant), a timeout or an out-of-memory; the input is saved in fuzz/artifacts/<target>/ and
# `cargo fuzz run <target> fuzz/artifacts/<target>/<file>` replays it.
#
# Used by `make fuzz` and `make fuzz-ci` (FUZZ_SECONDS=15). FUZZ_TARGETS limits the run to some targets.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-300}
read -r -a targets <<<"${FUZZ_TARGETS:-chunker parts realigner sps stream_id}"

# cargo fuzz needs a nightly compiler (for -Z flags); where there is none, stable is told to accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly)
else
  echo "fuzz: no nightly toolchain, using stable with RUSTC_BOOTSTRAP=1"
  cargo=(cargo)
  export RUSTC_BOOTSTRAP=1
fi
# Every ladder crate forbids unsafe code, so AddressSanitizer would find little and halve the speed; panics,
# overflow checks and debug assertions are on (cargo fuzz's release build keeps them).
fuzz=("${cargo[@]}" fuzz)
flags=(--sanitizer none)

./seed.sh
echo "fuzz: building the targets"
nice -n 19 "${fuzz[@]}" build "${flags[@]}"

max_len() {
  case $1 in
    sps | stream_id) echo 512 ;;
    *) echo 16384 ;;
  esac
}
dict() {
  case $1 in
    stream_id) echo stream_id.dict ;;
    chunker | parts | realigner) echo ts.dict ;;
  esac
}

mkdir -p logs
failed=()
rows=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  options=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$target")")
  [ -n "$(dict "$target")" ] && options+=(-dict="$(dict "$target")")
  echo "fuzz: $target for $seconds s"
  status=0
  nice -n 19 "${fuzz[@]}" run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- "${options[@]}" \
    >"logs/$target.log" 2>&1 || status=$?
  log="logs/$target.log"
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
  corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed+=("$target")
    echo "fuzz: $target FAILED (exit $status):"
    grep -E "panicked at|^thread|ERROR: libFuzzer|SUMMARY|Test unit written|^[a-z].*(assert|overflow|index)" "$log" | head -12 | sed 's/^/  /'
  fi
  rows+=("| $target | $seconds | $execs | $((execs / (seconds > 0 ? seconds : 1))) | $corpus | $crashes |")
done

{
  echo "| target | seconds | executions | exec/s | corpus | crashes |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee logs/summary.md
total=0
for row in "${rows[@]}"; do total=$((total + $(echo "$row" | cut -d'|' -f4))); done
echo "fuzz: $total executions in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}; inputs in fuzz/artifacts/, logs in fuzz/logs/" >&2
  exit 1
fi
