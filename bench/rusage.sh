#!/usr/bin/env bash
# User vs system CPU of the gateway per login (the kernel's side of a login, which callgrind
# does not count): N first logins at concurrency CONC (the peers' bench_acs.py, both
# signatures), utime/stime of the gateway process from /proc before and after.
#   bench/rusage.sh        env: N (800), CONC (8), SAMLGATE_BIN, BENCH_WORK, SG_PORT
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
N="${N:-800}"
CONC="${CONC:-8}"
! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$SG_PORT/" || bdie "port $SG_PORT is in use (set SG_PORT)"
ensure_binary
peers_copy
cd "$PEERS"
mkdir -p out
trap sg_stop EXIT
sg_config
sg_start
"$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$N" --sign both --vary \
    --nameid GM7300000 --jobs 2 --out out/ru.b64 2>/dev/null
"$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count 1 --sign both \
    --nameid GM7399999 --out out/ru-warm.b64 2>/dev/null
"$PY" bench_acs.py --acs "$SG_ACS" --responses out/ru-warm.b64 --concurrency 1 --warmup 0 --verify 0 >/dev/null
pid=$(cat "$SG_DIR/samlgate.pid")
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
"$PY" bench_acs.py --acs "$SG_ACS" --responses out/ru.b64 --concurrency "$CONC" --warmup 0 \
    --duration 600 --verify 0 > out/ru.json
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
ok=$("$PY" -c 'import json; print(json.load(open("out/ru.json"))["success"])')
python3 -c "
t = $(getconf CLK_TCK)
u, s, ok = ($u1 - $u0) * 1000 / t, ($s1 - $s0) * 1000 / t, $ok
print('%d logins ok; per login: user %.3f ms, system %.3f ms (load average %s)' % (ok, u / ok, s / ok, open('/proc/loadavg').read().split()[0]))"
