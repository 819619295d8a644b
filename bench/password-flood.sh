#!/usr/bin/env bash
# /auth/verify latency alone and during a flood of wrong passwords on POST /login (issue 13),
# loopback only.
#
# One gateway (release binary, fresh sled store, [server] trusted_proxies = ["127.0.0.1"] so
# the flood can give every request its own X-Forwarded-For address: what a spray from many
# addresses looks like once the per-IP limit cannot stop it). A password session is made with
# curl (account from `samlgate accounts add`, first login, forced change). Then:
#   alone  wrk -t1 -c$VERIFY_CONNS (8) -d$SECONDS_RUN (20 s) --latency on /auth/verify
#   flood  the same while `wrk -t1 -c$FLOOD_CONNS (6) -s password-flood.lua` posts the login
#          form (valid CSRF pair) with random unknown ids and wrong passwords from random
#          addresses: every request costs a full argon2id (m=19 MiB, t=2; the dummy hash).
# Each wrk run is <= 24 s.
#
# usage: bench/password-flood.sh BINARY
#   env: SECONDS_RUN (20), VERIFY_CONNS (8), FLOOD_CONNS (6), SG_PORT (18290),
#        OUT (bench/results/passwordflood-<UTC>)
set -euo pipefail
BIN="${1:?usage: bench/password-flood.sh BINARY}"
FLOOD_NAME=password-flood FLOOD_PORT=18290
# shellcheck source=bench/flood-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/flood-common.sh"
DIR="/tmp/samlgate-passwordflood"
flood_environment "binary: $BIN"

flood_dir "$DIR" "$BIN" 'trusted_proxies = ["127.0.0.1"]' 'required = ["account_id"]'
first="$(cd "$DIR" && "$BIN" accounts --config samlgate.toml add bench --email b@example.jp \
    --name bench --by bench --json | sed -n 's/.*"initial_password":"\([^"]*\)".*/\1/p')"
[ -n "$first" ] || { log "no initial password"; exit 1; }
flood_serve "$DIR" "$BIN"
pid="$(cat "$DIR/pid")"
trap 'kill -TERM $pid 2>/dev/null || true' EXIT

# A password session: login form (CSRF cookie + field), first password, forced change.
jar="$DIR/jar"
csrf_of() { sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1; }
csrf="$(curl -s -c "$jar" -b "$jar" "$BASE/login" | csrf_of)"
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" --data-urlencode "return_to=/" \
    --data-urlencode "user_id=bench" --data-urlencode "password=$first" "$BASE/login"
csrf="$(curl -s -c "$jar" -b "$jar" "$BASE/login/change" | csrf_of)"
new="a long benchmark passphrase 2026"
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" \
    --data-urlencode "new_password=$new" --data-urlencode "confirm=$new" "$BASE/login/change"
cookie="samlgate=$(awk '$6 == "samlgate" {print $7}' "$jar")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "$BASE/auth/verify")" = 200 ] ||
    { log "no password session"; exit 1; }

# The flood's CSRF pair (the sealed cookie is good for an hour, any number of posts).
fjar="$DIR/fjar"
fcsrf="$(curl -s -c "$fjar" "$BASE/login" | csrf_of)"
fcookie="samlgate-csrf=$(awk '$6 == "samlgate-csrf" {print $7}' "$fjar")"
cat > "$DIR/flood.lua" <<LUA
math.randomseed(os.time())
local n = 0
request = function()
  n = n + 1
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  local body = "csrf=$fcsrf&return_to=%2F&user_id=nobody" .. n .. "&password=wrong-password-" .. n
  return wrk.format("POST", "/login", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = "$fcookie",
    ["X-Forwarded-For"] = ip,
  }, body)
end
LUA

echo "| condition | /auth/verify req/s | p50 | p90 | p99 | flood answers/s (status) | gateway CPU s | load avg before |" > "$OUT/table.md"
echo "|---|---|---|---|---|---|---|---|" >> "$OUT/table.md"
for cond in alone flood; do
    raw="$OUT/raw/$cond"
    if [ "$cond" = flood ]; then
        verify_run "$raw" "$pid" "$cookie" --timeout 30s -s "$DIR/flood.lua" "$BASE/login"
    else
        verify_run "$raw" "$pid" "$cookie"
    fi
    frps="-"
    if [ "$cond" = flood ]; then
        frps="$(rps "$raw.flood.txt") ($(non3xx "$raw.flood.txt") non-2xx: 401 wrong password)"
    fi
    echo "| $cond | $(rps "$raw.verify.txt") | $(pct "$raw.verify.txt" 50%) | $(pct "$raw.verify.txt" 90%) | $(pct "$raw.verify.txt" 99%) | $frps | $CPU | $LOAD0 |" >> "$OUT/table.md"
    log "$cond done"
done
grep -c 'local_unknown_id' "$DIR/log" > "$OUT/raw/refused-lines.txt" || true
cat "$OUT/table.md"
