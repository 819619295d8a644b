#!/usr/bin/env bash
# A/B of two samlgate binaries on ACS first logins, with the same harness as `load.sh acs`
# (the peers' gen_responses.py and bench_acs.py), no peers. Runs alternate A B, B A, ... so a
# slow phase of the machine hits both alike; each run gets a fresh gateway and store. Reports
# the median logins/s and server CPU ms per login of each, and B's ratio to A.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#   env: ROUNDS (4), ACS_SECONDS (10), ACS_CONC (8), SIGN (both), OUT (bench/results/ab-<UTC>),
#        STORE (sled | pg: a throwaway PostgreSQL cluster on this machine, scripts/pg.sh, a fresh
#        database per run; then the database server's CPU per login is reported too)
#
# Use it to check that a change did not slow logins down; the machine's noise between hours is
# larger than most code changes, so compare only within one A/B run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -eq 2 ] || bdie "usage: bench/ab.sh OLD_BINARY NEW_BINARY"
BIN_A="$(realpath "$1")"
BIN_B="$(realpath "$2")"
[ -x "$BIN_A" ] && [ -x "$BIN_B" ] || bdie "both binaries must exist and be executable"
ROUNDS="${ROUNDS:-4}"
ACS_SECONDS="${ACS_SECONDS:-10}"
ACS_CONC="${ACS_CONC:-8}"
SIGN="${SIGN:-both}"
STORE="${STORE:-sled}"
OUT="${OUT:-$BENCH_DIR/results/ab-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

peers_copy
cd "$PEERS"
mkdir -p out
pgdir=""
cleanup() {
    sg_stop
    [ -n "$pgdir" ] && "$REPO/scripts/pg.sh" stop "$pgdir"
    return 0
}
trap cleanup EXIT
if [ "$STORE" = pg ]; then
    pgdir=$(mktemp -d /tmp/samlgate-pg-ab.XXXXXX)
    PG_URL=$("$REPO/scripts/pg.sh" start "$pgdir")
    PSQL=$(ls /usr/lib/postgresql/*/bin/psql | head -1)
fi
# CPU ticks of the database server (postmaster and every backend), for its CPU per login.
pg_ticks() {
    [ -n "$pgdir" ] || { echo 0; return; }
    local pm t=0 p
    pm=$(head -1 "$pgdir/data/postmaster.pid")
    for p in $pm $(ps -o pid= --ppid "$pm"); do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc $(nproc); kernel $(uname -r)"
    echo "A: $BIN_A ($(sha256sum "$BIN_A" | cut -c1-12))"
    echo "B: $BIN_B ($(sha256sum "$BIN_B" | cut -c1-12))"
    echo "settings: ROUNDS=$ROUNDS ACS_SECONDS=$ACS_SECONDS ACS_CONC=$ACS_CONC SIGN=$SIGN STORE=$STORE"
} > "$OUT/environment.txt"

# Enough fresh responses for a run at up to 1,500 logins/s (plus the warm-up).
n=$(((ACS_SECONDS + 2) * 1500))
base=7000000
: > "$OUT/ab.jsonl"
for r in $(seq "$ROUNDS"); do
    order="A B"
    [ $((r % 2)) = 0 ] && order="B A"
    for which in $order; do
        if [ "$which" = A ]; then SAMLGATE_BIN="$BIN_A"; else SAMLGATE_BIN="$BIN_B"; fi
        export SAMLGATE_BIN
        sg_stop
        if [ "$STORE" = pg ]; then
            "$PSQL" "$PG_URL" -qc "CREATE DATABASE ab_${r}_${which,,}"
            export SG_STORE_LINE="url = \"${PG_URL%/*}/ab_${r}_${which,,}\""
        fi
        sg_config
        [ "$STORE" = pg ] && "$SAMLGATE_BIN" store migrate --config "$SG_DIR/samlgate.toml" >/dev/null
        sg_start
        base=$((base + n))
        "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$n" \
            --sign "$SIGN" --vary --nameid "GM$(printf '%07d' $((base % 10000000)))" --jobs 2 \
            --out out/ab.b64 2>/dev/null
        t0=$(pg_ticks)
        "$PY" bench_acs.py --label "$which" --acs "$SG_ACS" --responses out/ab.b64 \
            --concurrency "$ACS_CONC" --warmup $((ACS_CONC * 4)) --duration "$ACS_SECONDS" \
            --verify 0 --server-pidfile "$SG_DIR/samlgate.pid" > out/ab-last.json || true
        t1=$(pg_ticks)
        "$PY" - "$r" "$(cut -d' ' -f1 /proc/loadavg)" out/ab-last.json "$((t1 - t0))" "$(getconf CLK_TCK)" \
            "$ACS_CONC" >> "$OUT/ab.jsonl" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[3]))
keep = {k: d.get(k) for k in ("label", "logins_per_s", "success", "attempted", "server_cpu_ms_per_login", "server_peak_rss_mib")}
# The warm-up logins (4 per connection) ran inside the database's CPU window too.
logins = d["success"] + 4 * int(sys.argv[6])
keep["db_cpu_ms_per_login"] = int(sys.argv[4]) * 1000.0 / int(sys.argv[5]) / logins if int(sys.argv[4]) else None
keep["p50_ms"] = d["lat_ms"]["p50"]
keep["round"] = int(sys.argv[1])
keep["loadavg1"] = float(sys.argv[2])
print(json.dumps(keep))
PYEOF
        blog "round $r $which: $(tail -1 "$OUT/ab.jsonl")"
    done
done

"$PY" - "$OUT" > "$OUT/summary.md" <<'PYEOF'
import json, os, statistics, sys
d = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(d, "ab.jsonl"))]
print("# samlgate A/B, ACS first logins\n")
print("```\n" + open(os.path.join(d, "environment.txt")).read().strip() + "\n```\n")
print("| binary | logins/s per run | median | server CPU ms/login per run | median | database CPU ms/login (median) | failed |")
print("|---|---|---|---|---|---|---|")
med = {}
for lab in ("A", "B"):
    rs = [r for r in rows if r["label"] == lab]
    rate = [r["logins_per_s"] for r in rs]
    cpu = [r["server_cpu_ms_per_login"] for r in rs if r["server_cpu_ms_per_login"]]
    med[lab] = (statistics.median(rate), statistics.median(cpu) if cpu else float("nan"))
    failed = sum(r["attempted"] - r["success"] for r in rs)
    db = [r["db_cpu_ms_per_login"] for r in rs if r.get("db_cpu_ms_per_login")]
    print("| %s | %s | **%.0f** | %s | **%.3f** | %s | %d |" % (
        lab, " / ".join("%.0f" % x for x in rate), med[lab][0],
        " / ".join("%.3f" % x for x in cpu), med[lab][1],
        "%.3f" % statistics.median(db) if db else "-", failed))
print("\nB ÷ A: logins/s %.2fx, CPU per login %.2fx" % (med["B"][0] / med["A"][0], med["B"][1] / med["A"][1]))
PYEOF
cat "$OUT/summary.md"
blog "results in $OUT"
