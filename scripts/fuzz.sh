#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer)
# and runs each for SECONDS (default 60), starting from the committed seeds
# in fuzz/corpus/<target>/ (read only; what the run finds goes to
# fuzz/target/corpus/<target>/). Prints executions, coverage and findings
# per target; a crash input is kept in fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="wire_decode selector_parse" bash scripts/fuzz.sh 300
#   FUZZ_RELEASE=1 bash scripts/fuzz.sh 600    # optimized build, faster runs
#   FUZZ_ARGS="-seed=1 -max_len=8192" bash scripts/fuzz.sh   # more libFuzzer options
#
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz from
# crates.io when missing. Exit status: 0 when no target found anything,
# 1 on findings, 2 when nightly is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
targets=${FUZZ_TARGETS:-"wire_decode selector_parse schema_load pool_manager"}

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (cargo +nightly); libFuzzer needs it." >&2
  echo "fuzz: install it with 'rustup toolchain install nightly' and run again." >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

profile=(--dev)
[ "${FUZZ_RELEASE:-0}" = 1 ] && profile=(--release)
start=$(date +%s)
(cd fuzz && cargo +nightly fuzz build "${profile[@]}")
echo "fuzz: built in $(( $(date +%s) - start )) s"

failed=0
summary=()
for t in $targets; do
  work=fuzz/target/corpus/$t
  log=fuzz/target/$t.log
  mkdir -p "$work" "fuzz/artifacts/$t"
  echo "fuzz: running $t for $seconds s" >&2
  set +e
  # The pool_manager target keeps a manager and its threads across inputs:
  # libFuzzer's per-input leak check then reports the thread records of
  # threads still running. Leaks of the manager are the soak test's job.
  extra=()
  [ "$t" = pool_manager ] && extra=(-detect_leaks=0)
  (cd fuzz && cargo +nightly fuzz run "${profile[@]}" "$t" "../$work" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=60 -print_final_stats=1 "${extra[@]}" ${FUZZ_ARGS:-}) >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -oE '^Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  [ -n "$runs" ] || runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  corpus=$(find "$work" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    verdict="ok"
  else
    failed=1
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
    why=$(grep -m1 -oE "panicked at [^ ]+|ERROR: [A-Za-z]+: [a-z-]+[^(]*|ERROR: libFuzzer: [a-z-]+" "$log" || true)
    verdict="FINDING (${why:-exit $rc}) ${artifact:+input: $artifact}; log: $log"
  fi
  summary+=("$(printf '%-15s %10s %8s %7s %7s  %s' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" "$verdict")")
done

printf '%-15s %10s %8s %7s %7s  %s\n' target executions exec/s cov corpus result
printf '%s\n' "${summary[@]}"
echo "fuzz: done in $(( $(date +%s) - start )) s"
exit "$failed"
