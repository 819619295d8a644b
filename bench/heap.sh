#!/usr/bin/env bash
# Where does samlgate's memory go over many logins? Runs the gateway under heaptrack (Debian
# package), registers CHUNK users (first logins), posts the same NameIDs again ROUNDS times
# (returning users), stops the gateway cleanly and prints heaptrack's summary: peak heap,
# allocations still live at exit ("leaked": includes whatever the store still holds), and the
# call sites behind them.
#
# Slow: heaptrack makes the gateway ~20x slower (about 10 minutes with the defaults).
# usage: bench/heap.sh     env: CHUNK (3000), ROUNDS (1), LAYOUT (response), OUT (bench/results/heap-<UTC>)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CHUNK="${CHUNK:-3000}"
ROUNDS="${ROUNDS:-1}"
LAYOUT="${LAYOUT:-response}"
OUT="${OUT:-$BENCH_DIR/results/heap-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
peers_copy
(source "$PEERS/common.sh" && ensure_pkgs heaptrack) >&2
ensure_binary
cd "$PEERS"
mkdir -p out

sg_stop
sg_config
# the gateway under heaptrack (heaptrack execs the program; its pid is the gateway's)
(cd "$SG_DIR" && exec heaptrack -o "$OUT/heaptrack.samlgate" "$SAMLGATE_BIN" serve --config samlgate.toml >>"$SG_DIR/samlgate.log" 2>&1) &
echo $! > "$SG_DIR/heaptrack.pid"
for i in $(seq 300); do curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$SG_PORT/healthz" && break; sleep 0.1; done
pgrep -n -x samlgate.bin > "$SG_DIR/samlgate.pid"  # the newest: the gateway, not the heaptrack wrapper
trap 'sg_stop' EXIT

for r in $(seq 0 "$ROUNDS"); do
    "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$CHUNK" --sign "$LAYOUT" \
        --vary --nameid GM7000000 --jobs 2 --out out/heap.b64 2>/dev/null
    "$PY" bench_acs.py --acs "$SG_ACS" --responses out/heap.b64 --concurrency 8 --verify 0 \
        --server-pidfile "$SG_DIR/samlgate.pid" > out/heap-last.json || true
    blog "round $r ($([ "$r" = 0 ] && echo first logins || echo returning)): $("$PY" -c 'import json; d=json.load(open("out/heap-last.json")); print(d["success"], "ok,", d["logins_per_s"], "logins/s, RSS peak", d.get("server_peak_rss_mib"), "MiB")')"
done
sg_stop
wait || true
f="$(ls "$OUT"/heaptrack.samlgate*.zst "$OUT"/heaptrack.samlgate*.gz 2>/dev/null | head -1)"
[ -n "$f" ] || bdie "no heaptrack output"
heaptrack_print -f "$f" --print-leaks 1 --print-peaks 1 --print-allocators 0 --print-temporary 0 \
    --peak-limit 12 --sub-peak-limit 4 > "$OUT/heaptrack-full.txt" 2>&1 || true
{ grep -E "^(total runtime|calls to allocation|temporary memory|peak heap memory|peak RSS|total memory leaked)" "$OUT/heaptrack-full.txt"
  head -400 "$OUT/heaptrack-full.txt"; } > "$OUT/heaptrack-top.txt"
rm -f "$OUT/heaptrack-full.txt"
# live-at-exit bytes by the innermost frame of interest (sled, samlgate, samael, hyper, ...)
heaptrack_print -f "$f" --print-leaks 0 --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    --flamegraph-cost-type leaked -F "$OUT/leaks.stacks" > /dev/null 2>&1 || true
python3 - "$OUT/leaks.stacks" > "$OUT/leaks-by-site.txt" <<'PYEOF'
import collections, re, sys
tot = 0; by = collections.Counter(); sled = 0
for l in open(sys.argv[1]):
    stack, _, n = l.rstrip().rpartition(' ')
    n = int(n); tot += n
    frames = stack.split(';')
    if any('sled::' in f for f in frames):
        sled += n
    key = next((re.sub(r'::h[0-9a-f]{16}', '', f)[:110] for f in reversed(frames)
                if re.search(r'sled::|samlgate::|samael::|xmlsec|hyper::|tokio::|tracing|serde_json', f)),
               '(other) ' + frames[-1][:80])
    by[key] += n
print("live at the end of the trace: %.1f MB; with a sled frame on the stack: %.1f MB (%.0f %%)"
      % (tot / 1e6, sled / 1e6, 100.0 * sled / max(tot, 1)))
for k, v in by.most_common(20):
    print("%8.2f MB  %s" % (v / 1e6, k))
PYEOF
cat "$OUT/leaks-by-site.txt"
rm -f "$OUT/leaks.stacks"
[ -n "${KEEP_TRACE:-}" ] || rm -f "$f"   # the raw trace is tens of MB
grep -E "^(total runtime|calls to allocation|temporary memory|peak heap memory|peak RSS|total memory leaked)" "$OUT/heaptrack-top.txt"
blog "report: $OUT/heaptrack-top.txt, $OUT/leaks-by-site.txt"
