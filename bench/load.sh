#!/usr/bin/env bash
# samlgate under HTTP load, side by side with the peers (Shibboleth SP, mod_auth_mellon, nginx)
# in the same run, on loopback. About 12-15 minutes with the defaults.
#
#   acs      ACS logins at concurrency 8: each post a fresh signed Response (gen_responses.py,
#            --vary: every login a new NameID) posted by the peers' bench_acs.py; peers and
#            samlgate restarted before each round, order alternating. For samlgate two rows:
#              samlgate            first logins (every NameID new: the user row is created)
#              samlgate-returning  the same NameIDs again right after (users exist already)
#            logins/s, p50/p99, server CPU ms per login, peak RSS (procstat.py).
#   session  wrk on nginx static /public/menu.html (the ceiling) vs samlgate GET /auth/verify
#            with a live session cookie (and the peers' protected /staff/menu.html), 8 and 64
#            connections, SESSION_SECONDS each, REPEATS rounds interleaved.
#   mixed    (not in the default) wrk -c8 on samlgate /auth/verify and, as the control, on
#            nginx static, each alone and each while bench_acs.py posts returning-user logins
#            to samlgate at concurrency 8: does login work (done on the async worker threads:
#            store writes, flush, policy) delay forward-auth more than plain CPU sharing does?
#
# usage: bench/load.sh [acs] [session] [mixed]    (default: acs session)
#   env: REPEATS (3), ACS_SECONDS (10), ACS_CONC (8), SESSION_SECONDS (10), CONNS ("8 64"),
#        PEER_LIST ("shib mellon"), SESSION_PEERS ("shib mellon"), OUT (bench/results/load-<UTC>),
#        SAMLGATE_BIN (default: cargo build --release, binary copied aside), BENCH_WORK
# Output: $OUT/{environment.txt,acs.jsonl,session.jsonl,mixed.jsonl,summary.md,samlgate-log-tail.txt}
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SECTIONS="${*:-acs session}"
REPEATS="${REPEATS:-3}"
ACS_SECONDS="${ACS_SECONDS:-10}"
ACS_CONC="${ACS_CONC:-8}"
SESSION_SECONDS="${SESSION_SECONDS:-10}"
CONNS="${CONNS:-8 64}"
PEER_LIST="${PEER_LIST:-shib mellon}"
SESSION_PEERS="${SESSION_PEERS:-shib mellon}"
OUT="${OUT:-$BENCH_DIR/results/load-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

peers_copy
# shellcheck disable=SC1091
(source "$PEERS/common.sh" && ensure_pkgs apache2 libapache2-mod-auth-mellon libapache2-mod-shib \
    shibboleth-sp-utils nginx wrk xmlsec1 curl openssl) >&2
ensure_binary
cd "$PEERS"
mkdir -p out

declare -A ENTITY ACS WHOAMI PIDF
ENTITY[mellon]="http://127.0.0.1:18081/mellon/metadata"
ACS[mellon]="http://127.0.0.1:18081/mellon/postResponse"
WHOAMI[mellon]="http://127.0.0.1:18081/staff/whoami"
PIDF[mellon]="--server-pidfile run/mellon/httpd.pid"
ENTITY[shib]="http://127.0.0.1:18082/shibboleth"
ACS[shib]="http://127.0.0.1:18082/Shibboleth.sso/SAML2/POST"
WHOAMI[shib]="http://127.0.0.1:18082/staff/whoami"
PIDF[shib]="--server-pidfile run/shib/httpd.pid --server-pidfile run/shib/shibd.pid"
ENTITY[samlgate]="$SG_ENTITY"
ACS[samlgate]="$SG_ACS"
WHOAMI[samlgate]="http://127.0.0.1:$SG_PORT/auth/userinfo"   # JSON with "user": <NameID>
PIDF[samlgate]="--server-pidfile $SG_DIR/samlgate.pid"

# pool sizes: responses for ACS_SECONDS at well above the rates expected (a run stops at
# ACS_SECONDS or when its pool is used up)
pool_size() {
    case "$1" in
        mellon) echo $((ACS_SECONDS * 60)) ;;
        shib) echo $((ACS_SECONDS * 800)) ;;
        *) echo $((ACS_SECONDS * 1500)) ;;
    esac
}

cleanup() {
    sg_stop
    ./stop-all.sh >/dev/null 2>&1 || true
    # the gateway's last 200 log lines, colour codes stripped
    [ -f "$SG_DIR/samlgate.log" ] && tail -n 200 "$SG_DIR/samlgate.log" | sed 's/\x1b\[[0-9;]*m//g' > "$OUT/samlgate-log-tail.txt" 2>/dev/null || true
}
trap cleanup EXIT

restart_all() {  # fresh peers and a fresh samlgate (new store)
    sg_stop
    ./stop-all.sh >/dev/null 2>&1 || true
    local p
    for p in $PEER_LIST; do "./start-$p.sh" >/dev/null 2>&1 || bdie "start-$p.sh failed"; done
    [[ " $SECTIONS " == *" session "* ]] && { ./start-nginx.sh >/dev/null 2>&1 || bdie "start-nginx.sh failed"; }
    sg_config
    sg_start
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "debian: $(cat /etc/debian_version)"
    echo "samlgate: $(cd "$REPO" && git rev-parse --short HEAD) (+ uncommitted: $(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock | wc -l) files in src/Cargo), binary $SAMLGATE_BIN"
    echo "rustc: $(rustc --version 2>/dev/null)"
    dpkg-query -W -f='${Package} ${Version}\n' apache2 libapache2-mod-auth-mellon libapache2-mod-shib \
        shibboleth-sp-utils nginx wrk libssl3 libxmlsec1 libxml2 2>/dev/null
    echo "settings: REPEATS=$REPEATS ACS_SECONDS=$ACS_SECONDS ACS_CONC=$ACS_CONC SESSION_SECONDS=$SESSION_SECONDS CONNS=\"$CONNS\" PEER_LIST=\"$PEER_LIST\" SESSION_PEERS=\"$SESSION_PEERS\""
    echo "loadavg at start: $(cat /proc/loadavg)"
} > "$OUT/environment.txt"
cat "$OUT/environment.txt" >&2

jq_line() {  # FILE KEY=VAL... : add keys to the JSON in FILE, print one line
    "$PY" - "$@" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
for kv in sys.argv[2:]:
    k, _, v = kv.partition("=")
    try:
        d[k] = json.loads(v)
    except ValueError:
        d[k] = v
print(json.dumps(d, ensure_ascii=False))
PYEOF
}
brief() {
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d.get("label"), d["logins_per_s"], "logins/s p50", d["lat_ms"]["p50"], "p99", d["lat_ms"]["p99"], "ms; ok", d["success"], "of", d["attempted"], "verify", d.get("verify",{}).get("ok"), "/", d.get("verify",{}).get("checked"), "cpu ms/login", d.get("server_cpu_ms_per_login"), "peak RSS MiB", d.get("server_peak_rss_mib"))'
}

acs_run() {  # rep label peer pool [extra bench_acs args]
    local rep="$1" label="$2" p="$3" pool="$4"
    shift 4
    # shellcheck disable=SC2086
    "$PY" bench_acs.py --label "$label" --acs "${ACS[$p]}" --responses "$pool" \
        --concurrency "$ACS_CONC" --warmup $((ACS_CONC * 4)) --duration "$ACS_SECONDS" \
        --relay-state /staff/menu.html --whoami "${WHOAMI[$p]}" --verify 20 \
        ${PIDF[$p]} "$@" > out/acs-last.json || true
    local line
    line="$(jq_line out/acs-last.json repeat="$rep" loadavg="\"$(cut -d' ' -f1-3 /proc/loadavg)\"")"
    printf '%s\n' "$line" >> "$OUT/acs.jsonl"
    blog "rep $rep: $(printf '%s' "$line" | brief)"
}

# ------------------------------------------------------------------ acs
if [[ " $SECTIONS " == *" acs "* ]]; then
    blog "== acs (concurrency $ACS_CONC, ${ACS_SECONDS}s per run, $REPEATS rounds)"
    : > "$OUT/acs.jsonl"
    base=1000000
    for rep in $(seq "$REPEATS"); do
        restart_all
        order="$PEER_LIST samlgate"
        [ $((rep % 2)) = 0 ] && order="samlgate $(echo "$PEER_LIST" | tr ' ' '\n' | tac | tr '\n' ' ')"
        for p in $order; do
            n=$(pool_size "$p")
            base=$((base + n + 1000))
            nid="GM$(printf '%07d' $((base % 10000000)))"
            "$PY" gen_responses.py --sp-entity "${ENTITY[$p]}" --acs "${ACS[$p]}" --count "$n" \
                --vary --nameid "$nid" --jobs 2 --out "out/acs-$p.b64" 2>/dev/null
            acs_run "$rep" "$p" "$p" "out/acs-$p.b64"
            if [ "$p" = samlgate ]; then
                # the same NameIDs again: returning users (the users table holds them now)
                used=$("$PY" -c 'import json; d=json.load(open("out/acs-last.json")); print(d["warmup"] + d["attempted"])')
                "$PY" gen_responses.py --sp-entity "${ENTITY[$p]}" --acs "${ACS[$p]}" --count "$used" \
                    --vary --nameid "$nid" --jobs 2 --out "out/acs-$p-ret.b64" 2>/dev/null
                acs_run "$rep" samlgate-returning samlgate "out/acs-$p-ret.b64"
            fi
        done
    done
fi

# ------------------------------------------------------------------ session
wrk_run() {  # rep conns name url cookie pidfile...
    local rep="$1" c="$2" name="$3" url="$4" cookie="$5"
    shift 5
    local tmp
    tmp="$(mktemp)"
    "$PY" procstat.py --duration "$SESSION_SECONDS" "$@" > "$tmp.proc" &
    local sp=$!
    local hdr=()
    [ -n "$cookie" ] && hdr=(-H "Cookie: $cookie")
    wrk -t2 -c"$c" -d"${SESSION_SECONDS}s" --timeout 10s -s lib/wrk-report.lua "${hdr[@]}" "$url" > "$tmp" 2>&1 || true
    wait "$sp" || true
    local wrkline procjson
    wrkline="$(sed -n 's/^WRKJSON //p' "$tmp")"
    procjson="$(cat "$tmp.proc")"
    [ -n "$wrkline" ] || { blog "wrk failed for $name: $(tail -3 "$tmp")"; wrkline='{}'; }
    # non-2xx/3xx answers (a 401 from /auth/verify would mean the session was not accepted)
    local non2xx
    non2xx="$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$tmp")"
    printf '{"repeat":%d,"target":"%s","conns":%d,"url":"%s","cookie":%s,"wrk":%s,"non_2xx_3xx":%d,"server":%s,"loadavg":"%s"}\n' \
        "$rep" "$name" "$c" "$url" "$([ -n "$cookie" ] && echo true || echo false)" \
        "$wrkline" "${non2xx:-0}" "${procjson:-{\}}" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "${OUTFILE:-$OUT/session.jsonl}"
    blog "rep $rep c=$c $name: $(printf '%s' "$wrkline" | sed -E 's/.*"rps":([0-9.]+).*"p50_ms":([0-9.]+).*"p99_ms":([0-9.]+).*/\1 req\/s p50 \2 ms p99 \3 ms/'), non-2xx ${non2xx:-0}"
    rm -f "$tmp" "$tmp.proc"
}

if [[ " $SECTIONS " == *" session "* ]]; then
    blog "== session (wrk, ${SESSION_SECONDS}s per run, conns $CONNS, $REPEATS rounds)"
    : > "$OUT/session.jsonl"
    sg_stop
    ./stop-all.sh >/dev/null 2>&1 || true
    for p in $SESSION_PEERS; do "./start-$p.sh" >/dev/null 2>&1 || bdie "start-$p.sh failed"; done
    ./start-nginx.sh >/dev/null 2>&1 || bdie "start-nginx.sh failed"
    # keep the store from the acs section if there is one (a realistic, non-empty store)
    [ -f "$SG_DIR/samlgate.toml" ] || sg_config
    sg_start
    sg_cookie="$(sg_session GM0999999)"
    [ -n "$sg_cookie" ] || bdie "no samlgate session cookie"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $sg_cookie" "http://127.0.0.1:$SG_PORT/auth/verify")
    [ "$code" = 200 ] || bdie "/auth/verify with the session cookie: HTTP $code"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SG_PORT/auth/verify")
    [ "$code" = 401 ] || bdie "/auth/verify without a cookie: HTTP $code (want 401)"
    TARGETS=("nginx-static|http://127.0.0.1:18080/public/menu.html||run/nginx/nginx.pid"
        "samlgate-verify|http://127.0.0.1:$SG_PORT/auth/verify|$sg_cookie|$SG_DIR/samlgate.pid")
    for p in $SESSION_PEERS; do
        port=18081
        [ "$p" = shib ] && port=18082
        nid="GM$(printf '%07d' $((RANDOM * 100 + RANDOM % 100)))"
        resp="$("$PY" gen_responses.py --sp-entity "${ENTITY[$p]}" --acs "${ACS[$p]}" --count 1 --nameid "$nid" --out - 2>/dev/null)"
        ck="$(curl -s -D - -o /dev/null --data-urlencode "SAMLResponse=$resp" "${ACS[$p]}" |
            sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | grep -v cookietest | head -1)"
        [ -n "$ck" ] || bdie "$p: no session cookie"
        pf="run/$p/httpd.pid"
        [ "$p" = shib ] && pf="run/shib/httpd.pid run/shib/shibd.pid"
        TARGETS+=("$p-menu|http://127.0.0.1:$port/staff/menu.html|$ck|$pf")
    done
    for rep in $(seq "$REPEATS"); do
        for c in $CONNS; do
            for t in "${TARGETS[@]}"; do
                IFS='|' read -r name url cookie pfs <<< "$t"
                # shellcheck disable=SC2086
                wrk_run "$rep" "$c" "$name" "$url" "$cookie" $pfs
            done
        done
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $sg_cookie" "http://127.0.0.1:$SG_PORT/auth/verify")
    blog "samlgate /auth/verify with the session cookie after the runs: HTTP $code"
fi

# ------------------------------------------------------------------ mixed
if [[ " $SECTIONS " == *" mixed "* ]]; then
    blog "== mixed (/auth/verify and nginx static, alone and under samlgate ACS load)"
    : > "$OUT/mixed.jsonl"
    sg_stop
    ./stop-all.sh >/dev/null 2>&1 || true
    ./start-nginx.sh >/dev/null 2>&1 || bdie "start-nginx.sh failed"
    sg_config
    sg_start
    sg_cookie="$(sg_session GM0999998)"
    [ -n "$sg_cookie" ] || bdie "no samlgate session cookie"
    n=$((SESSION_SECONDS * 800))
    # register n users once (first logins are slow: bench/RESULTS.md §5.1), then post the same
    # NameIDs again (returning users) while wrk runs
    nid=GM6000000
    "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$n" --vary \
        --nameid "$nid" --jobs 2 --out out/mixed-prime.b64 2>/dev/null
    "$PY" bench_acs.py --acs "$SG_ACS" --responses out/mixed-prime.b64 --concurrency 8 --verify 0 >/dev/null || true
    for rep in $(seq "$REPEATS"); do
        for tgt in samlgate-verify nginx-static; do
            url="http://127.0.0.1:$SG_PORT/auth/verify"; ck="$sg_cookie"; pf="$SG_DIR/samlgate.pid"
            [ "$tgt" = nginx-static ] && { url="http://127.0.0.1:18080/public/menu.html"; ck=""; pf="run/nginx/nginx.pid"; }
            OUTFILE="$OUT/mixed.jsonl" wrk_run "$rep" 8 "$tgt-alone" "$url" "$ck" "$pf"
            "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$n" --vary \
                --nameid "$nid" --jobs 2 --out out/mixed-acs.b64 2>/dev/null
            "$PY" bench_acs.py --label "acs-during-$tgt" --acs "$SG_ACS" --responses out/mixed-acs.b64 \
                --concurrency 8 --duration "$SESSION_SECONDS" --verify 0 \
                --server-pidfile "$SG_DIR/samlgate.pid" > out/mixed-acs.json &
            bp=$!
            sleep 0.5
            OUTFILE="$OUT/mixed.jsonl" wrk_run "$rep" 8 "$tgt-under-acs" "$url" "$ck" "$pf"
            wait "$bp" || true
            jq_line out/mixed-acs.json repeat="$rep" >> "$OUT/mixed.jsonl"
            blog "rep $rep: $(tail -1 "$OUT/mixed.jsonl" | brief)"
        done
    done
fi

echo "loadavg at end: $(cat /proc/loadavg)" >> "$OUT/environment.txt"
python3 "$BENCH_DIR/summarize.py" "$OUT" > "$OUT/summary.md"
cat "$OUT/summary.md"
blog "results in $OUT"
