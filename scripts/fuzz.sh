#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of fuzz/ for a bounded time and prints a summary.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        default 60
#
# Environment:
#   FUZZ_TARGETS="acs_input prescan"  only these targets (default: all, see `cargo fuzz list`)
#   FUZZ_SANITIZER=address            build with ASan (default none: the code under test is
#                                     Rust; libxml2/xmlsec/openssl are not instrumented either
#                                     way, and ASan costs ~5x in execs/s)
#   FUZZ_JOBS=N                       libFuzzer -fork=N (parallel workers; default 1)
#
# The toolchain is stable Rust: cargo-fuzz needs `-Z` flags (-Zsanitizer, sancov passes), which
# a stable rustc accepts with RUSTC_BOOTSTRAP=1 (set below). No nightly toolchain is needed.
# cargo-fuzz is installed from crates.io when missing (`cargo install cargo-fuzz --locked`).
#
# Corpora: fuzz/seeds/<target>/ (committed; made by fuzz/make_seeds.py) and
# tests/fuzz_corpus/<target>/ (committed regression inputs) are read; what libFuzzer finds
# goes to fuzz/corpus/<target>/ (not committed). A crash lands in fuzz/artifacts/<target>/:
# minimise it (`RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s none TARGET FILE`), copy it to
# tests/fuzz_corpus/<target>/ and `cargo test --test fuzz_regressions` replays it from then on.
# Logs: fuzz/logs/<target>.log. Exit status 1 when any target crashed.
set -euo pipefail

SECS="${1:-60}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export RUSTC_BOOTSTRAP=1
SAN="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}"

if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked) ..." >&2
  cargo install cargo-fuzz --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"

TARGETS="${FUZZ_TARGETS:-$(cargo fuzz list)}"
echo "fuzz.sh: building (sanitizer: $SAN) ..." >&2
cargo fuzz build -s "$SAN" >&2

mkdir -p fuzz/logs
declare -a ROWS CRASHED
crashed=0
for t in $TARGETS; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  dirs=("fuzz/corpus/$t")
  [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
  [ -d "tests/fuzz_corpus/$t" ] && dirs+=("tests/fuzz_corpus/$t")
  extra=()
  case "$t" in
    acs_input|prescan|decrypt|idp_metadata|slo_redirect) extra+=("-dict=fuzz/xml.dict") ;;
  esac
  [ "$JOBS" -gt 1 ] && extra+=("-fork=$JOBS" "-ignore_crashes=1")
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  echo "fuzz.sh: $t for ${SECS}s ..." >&2
  set +e
  cargo fuzz run -s "$SAN" "$t" "${dirs[@]}" -- \
    -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    "${extra[@]}" >"fuzz/logs/$t.log" 2>&1
  rc=$?
  set -e
  after=$(find "fuzz/artifacts/$t" -type f | wc -l)
  new=$((after - before))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
  [ -z "$execs" ] && execs=$(grep -o '^#[0-9]*' "fuzz/logs/$t.log" | tail -1 | tr -d '#' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "fuzz/logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
  [ -z "$rate" ] && rate=$(grep -o 'exec/s: [0-9]*' "fuzz/logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "fuzz/logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  status="ok"
  if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
    status="CRASH (exit $rc, $new new artifact(s); see fuzz/logs/$t.log)"
    crashed=1
    CRASHED+=("$t")
  fi
  ROWS+=("$(printf '%-14s %12s %9s %7s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" "$status")")
done

echo
printf '%-14s %12s %9s %7s %8s  %s\n' TARGET EXECS EXEC/S COV CORPUS RESULT
for r in "${ROWS[@]}"; do echo "$r"; done
if [ "$crashed" -ne 0 ]; then
  echo
  echo "artifacts of the targets that crashed:"
  for t in "${CRASHED[@]}"; do ls -t "fuzz/artifacts/$t" | sed "s|^|  fuzz/artifacts/$t/|"; done
  exit 1
fi
