#!/usr/bin/env bash
# Cost of samlgate's reverse proxy: the same upstream (nginx serving a static file on loopback)
# reached directly and through `samlgate serve` with [upstream] and a live session (identity
# headers + X-Samlgate-Jwt added to every request). wrk, 10 s per run, 8 and 64 connections,
# each run 3 times; the median run (by requests/s) is reported with its p50/p99 latency.
# Two more rows split the cost: `public` is a proxied [upstream] public_paths request (no session
# lookup, no identity headers: the proxying alone), `verify` is GET /auth/verify with the session
# (the session lookup and headers alone, nothing proxied). `nginx-proxy` is the yardstick for
# any reverse proxy on this box: a second nginx (one worker) proxy_pass-ing to the same upstream
# over a keep-alive pool, no auth at all.
#
#   bench/proxy.sh                 # uses target/release/samlgate (build it first), or SAMLGATE_BIN
#   DURATION=10 RUNS=3 CONNS="8 64" MODES="direct proxied public verify" bench/proxy.sh
#
# Needs: nginx and wrk (Debian packages), .venv (scripts/install-deps.sh) for the test IdP that
# signs the login. Everything listens on 127.0.0.1 only; it stops what it started.
# Output: a markdown section on stdout (pasted into bench/PROXY.md), raw wrk output in $WORK.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-/tmp/samlgate-bench-proxy}"
DURATION="${DURATION:-10}"
RUNS="${RUNS:-3}"
CONNS="${CONNS:-8 64}"
MODES="${MODES:-direct proxied public verify nginx-proxy}"
case " $MODES " in *" direct "*) ;; *) MODES="direct $MODES" ;; esac  # the baseline is always run
THREADS="${THREADS:-2}"
GW_PORT="${GW_PORT:-18190}"
NGINX_PORT="${NGINX_PORT:-18191}"
NPX_PORT="${NPX_PORT:-18192}"
PY="${PY:-$REPO/.venv/bin/python}"
IDP="$REPO/tests/support/saml_idp.py"

log() { printf '[proxy.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk missing: apt-get install -y wrk"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || die "nginx missing: apt-get install -y nginx"
[ -x "$PY" ] || die "$PY missing: run scripts/install-deps.sh"
BIN_SRC="${SAMLGATE_BIN:-$REPO/target/release/samlgate}"
[ -x "$BIN_SRC" ] || die "$BIN_SRC missing: cargo build --release (or set SAMLGATE_BIN)"

rm -rf "$WORK"
mkdir -p "$WORK/nginx/www" "$WORK/gw" "$WORK/raw"
# A private copy of the binary: a rebuild during the run cannot swap it under us.
cp "$BIN_SRC" "$WORK/samlgate"
BIN="$WORK/samlgate"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# --- the upstream: nginx, one worker, a 2 KiB static page, long keep-alive -----------------
head -c 2048 /dev/zero | tr '\0' 'x' > "$WORK/nginx/www/menu.html"
mkdir -p "$WORK/nginx/www/static"
cp "$WORK/nginx/www/menu.html" "$WORK/nginx/www/static/menu.html"
cat > "$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/www;
        default_type text/html;
    }
}
CONF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

# --- the yardstick proxy: another nginx, proxy_pass with an upstream keep-alive pool ----------
mkdir -p "$WORK/npx"
cat > "$WORK/npx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/npx/nginx.pid;
error_log $WORK/npx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $WORK/npx/body;
    proxy_temp_path $WORK/npx/proxy;
    fastcgi_temp_path $WORK/npx/fastcgi;
    uwsgi_temp_path $WORK/npx/uwsgi;
    scgi_temp_path $WORK/npx/scgi;
    upstream staffmenu { server 127.0.0.1:$NGINX_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NPX_PORT;
        location / {
            proxy_pass http://staffmenu;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
CONF
"$NGINX" -c "$WORK/npx/nginx.conf" -p "$WORK/npx" &
NPX_PID=$!
PIDS+=($NPX_PID)

# --- the gateway: [upstream] = nginx, [token] on, a session from a signed login -----------
cd "$WORK/gw"
"$PY" "$IDP" keygen --out idp --cn gmis-idp.test >/dev/null
"$PY" "$IDP" metadata --cert idp/idp.crt --entity-id https://gmis-idp.test/idp --out idp-metadata.xml
cat > samlgate.toml <<CONF
[server]
listen = "127.0.0.1:$GW_PORT"
public_url = "http://127.0.0.1:$GW_PORT"

[sp]
entity_id = "http://127.0.0.1:$GW_PORT/saml/metadata"
keys_dir = "sp-keys"

[idp]
metadata = "idp-metadata.xml"
clock_skew_seconds = 60
allow_unsolicited = true

[store]
path = "store"

[attributes]
account_id = "gmisAccountId"
category = "accountCategory"
facility_code = "facilityCode"
facility_name = "facilityName"
display_name = "displayName"
email = "mail"

[consent]
required = false
version = "2023-04"

[policy]
open_categories = ["病院", "診療所", "歯科診療所", "助産所", "薬局"]

[session]
idle_minutes = 30
absolute_hours = 8

[upstream]
url = "http://127.0.0.1:$NGINX_PORT"
public_paths = ["/static/"]
timeout_seconds = 10

[token]
keys_dir = "token-keys"
lifetime_seconds = 300
CONF
"$BIN" keys new --config samlgate.toml >/dev/null 2>&1
"$BIN" keys new --token --config samlgate.toml >/dev/null 2>&1
RUST_LOG=warn "$BIN" serve --config samlgate.toml >"$WORK/gw/server.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$GW_PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$GW_PORT/readyz" >/dev/null || die "gateway not ready: $(tail -5 server.log)"
curl -fsS "http://127.0.0.1:$NGINX_PORT/menu.html" >/dev/null || die "nginx not serving"

B64="$("$PY" "$IDP" response --sp-entity "http://127.0.0.1:$GW_PORT/saml/metadata" \
    --acs "http://127.0.0.1:$GW_PORT/saml/acs" --key idp/idp.key --cert idp/idp.crt \
    --nameid GM0012345)"
COOKIE="$(curl -sS -o /dev/null -D - --data-urlencode "SAMLResponse=$B64" \
    "http://127.0.0.1:$GW_PORT/saml/acs" | tr -d '\r' |
    sed -n 's/^[Ss]et-[Cc]ookie: \(samlgate=[^;]*\).*/\1/p' | head -1)"
[ -n "$COOKIE" ] || die "no session cookie from the login"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$GW_PORT/menu.html")"
[ "$code" = 200 ] || die "proxied request with the session: HTTP $code"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/menu.html")"
[ "$code" = 401 ] || die "proxied request without a session: HTTP $code (want 401)"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/static/menu.html")"
[ "$code" = 200 ] || die "public path without a session: HTTP $code"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$GW_PORT/auth/verify")"
[ "$code" = 200 ] || die "/auth/verify with the session: HTTP $code"
log "gateway :$GW_PORT -> nginx :$NGINX_PORT, session ok"
NGINX_WORKER="$(pgrep -P "$NGINX_PID" | head -1)"
[ -n "$NGINX_WORKER" ] || die "no nginx worker process"
curl -fsS "http://127.0.0.1:$NPX_PORT/menu.html" >/dev/null || die "nginx proxy not serving"
NPX_WORKER="$(pgrep -P "$NPX_PID" | head -1)"
[ -n "$NPX_WORKER" ] || die "no nginx proxy worker process"

# cpu_ticks PID: user+system CPU time of a process, in clock ticks. CPU per request is what the
# machine's other load cannot change (it only stretches wall-clock numbers).
TICK="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# --- wrk ------------------------------------------------------------------------------------
# to_us VALUE: wrk's "123.45us" / "1.23ms" / "1.02s" in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000;
        else print n }'
}

# run NAME URL CONNS I [header] -> "rps p50_us p99_us gateway_cpu_us_per_req nginx_cpu_us_per_req"
# and the raw output in $WORK/raw
run() {
    local name=$1 url=$2 c=$3 i=$4; shift 4
    local out="$WORK/raw/$name-c$c-$i.txt"
    local g0 n0 g1 n1 ppid=$GW_PID
    [ "$name" = nginx-proxy ] && ppid=$NPX_WORKER
    g0="$(cpu_ticks "$ppid")"
    n0="$(cpu_ticks "$NGINX_WORKER")"
    wrk -t"$THREADS" -c"$c" -d"${DURATION}s" --latency "$@" "$url" >"$out" 2>&1
    g1="$(cpu_ticks "$ppid")"
    n1="$(cpu_ticks "$NGINX_WORKER")"
    local rps p50 p99 errs total gcpu ncpu
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    total="$(awk '/requests in/ {print $1}' "$out")"
    # microseconds of CPU per request
    gcpu="$(awk -v d=$((g1 - g0)) -v t="$TICK" -v n="$total" 'BEGIN {printf "%.1f", d * 1e6 / t / n}')"
    ncpu="$(awk -v d=$((n1 - n0)) -v t="$TICK" -v n="$total" 'BEGIN {printf "%.1f", d * 1e6 / t / n}')"
    p50="$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")"
    p99="$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")"
    errs="$(grep -E 'Non-2xx|Socket errors' "$out" || true)"
    [ -z "$errs" ] || die "$name c=$c run $i: $errs (see $out)"
    echo "$rps $p50 $p99 $gcpu $ncpu"
}

# median_run FILE: the line with the median requests/s of the runs in FILE.
median_run() { sort -n -k1,1 "$1" | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}'; }

log "warm-up"
wrk -t"$THREADS" -c8 -d3s "http://127.0.0.1:$NGINX_PORT/menu.html" >/dev/null
wrk -t"$THREADS" -c8 -d3s -H "Cookie: $COOKIE" "http://127.0.0.1:$GW_PORT/menu.html" >/dev/null

# url_of MODE, args_of MODE: what each row measures.
url_of() {
    case $1 in
        direct) echo "http://127.0.0.1:$NGINX_PORT/menu.html" ;;
        proxied) echo "http://127.0.0.1:$GW_PORT/menu.html" ;;
        public) echo "http://127.0.0.1:$GW_PORT/static/menu.html" ;;
        verify) echo "http://127.0.0.1:$GW_PORT/auth/verify" ;;
        nginx-proxy) echo "http://127.0.0.1:$NPX_PORT/menu.html" ;;
        *) die "unknown mode $1" ;;
    esac
}
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RES
for c in $CONNS; do
    for m in $MODES; do : >"$WORK/$m-$c.txt"; done
    for i in $(seq "$RUNS"); do
        # Interleaved, so a slow phase of the machine hits every row alike.
        for m in $MODES; do
            log "c=$c run $i/$RUNS $m"
            if [ "$m" = proxied ] || [ "$m" = verify ]; then
                run "$m" "$(url_of "$m")" "$c" "$i" -H "Cookie: $COOKIE" >>"$WORK/$m-$c.txt"
            else
                run "$m" "$(url_of "$m")" "$c" "$i" >>"$WORK/$m-$c.txt"
            fi
        done
    done
    for m in $MODES; do RES[$m-$c]="$(median_run "$WORK/$m-$c.txt")"; done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report -----------------------------------------------------------------------------------
cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "### Run $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
     "$(uname -sr); samlgate $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(release build), nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}')."
echo "Command: \`DURATION=$DURATION RUNS=$RUNS CONNS=\"$CONNS\" THREADS=$THREADS bench/proxy.sh\`;" \
     "each row is the median run by requests/s of $RUNS (rows interleaved run by run)." \
     "direct = wrk -> nginx; proxied = wrk -> samlgate (session, identity headers, JWT) -> nginx;" \
     "public = wrk -> samlgate public path -> nginx (no session work); verify = wrk -> samlgate /auth/verify (no proxying);" \
     "nginx-proxy = wrk -> a second nginx (proxy_pass, keep-alive upstream, no auth) -> nginx." \
     "proxy CPU/req is the gateway's (the nginx proxy worker's on the nginx-proxy row)."
echo
echo "Load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER (other work on the machine shares the 2 CPUs)."
echo
echo "| conns | row | req/s | vs direct | p50 | added p50 vs direct | p99 | proxy CPU/req | upstream nginx CPU/req |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for c in $CONNS; do
    read -r drps dp50 _dp99 _g _n <<<"${RES[direct-$c]}"
    for m in $MODES; do
        read -r rps p50 p99 gcpu ncpu <<<"${RES[$m-$c]}"
        awk -v c="$c" -v m="$m" -v drps="$drps" -v rps="$rps" -v dp50="$dp50" -v p50="$p50" \
            -v p99="$p99" -v g="$gcpu" -v n="$ncpu" 'BEGIN {
            printf "| %d | %s | %.0f | %.0f%% | %.3f ms | %+.3f ms | %.3f ms | %.1f us | %.1f us |\n",
                c, m, rps, 100 * rps / drps, p50 / 1000, (p50 - dp50) / 1000, p99 / 1000, g, n }'
    done
done
echo
echo "All runs (req/s, p50 us, p99 us, proxy CPU us/req, upstream nginx CPU us/req):"
echo
for c in $CONNS; do
    for m in $MODES; do
        echo "- c=$c $m: $(tr '\n' ';' <"$WORK/$m-$c.txt" | sed 's/;$//; s/;/ | /g')"
    done
done
