#!/usr/bin/env bash
# /auth/verify latency alone and during a GET /saml/login flood (issue 12 item 12), loopback.
#
# One gateway per binary, fresh store, the peers' IdP metadata (it has an SSO endpoint, so
# /saml/login signs an RSA-3072 AuthnRequest). For each binary in turn:
#   alone  wrk -t1 -c$VERIFY_CONNS (8) -d$SECONDS (20 s) --latency on /auth/verify (session cookie)
#   flood  the same while `wrk -t1 -c$FLOOD_CONNS (6) /saml/login` runs (started 2 s before,
#          ends 2 s after): six clients asking for login redirects as fast as they can.
# Each wrk run is <= 24 s, so the machine is loaded for at most ~25 s at a time.
#
# usage: bench/login-flood.sh LABEL=BINARY[:EXTRA] ...
#   e.g. bench/login-flood.sh old=/tmp/samlgate-old.bin new=/tmp/samlgate-new.bin \
#          'new-nolimit=/tmp/samlgate-new.bin:saml_login_rate_per_minute = 1000000'
#   EXTRA is one line added to [server] (the rate limit off: what many flooding addresses get).
#   env: SECONDS_RUN (20), VERIFY_CONNS (8), FLOOD_CONNS (6), SG_PORT (18190),
#        OUT (bench/results/loginflood-<UTC>)
# Output: $OUT/{environment.txt,summary.md,raw/*.txt}
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
PEERS="${PEERS:-$(cd "$REPO/../shared/peers" 2>/dev/null && pwd || echo "$REPO/../shared/peers")}"
PY="${PY:-$REPO/.venv/bin/python}"
SECONDS_RUN="${SECONDS_RUN:-20}"
VERIFY_CONNS="${VERIFY_CONNS:-8}"
FLOOD_CONNS="${FLOOD_CONNS:-6}"
SG_PORT="${SG_PORT:-18190}"
OUT="${OUT:-$BENCH_DIR/results/loginflood-$(date -u +%Y%m%dT%H%M%SZ)}"
BASE="http://127.0.0.1:$SG_PORT"
mkdir -p "$OUT/raw"
log() { printf '[login-flood %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "runs: $*"
    echo "SECONDS_RUN=$SECONDS_RUN VERIFY_CONNS=$VERIFY_CONNS FLOOD_CONNS=$FLOOD_CONNS"
} > "$OUT/environment.txt"

start_gateway() {  # DIR BIN EXTRA -> pid in $DIR/pid, cookie in $cookie
    local dir="$1" bin="$2" extra="$3" i resp
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$PEERS/idp/idp-metadata.xml" "$dir/"
    cat > "$dir/samlgate.toml" <<CONF
[server]
listen = "127.0.0.1:$SG_PORT"
public_url = "$BASE"
$extra
[sp]
entity_id = "$BASE/saml/metadata"
keys_dir = "sp-keys"
[idp]
metadata = "idp-metadata.xml"
[store]
path = "store"
[attributes]
account_id = "gmisAccountId"
category = "accountCategory"
facility_code = "facilityCode"
facility_name = "facilityName"
display_name = "displayName"
email = "mail"
required = ["account_id"]
[consent]
required = false
version = "1"
[policy]
open_categories = ["病院", "診療所", "歯科診療所", "助産所", "薬局", "都道府県", "保健所"]
CONF
    (cd "$dir" && "$bin" keys new --config samlgate.toml >/dev/null 2>&1)
    (cd "$dir" && exec "$bin" serve --config samlgate.toml >>"$dir/log" 2>&1) &
    echo $! > "$dir/pid"
    for i in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$BASE/healthz" && break
        sleep 0.1
    done
    resp="$("$PY" "$PEERS/gen_responses.py" --sp-entity "$BASE/saml/metadata" --acs "$BASE/saml/acs" \
        --count 1 --nameid GM0999999 --out - 2>/dev/null)"
    cookie="$(curl -s -D - -o /dev/null --data-urlencode "SAMLResponse=$resp" "$BASE/saml/acs" |
        sed -n 's/^[Ss]et-[Cc]ookie: \(samlgate=[^;]*\).*/\1/p' | head -1)"
    [ -n "$cookie" ] || { tail -5 "$dir/log" >&2; log "no session cookie"; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/saml/login")" = 302 ] ||
        { log "/saml/login is not a redirect"; exit 1; }
}

stop_gateway() {
    local pid
    pid="$(cat "$1/pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# async_ticks PID: CPU ticks of the runtime's async workers (the first nproc tokio-rt-worker
# threads by id; the blocking pool's threads, where signing and verification run, come later)
async_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = tokio-rt-worker ]; then
            echo "${t##*/} $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
        fi
    done | sort -n | head -"$(nproc)" | awk '{s += $2} END {print s + 0}'
}

p99() { awk '$1 == "99%" {print $2}' "$1"; }
p50() { awk '$1 == "50%" {print $2}' "$1"; }
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
non3xx() { awk '/Non-2xx or 3xx/ {print $5}' "$1"; }

echo "| run | condition | /auth/verify req/s | p50 | p99 | /saml/login flood req/s | of which 429 | gateway CPU s (of which async workers) | load avg before |" > "$OUT/table.md"
echo "|---|---|---|---|---|---|---|---|---|" >> "$OUT/table.md"

for spec in "$@"; do
    label="${spec%%=*}"
    rest="${spec#*=}"
    bin="${rest%%:*}"
    extra=""
    [ "$rest" != "$bin" ] && extra="${rest#*:}"
    dir="/tmp/samlgate-loginflood-$label"
    for cond in alone flood; do
        start_gateway "$dir" "$bin" "$extra"
        pid="$(cat "$dir/pid")"
        raw="$OUT/raw/$label-$cond"
        load0="$(cut -d' ' -f1-3 /proc/loadavg)"
        fp=""
        if [ "$cond" = flood ]; then
            wrk -t1 -c"$FLOOD_CONNS" -d"$((SECONDS_RUN + 4))s" "$BASE/saml/login?return_to=/x" \
                > "$raw.flood.txt" 2>&1 &
            fp=$!
            sleep 2
        fi
        t0="$(cpu_ticks "$pid")" a0="$(async_ticks "$pid")"
        wrk -t1 -c"$VERIFY_CONNS" -d"${SECONDS_RUN}s" --timeout 10s --latency -H "Cookie: $cookie" \
            "$BASE/auth/verify" > "$raw.verify.txt" 2>&1 || true
        t1="$(cpu_ticks "$pid")" a1="$(async_ticks "$pid")"
        if [ -n "$fp" ]; then wait "$fp" || true; fi
        cpu="$(awk -v a="$t0" -v b="$t1" -v c="$a0" -v d="$a1" -v hz="$(getconf CLK_TCK)" \
            'BEGIN {printf "%.1f (%.1f)", (b - a) / hz, (d - c) / hz}')"
        frps="-" f429="-"
        if [ -n "$fp" ]; then
            frps="$(rps "$raw.flood.txt")"
            f429="$(non3xx "$raw.flood.txt")"
            f429="${f429:-0}"
        fi
        echo "| $label | $cond | $(rps "$raw.verify.txt") | $(p50 "$raw.verify.txt") | **$(p99 "$raw.verify.txt")** | $frps | $f429 | $cpu | $load0 |" >> "$OUT/table.md"
        log "$label $cond: verify p99 $(p99 "$raw.verify.txt") (flood $frps req/s, non-3xx $f429)"
        du -sk "$dir/store" | awk '{print "store KiB after: " $1}' > "$raw.store.txt"
        stop_gateway "$dir"
        sleep 5
    done
done
{
    echo "# /auth/verify during a GET /saml/login flood"
    echo
    sed 's/^/    /' "$OUT/environment.txt"
    echo
    cat "$OUT/table.md"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
