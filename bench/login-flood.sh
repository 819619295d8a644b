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
FLOOD_NAME=login-flood FLOOD_PORT=18190
# shellcheck source=bench/flood-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/flood-common.sh"
flood_environment "runs: $*"

start_gateway() {  # DIR BIN EXTRA -> pid in $DIR/pid, cookie in $cookie
    local dir="$1" bin="$2" extra="$3" resp
    flood_dir "$dir" "$bin" "$extra" 'category = "accountCategory"
facility_code = "facilityCode"
facility_name = "facilityName"
display_name = "displayName"
email = "mail"
required = ["account_id"]
[consent]
required = false
version = "1"
[policy]
open_categories = ["病院", "診療所", "歯科診療所", "助産所", "薬局", "都道府県", "保健所"]'
    flood_serve "$dir" "$bin"
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
        if [ "$cond" = flood ]; then
            verify_run "$raw" "$pid" "$cookie" "$BASE/saml/login?return_to=/x"
        else
            verify_run "$raw" "$pid" "$cookie"
        fi
        cpu="$CPU ($ASYNC_CPU)"
        frps="-" f429="-"
        if [ "$cond" = flood ]; then
            frps="$(rps "$raw.flood.txt")"
            f429="$(non3xx "$raw.flood.txt")"
            f429="${f429:-0}"
        fi
        echo "| $label | $cond | $(rps "$raw.verify.txt") | $(pct "$raw.verify.txt" 50%) | **$(pct "$raw.verify.txt" 99%)** | $frps | $f429 | $cpu | $LOAD0 |" >> "$OUT/table.md"
        log "$label $cond: verify p99 $(pct "$raw.verify.txt" 99%) (flood $frps req/s, non-3xx $f429)"
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
