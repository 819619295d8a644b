#!/usr/bin/env bash
# Where a login's CPU goes (issue 16, "the performance payoff"): the whole gateway under
# valgrind --tool=callgrind, N first logins (every NameID new) then the same N NameIDs again
# (returning users), each phase dumped on its own (callgrind_control -z / -d), and for each the
# inclusive instruction count of signature verification against everything else. Instruction
# counts do not depend on the machine's load, so this compares builds where wall time cannot.
#
#   bench/callgrind.sh        env: N (200), CONC (2), STORE (sled | pg), VERIFY_FN
#                             (verify_response: the SAML verify entry point, decode + xmlsec),
#                             SAMLGATE_BIN, OUT (bench/results/callgrind-<UTC>)
# valgrind is installed through scripts/install-deps.sh when missing (SAMLGATE_EXTRA_PKGS;
# not part of CI). Results: summary.md, the top of each phase's callgrind_annotate.
# Takes ~2-4 minutes for N=200 (valgrind runs the gateway ~50x slower; one core).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N="${N:-200}"
CONC="${CONC:-2}"
STORE="${STORE:-sled}"
VERIFY_FN="${VERIFY_FN:-verify_response}"
OUT="${OUT:-$BENCH_DIR/results/callgrind-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if ! command -v callgrind_control >/dev/null || ! command -v valgrind >/dev/null; then
    SAMLGATE_SKIP_BROWSER=1 SAMLGATE_SKIP_SSP=1 SAMLGATE_SKIP_VENV=1 SAMLGATE_EXTRA_PKGS=valgrind \
        "$REPO/scripts/install-deps.sh" >&2
fi
# Another gateway on the port would take the logins instead of the profiled one.
! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$SG_PORT/" || bdie "port $SG_PORT is in use (set SG_PORT)"
ensure_binary
peers_copy
pgdir=""
cleanup() {
    sg_stop
    [ -n "$pgdir" ] && "$REPO/scripts/pg.sh" stop "$pgdir"
    return 0
}
trap cleanup EXIT
if [ "$STORE" = pg ]; then
    pgdir=$(mktemp -d /tmp/samlgate-pg-cg.XXXXXX)
    export SG_STORE_LINE="url = \"$("$REPO/scripts/pg.sh" start "$pgdir")\""
fi
cd "$PEERS"
mkdir -p out
sg_config
[ "$STORE" = pg ] && "$SAMLGATE_BIN" store migrate --config "$SG_DIR/samlgate.toml" 2>/dev/null
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc $(nproc); $(valgrind --version)"
    echo "samlgate: $(cd "$REPO" && git rev-parse --short HEAD) (+ $(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock | wc -l) uncommitted files in src/Cargo), binary $SAMLGATE_BIN ($(sha256sum "$SAMLGATE_BIN" | cut -c1-12))"
    echo "settings: N=$N CONC=$CONC STORE=$STORE VERIFY_FN=$VERIFY_FN; both signatures, the peers' gen_responses.py --vary"
} > "$OUT/environment.txt"

"$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$N" --sign both \
    --vary --nameid GM7100000 --jobs 2 --out out/cg-first.b64 2>/dev/null
"$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$N" --sign both \
    --vary --nameid GM7100000 --jobs 2 --out out/cg-returning.b64 2>/dev/null
# One warm-up login (thread pools, caches, the first user row) outside both phases.
"$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count 1 --sign both \
    --nameid GM7199999 --out out/cg-warm.b64 2>/dev/null

(cd "$SG_DIR" && exec valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "$SAMLGATE_BIN" serve --config samlgate.toml >>"$SG_DIR/samlgate.log" 2>&1) &
echo $! > "$SG_DIR/samlgate.pid"
for i in $(seq 600); do
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$SG_PORT/readyz" && break
    sleep 0.2
done
curl -sf -o /dev/null "http://127.0.0.1:$SG_PORT/readyz" || bdie "samlgate under valgrind did not start"
pid=$(cat "$SG_DIR/samlgate.pid")

phase() {  # NAME POOL: zero the counters, post the pool, dump
    callgrind_control --zero "$pid" >/dev/null 2>&1
    "$PY" bench_acs.py --label "$1" --acs "$SG_ACS" --responses "$2" --concurrency "$CONC" \
        --warmup 0 --duration 3600 --verify 0 > "$OUT/$1.json" || true
    callgrind_control --dump="$1" "$pid" >/dev/null 2>&1
    blog "$1: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["success"], "of", d["attempted"], "ok")' "$OUT/$1.json")"
}
"$PY" bench_acs.py --acs "$SG_ACS" --responses out/cg-warm.b64 --concurrency 1 --warmup 0 \
    --verify 0 > /dev/null || true
phase first out/cg-first.b64
phase returning out/cg-returning.b64
sg_stop

# Each dump is <out>.<n>, in order: first, returning (<out> itself: the rest, at exit).
set -- "$OUT/callgrind.out.1" "$OUT/callgrind.out.2"
[ -s "$1" ] && [ -s "$2" ] || bdie "expected two dumps: $(ls "$OUT")"
for d in "$@"; do
    callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$d" > "$d.annotate.txt" 2>/dev/null
done
"$PY" - "$OUT" "$VERIFY_FN" "$N" "$1.annotate.txt" "$2.annotate.txt" > "$OUT/summary.md" <<'PYEOF'
import json, os, re, sys
out, fn, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
num = lambda s: int(s.replace(",", ""))

def split(path):
    text = open(path).read()
    total = num(re.search(r"^([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text, re.M).group(1))
    def incl(name):
        best = 0
        for m in re.finditer(r"^\s*([\d,]+) \([\d.]+%\)\s+\S*?(\S+)", text, re.M):
            sym = m.group(2)
            if re.search(r"(^|::|:)" + re.escape(name) + r"($|\s|\[)", sym):
                best = max(best, num(m.group(1)))
        return best
    return total, incl(fn), incl("xmlSecDSigCtxVerify")

print("# callgrind: signature verification vs the rest of a login (bench/callgrind.sh)\n")
print("```\n" + open(os.path.join(out, "environment.txt")).read().strip() + "\n```\n")
print("| phase | logins ok | instructions, whole process | per login | `%s` (incl.) per login | share | rest per login | of which `xmlSecDSigCtxVerify` per login |" % fn)
print("|---|---|---|---|---|---|---|---|")
for phase, path in (("first", sys.argv[4]), ("returning", sys.argv[5])):
    ok = json.load(open(os.path.join(out, phase + ".json")))["success"] or 1
    total, verify, dsig = split(path)
    if verify == 0:
        sys.exit("no %s in the %s profile: the logins did not reach the profiled gateway" % (fn, phase))
    print("| %s | %d/%d | %s | %.2f M | %.2f M | %.0f %% | **%.2f M** | %.2f M |" % (
        phase, ok, n, format(total, ","), total / ok / 1e6, verify / ok / 1e6,
        100.0 * verify / total, (total - verify) / ok / 1e6, dsig / ok / 1e6))
PYEOF
# Keep the top of each annotation (the raw profiles are MBs: KEEP_RAW=1 keeps them).
for d in "$OUT"/callgrind.out.1 "$OUT"/callgrind.out.2; do
    head -n 120 "$d.annotate.txt" > "$d.top.txt"
    rm -f "$d.annotate.txt"
done
[ "${KEEP_RAW:-0}" = 1 ] || rm -f "$OUT"/callgrind.out "$OUT"/callgrind.out.[0-9]
cat "$OUT/summary.md"
blog "results in $OUT (callgrind.out.{1,2}.top.txt: the top of callgrind_annotate --inclusive=yes)"
