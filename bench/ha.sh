#!/usr/bin/env bash
# The PostgreSQL deployment's figures (issue 17 §4) in one run, about a minute of load in all:
#   verify  GET /auth/verify req/s with a live session (wrk -t2 -c8, VERIFY_SECONDS each) on
#           sled, on PostgreSQL, and nginx's static file (the ceiling), in that order;
#   pair    one nginx (worker_processes auto, round-robin, keepalive) in front of ONE gateway on PostgreSQL,
#           then in front of TWO on the same database: ACS first logins/s (the peers'
#           bench_acs.py, c=ACS_CONC, ACS_SECONDS) and /auth/verify req/s (wrk -c8) through it.
# PostgreSQL is a throwaway cluster on this machine (scripts/pg.sh): it shares the cores.
#
#   bench/ha.sh       env: VERIFY_SECONDS (5), ACS_SECONDS (5), ACS_CONC (8), OUT,
#                          SAMLGATE_BIN, BENCH_WORK, SG_PORT (B is SG_PORT+1, nginx SG_PORT+2,
#                          the static nginx SG_PORT+3)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERIFY_SECONDS="${VERIFY_SECONDS:-5}"
ACS_SECONDS="${ACS_SECONDS:-5}"
ACS_CONC="${ACS_CONC:-8}"
OUT="${OUT:-$BENCH_DIR/results/ha-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
B_PORT=$((SG_PORT + 1))
LB_PORT=$((SG_PORT + 2))
STATIC_PORT=$((SG_PORT + 3))
B_DIR="$BENCH_WORK/samlgate-b"
NG="$BENCH_WORK/nginx"

for p in "$SG_PORT" "$B_PORT" "$LB_PORT" "$STATIC_PORT"; do
    # sg_start only waits for an answer: another bench on the port would be measured instead.
    ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/" || bdie "port $p is in use (set SG_PORT)"
done
ensure_binary
peers_copy
pgdir=$(mktemp -d /tmp/samlgate-pg-ha.XXXXXX)
b_stop() { [ -s "$B_DIR/pid" ] && { kill -TERM "$(cat "$B_DIR/pid")" 2>/dev/null || true; sleep 1; rm -f "$B_DIR/pid"; }; return 0; }
ng_stop() { [ -s "$NG/nginx.pid" ] && { kill -TERM "$(cat "$NG/nginx.pid")" 2>/dev/null || true; sleep 0.5; }; return 0; }
trap 'sg_stop; b_stop; ng_stop; "$REPO/scripts/pg.sh" stop "$pgdir"' EXIT
PG_URL=$("$REPO/scripts/pg.sh" start "$pgdir")
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | head -1)
cd "$PEERS"
mkdir -p out
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc $(nproc); kernel $(uname -r); $(grep -m1 'model name' /proc/cpuinfo)"
    echo "samlgate: $(cd "$REPO" && git rev-parse --short HEAD), binary $SAMLGATE_BIN ($(sha256sum "$SAMLGATE_BIN" | cut -c1-12)); PostgreSQL $("$PSQL" "$PG_URL" -tAc 'show server_version'); $(nginx -v 2>&1)"
    echo "settings: VERIFY_SECONDS=$VERIFY_SECONDS ACS_SECONDS=$ACS_SECONDS ACS_CONC=$ACS_CONC"
    echo "loadavg at start: $(cat /proc/loadavg)"
} > "$OUT/environment.txt"
cat "$OUT/environment.txt" >&2

# nginx_start SERVERS...: nginx on LB_PORT (round-robin over SERVERS, one worker) and the
# static file on STATIC_PORT; (re)started.
nginx_start() {
    ng_stop
    rm -rf "$NG"
    mkdir -p "$NG"
    chmod 755 "$NG"
    local s ups=""
    for s in "$@"; do ups+="        server 127.0.0.1:$s;"$'\n'; done
    cat > "$NG/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $NG/body;
    proxy_temp_path $NG/proxy;
    fastcgi_temp_path $NG/fcgi;
    uwsgi_temp_path $NG/uwsgi;
    scgi_temp_path $NG/scgi;
    upstream samlgate {
$ups        keepalive 32;
    }
    server {
        listen 127.0.0.1:$LB_PORT;
        location / {
            proxy_pass http://samlgate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            client_max_body_size 256k;
            client_body_buffer_size 256k;
        }
    }
    server {
        listen 127.0.0.1:$STATIC_PORT;
        root $PEERS/www;
    }
}
CONF
    nginx -c "$NG/nginx.conf" -e "$NG/error.log"
    local i
    for i in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$STATIC_PORT/public/menu.html" && return 0; sleep 0.1; done
    bdie "nginx did not start: $(cat "$NG/error.log")"
}

# wrk_rps URL [COOKIE]: requests/s of wrk -t2 -c8 for VERIFY_SECONDS; non-2xx answers fail.
wrk_rps() {
    local out hdr=()
    [ -n "${2:-}" ] && hdr=(-H "Cookie: $2")
    out=$(wrk -t2 -c8 -d"${VERIFY_SECONDS}s" "${hdr[@]}" "$1")
    if grep -q "Non-2xx" <<<"$out"; then bdie "wrk $1: non-2xx answers: $out"; fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

# acs_rate NAME: ACS first logins/s through nginx with a fresh response pool; prints the JSON.
acs_rate() {
    local n=$(((ACS_SECONDS + 1) * 400))
    "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$n" --sign both \
        --vary --nameid "$2" --jobs 2 --out "out/ha-$1.b64" 2>/dev/null
    "$PY" bench_acs.py --label "$1" --acs "http://127.0.0.1:$LB_PORT/saml/acs" \
        --responses "out/ha-$1.b64" --concurrency "$ACS_CONC" --warmup $((ACS_CONC * 4)) \
        --duration "$ACS_SECONDS" --verify 0 > "out/ha-$1.json" || true
    "$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "out/ha-$1.json"
}

nginx_start "$SG_PORT"
: > "$OUT/ha.jsonl"
record() { printf '{"what":"%s","value":%s}\n' "$1" "$2" >> "$OUT/ha.jsonl"; blog "$1: $2"; }

# --- verify: sled, PostgreSQL, nginx static ---
unset SG_STORE_LINE
sg_config
sg_start
cookie="$(sg_session GM0999997)"
[ -n "$cookie" ] || bdie "no session on sled"
record verify_sled "$(wrk_rps "http://127.0.0.1:$SG_PORT/auth/verify" "$cookie")"
sg_stop
"$PSQL" "$PG_URL" -qc "CREATE DATABASE bench_ha"
export SG_STORE_LINE="url = \"${PG_URL%/*}/bench_ha\""
sg_config
"$SAMLGATE_BIN" store migrate --config "$SG_DIR/samlgate.toml" 2>/dev/null
sg_start
cookie="$(sg_session GM0999998)"
[ -n "$cookie" ] || bdie "no session on PostgreSQL"
record verify_pg "$(wrk_rps "http://127.0.0.1:$SG_PORT/auth/verify" "$cookie")"
record verify_nginx_static "$(wrk_rps "http://127.0.0.1:$STATIC_PORT/public/menu.html")"

# --- pair: one instance behind nginx, then two on the same database ---
record acs_one_instance "$(acs_rate one GM8100000)"
record verify_lb_one "$(wrk_rps "http://127.0.0.1:$LB_PORT/auth/verify" "$cookie")"
rm -rf "$B_DIR"
cp -a "$SG_DIR" "$B_DIR"
rm -f "$B_DIR/samlgate.pid" "$B_DIR/samlgate.log"
sed -i "s/^listen = .*/listen = \"127.0.0.1:$B_PORT\"/" "$B_DIR/samlgate.toml"
(cd "$B_DIR" && exec "$SAMLGATE_BIN" serve --config samlgate.toml >>"$B_DIR/samlgate.log" 2>&1) &
echo $! > "$B_DIR/pid"
for i in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$B_PORT/readyz" && break; sleep 0.1; done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://127.0.0.1:$B_PORT/auth/verify")
[ "$code" = 200 ] || bdie "B does not accept A's session: HTTP $code"
nginx_start "$SG_PORT" "$B_PORT"
record acs_two_instances "$(acs_rate two GM8200000)"
record verify_lb_two "$(wrk_rps "http://127.0.0.1:$LB_PORT/auth/verify" "$cookie")"
echo "loadavg at end: $(cat /proc/loadavg)" >> "$OUT/environment.txt"

"$PY" - "$OUT" > "$OUT/summary.md" <<'PYEOF'
import json, os, sys
d = sys.argv[1]
v = {}
for line in open(os.path.join(d, "ha.jsonl")):
    r = json.loads(line)
    v[r["what"]] = r["value"]
acs = lambda k: v[k]["logins_per_s"]
print("# samlgate on PostgreSQL: /auth/verify and two instances (bench/ha.sh)\n")
print("```\n" + open(os.path.join(d, "environment.txt")).read().strip() + "\n```\n")
print("| measurement | value | ratio |")
print("|---|---|---|")
print("| /auth/verify, sled (req/s) | %.0f | %.2fx nginx static |" % (v["verify_sled"], v["verify_sled"] / v["verify_nginx_static"]))
print("| /auth/verify, PostgreSQL (req/s) | %.0f | **%.2fx nginx static**, %.2fx sled |" % (v["verify_pg"], v["verify_pg"] / v["verify_nginx_static"], v["verify_pg"] / v["verify_sled"]))
print("| nginx static file (req/s) | %.0f | 1.00 |" % v["verify_nginx_static"])
print("| ACS logins/s through nginx, one instance | %.0f (%d/%d ok) | 1.00 |" % (acs("acs_one_instance"), v["acs_one_instance"]["success"], v["acs_one_instance"]["attempted"]))
print("| ACS logins/s through nginx, two instances | %.0f (%d/%d ok) | **%.2fx one** |" % (acs("acs_two_instances"), v["acs_two_instances"]["success"], v["acs_two_instances"]["attempted"], acs("acs_two_instances") / acs("acs_one_instance")))
print("| /auth/verify through nginx, one instance (req/s) | %.0f | 1.00 |" % v["verify_lb_one"])
print("| /auth/verify through nginx, two instances (req/s) | %.0f | **%.2fx one** |" % (v["verify_lb_two"], v["verify_lb_two"] / v["verify_lb_one"]))
PYEOF
cat "$OUT/summary.md"
blog "results in $OUT"
