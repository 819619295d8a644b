#!/usr/bin/env bash
# Is samlgate's RSS flat over many logins? For each signature layout (Response-signed,
# Assertion-signed, both signed): a fresh gateway (new store), then LOGINS distinct valid
# Responses posted to /saml/acs in chunks of CHUNK (gen_responses.py --jobs 2 right before each
# chunk, so none is stale; bench_acs.py at concurrency CONC posts them), VmRSS read after every
# chunk. samael leaks ~2.4 KB per Assertion-only-signed verify in its default reduce mode
# (research/samael.md §5); samlgate uses ReduceMode::PreDigest.
#
# NameIDs: every chunk uses the same CHUNK NameIDs (GM5000000...), so the first chunk registers
# CHUNK users and later chunks are returning users; every login still makes a new session and
# two replay-cache entries in the store, which stay (sessions live 30 min idle / 8 h), so part
# of any growth is the store holding them. The in-process loop (`SAMLGATE_BENCH_RSS=N cargo
# bench --bench acs`, no store, no HTTP) isolates the verify path; see bench/RESULTS.md.
#
# usage: bench/rss.sh      env: LOGINS (100000), CHUNK (10000), CONC (8),
#        LAYOUTS ("response assertion both"), OUT (bench/results/rss-<UTC>), SAMLGATE_BIN,
#        VALIDITY (assertion NotOnOrAfter, s; 600)
# Plateau run (records expire while it runs, so the live set levels off):
#   SG_IDLE_MINUTES=1 SG_SKEW=5 SG_MAX_ISSUE_DELAY=60 VALIDITY=60 CHUNK=5000 LOGINS=200000 LAYOUTS=assertion bench/rss.sh
#   (max_issue_delay must exceed the time to sign and post one chunk, or late posts are refused)
# Output: $OUT/rss.jsonl (one line per sample), $OUT/summary.md
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LOGINS="${LOGINS:-100000}"
CHUNK="${CHUNK:-10000}"
CONC="${CONC:-8}"
LAYOUTS="${LAYOUTS:-response assertion both}"
OUT="${OUT:-$BENCH_DIR/results/rss-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

peers_copy
ensure_binary
cd "$PEERS"
mkdir -p out
trap 'sg_stop' EXIT

sample() {  # layout logins ok_total chunk_peak_rss_mib
    local pid st
    pid="$(cat "$SG_DIR/samlgate.pid")"
    st="/proc/$pid/status"
    printf '{"layout":"%s","logins":%d,"ok":%d,"rss_kib":%d,"rss_anon_kib":%d,"hwm_kib":%d,"chunk_peak_rss_mib":%s,"threads":%d,"store_kib":%d,"loadavg":"%s","t":"%s"}\n' \
        "$1" "$2" "$3" "$(awk '/^VmRSS/ {print $2}' "$st")" "$(awk '/^RssAnon/ {print $2}' "$st")" \
        "$(awk '/^VmHWM/ {print $2}' "$st")" "$4" "$(awk '/^Threads/ {print $2}' "$st")" \
        "$(du -sk "$SG_DIR/store" | cut -f1)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%H:%M:%S)" >> "$OUT/rss.jsonl"
    tail -1 "$OUT/rss.jsonl" >&2
}

: > "$OUT/rss.jsonl"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc $(nproc); $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); kernel $(uname -r)"
    echo "samlgate: $(cd "$REPO" && git rev-parse --short HEAD) (+ $(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock | wc -l) uncommitted files in src/Cargo)"
    echo "settings: LOGINS=$LOGINS CHUNK=$CHUNK CONC=$CONC LAYOUTS=\"$LAYOUTS\" VALIDITY=${VALIDITY:-600} SG_IDLE_MINUTES=${SG_IDLE_MINUTES:-30} SG_SKEW=${SG_SKEW:-60} SG_MAX_ISSUE_DELAY=${SG_MAX_ISSUE_DELAY:-300}"
    echo "loadavg at start: $(cat /proc/loadavg)"
} > "$OUT/environment.txt"

for layout in $LAYOUTS; do
    sg_stop
    sg_config
    sg_start
    sleep 1
    sample "$layout" 0 0 null
    done_n=0
    ok_n=0
    while [ "$done_n" -lt "$LOGINS" ]; do
        n=$CHUNK
        [ $((LOGINS - done_n)) -lt "$n" ] && n=$((LOGINS - done_n))
        # the same CHUNK NameIDs again in every chunk (returning users after the first)
        "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$n" --sign "$layout" \
            --vary --nameid GM5000000 --jobs 2 --validity "${VALIDITY:-600}" --out out/rss.b64 2>/dev/null
        "$PY" bench_acs.py --acs "$SG_ACS" --responses out/rss.b64 --concurrency "$CONC" --verify 0 \
            --server-pidfile "$SG_DIR/samlgate.pid" > out/rss-last.json || true
        read -r ok peak rate < <("$PY" -c 'import json; d=json.load(open("out/rss-last.json")); print(d["success"], d.get("server_peak_rss_mib"), d["logins_per_s"])')
        done_n=$((done_n + n))
        ok_n=$((ok_n + ok))
        [ "$ok" = "$n" ] || blog "WARNING: $layout chunk: only $ok of $n logins succeeded"
        blog "$layout: $done_n posted, $ok_n ok, chunk at $rate logins/s"
        sample "$layout" "$done_n" "$ok_n" "$peak"
    done
done
echo "loadavg at end: $(cat /proc/loadavg)" >> "$OUT/environment.txt"

"$PY" - "$OUT" > "$OUT/summary.md" <<'PYEOF'
import json, sys, os
d = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(d, "rss.jsonl"))]
print("# samlgate RSS over many logins\n")
print("```\n" + open(os.path.join(d, "environment.txt")).read().strip() + "\n```\n")
print("| layout | logins ok | RSS start MiB | RSS after 1st chunk MiB | RSS end MiB | peak MiB (VmHWM) | end - 1st chunk | per login after 1st chunk | store on disk MiB |")
print("|---|---|---|---|---|---|---|---|---|")
for lay in dict.fromkeys(r["layout"] for r in rows):
    rs = [r for r in rows if r["layout"] == lay]
    s, one, e = rs[0], rs[1] if len(rs) > 1 else rs[0], rs[-1]
    n = e["logins"] - one["logins"]
    per = (e["rss_kib"] - one["rss_kib"]) * 1024 / n if n else 0
    print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %+.1f MiB | %.0f B | %.1f |" % (
        lay, e["ok"], s["rss_kib"] / 1024, one["rss_kib"] / 1024, e["rss_kib"] / 1024,
        max(r["hwm_kib"] for r in rs) / 1024, (e["rss_kib"] - one["rss_kib"]) / 1024, per,
        e["store_kib"] / 1024))
print("\nRSS (MiB) after each chunk:\n")
lays = list(dict.fromkeys(r["layout"] for r in rows))
print("| logins | " + " | ".join(lays) + " |")
print("|---|" + "---|" * len(lays))
for n in sorted({r["logins"] for r in rows}):
    cells = []
    for lay in lays:
        m = [r for r in rows if r["layout"] == lay and r["logins"] == n]
        cells.append("%.1f" % (m[0]["rss_kib"] / 1024) if m else "-")
    print("| %d | %s |" % (n, " | ".join(cells)))
PYEOF
cat "$OUT/summary.md"
blog "results in $OUT"
