#!/usr/bin/env bash
# sled vs PostgreSQL, one binary: ACS first logins/s at concurrency 8 (the peers' harness, as in
# ab.sh) and GET /auth/verify req/s with a live session (wrk -c8), alternating the backends so
# a slow phase of the machine hits both alike. PostgreSQL is a throwaway cluster on this
# machine (scripts/pg.sh), a fresh database per run.
#
# One response set serves every run (each run has a fresh store, so none is a replay there),
# which keeps the whole run near a minute of CPU.
#
#   bench/store.sh        env: ROUNDS (1), ACS_SECONDS (5), ACS_CONC (8), VERIFY_SECONDS (5)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS="${ROUNDS:-1}"
ACS_SECONDS="${ACS_SECONDS:-5}"
ACS_CONC="${ACS_CONC:-8}"
VERIFY_SECONDS="${VERIFY_SECONDS:-5}"
OUT="${OUT:-$BENCH_DIR/results/store-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

ensure_binary
peers_copy
pgdir=$(mktemp -d /tmp/samlgate-pg-bench.XXXXXX)
trap 'sg_stop; "$REPO/scripts/pg.sh" stop "$pgdir"' EXIT
PG_URL=$("$REPO/scripts/pg.sh" start "$pgdir")
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | head -1)
cd "$PEERS"
mkdir -p out
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc $(nproc); kernel $(uname -r); $(grep -m1 'model name' /proc/cpuinfo)"
    echo "binary: $SAMLGATE_BIN ($(sha256sum "$SAMLGATE_BIN" | cut -c1-12)); PostgreSQL: $("$PSQL" "$PG_URL" -tAc 'show server_version')"
    echo "settings: ROUNDS=$ROUNDS ACS_SECONDS=$ACS_SECONDS ACS_CONC=$ACS_CONC VERIFY_SECONDS=$VERIFY_SECONDS"
} > "$OUT/environment.txt"

n=$(((ACS_SECONDS + 2) * 1000))
: > "$OUT/store.jsonl"
generated=""
for r in $(seq "$ROUNDS"); do
    order="sled pg"
    [ $((r % 2)) = 0 ] && order="pg sled"
    for backend in $order; do
        sg_stop
        if [ "$backend" = pg ]; then
            "$PSQL" "$PG_URL" -qc "CREATE DATABASE bench_$r"
            export SG_STORE_LINE="url = \"${PG_URL%/*}/bench_$r\""
        else
            unset SG_STORE_LINE
        fi
        sg_config
        [ "$backend" = pg ] && "$SAMLGATE_BIN" store migrate --config "$SG_DIR/samlgate.toml" 2>/dev/null
        sg_start
        if [ -z "$generated" ]; then
            "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$n" \
                --sign both --vary --nameid GM8000000 --jobs 2 --out out/store.b64 2>/dev/null
            generated=1
        fi
        "$PY" bench_acs.py --label "$backend" --acs "$SG_ACS" --responses out/store.b64 \
            --concurrency "$ACS_CONC" --warmup $((ACS_CONC * 4)) --duration "$ACS_SECONDS" \
            --verify 0 --server-pidfile "$SG_DIR/samlgate.pid" > out/store-last.json || true
        cookie="$(sg_session GM0999998)"
        [ -n "$cookie" ] || bdie "no session cookie from $backend"
        verify_rps=$(wrk -t2 -c8 -d"${VERIFY_SECONDS}s" -H "Cookie: $cookie" \
            "http://127.0.0.1:$SG_PORT/auth/verify" | awk '/Requests\/sec/ {print $2}')
        "$PY" - "$r" "$verify_rps" out/store-last.json >> "$OUT/store.jsonl" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[3]))
keep = {k: d.get(k) for k in ("label", "logins_per_s", "success", "attempted", "server_cpu_ms_per_login")}
keep["p50_ms"] = d["lat_ms"]["p50"]
keep["round"] = int(sys.argv[1])
keep["verify_rps"] = float(sys.argv[2] or 0)
print(json.dumps(keep))
PYEOF
        blog "round $r $backend: $(tail -1 "$OUT/store.jsonl")"
    done
done
"$PY" - "$OUT" > "$OUT/summary.md" <<'PYEOF'
import json, os, statistics, sys
d = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(d, "store.jsonl"))]
print("# samlgate sled vs PostgreSQL\n")
print("```\n" + open(os.path.join(d, "environment.txt")).read().strip() + "\n```\n")
print("| store | ACS logins/s per run | median | CPU ms/login | /auth/verify req/s per run | median | failed logins |")
print("|---|---|---|---|---|---|---|")
med = {}
for lab in ("sled", "pg"):
    rs = [r for r in rows if r["label"] == lab]
    rate = [r["logins_per_s"] for r in rs]
    ver = [r["verify_rps"] for r in rs]
    cpu = [r["server_cpu_ms_per_login"] for r in rs if r["server_cpu_ms_per_login"]]
    med[lab] = (statistics.median(rate), statistics.median(ver))
    print("| %s | %s | **%.0f** | %s | %s | **%.0f** | %d |" % (
        lab, " / ".join("%.0f" % x for x in rate), med[lab][0],
        " / ".join("%.2f" % x for x in cpu), " / ".join("%.0f" % x for x in ver), med[lab][1],
        sum(r["attempted"] - r["success"] for r in rs)))
print("\nPostgreSQL ÷ sled: ACS %.2fx, /auth/verify %.2fx" % (med["pg"][0] / med["sled"][0], med["pg"][1] / med["sled"][1]))
PYEOF
cat "$OUT/summary.md"
blog "results in $OUT"
