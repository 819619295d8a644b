# Shared by bench/login-flood.sh and bench/password-flood.sh: settings, a gateway folder and
# /auth/verify under wrk, alone or while a flood runs. Sourced, not run.
# Set before sourcing: FLOOD_NAME (log prefix; results in bench/results/<FLOOD_NAME with the
# dash removed>-<UTC>) and FLOOD_PORT (the default SG_PORT).
SG_PORT="${SG_PORT:-$FLOOD_PORT}"
flood_env_peers="${PEERS:-}" flood_env_py="${PY:-}"
# BENCH_DIR, REPO and PEERS_SRC (the peers harness beside the repository) from bench/common.sh.
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# The harness itself (not common.sh's private copy), read-only: only its IdP metadata and
# response generator are used; PY is the repository's venv. Both can be set in the environment.
PEERS="${flood_env_peers:-$PEERS_SRC}"
PY="${flood_env_py:-$REPO/.venv/bin/python}"
SECONDS_RUN="${SECONDS_RUN:-20}"
VERIFY_CONNS="${VERIFY_CONNS:-8}"
FLOOD_CONNS="${FLOOD_CONNS:-6}"
OUT="${OUT:-$BENCH_DIR/results/${FLOOD_NAME//-/}-$(date -u +%Y%m%dT%H%M%SZ)}"
BASE="http://127.0.0.1:$SG_PORT"
mkdir -p "$OUT/raw"
log() { printf '[%s %s] %s\n' "$FLOOD_NAME" "$(date -u +%H:%M:%S)" "$*" >&2; }

# flood_environment WHAT: $OUT/environment.txt (WHAT: a line naming the binaries).
flood_environment() {
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "host: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
        echo "wrk: $(wrk -v 2>&1 | head -1)"
        echo "$1"
        echo "SECONDS_RUN=$SECONDS_RUN VERIFY_CONNS=$VERIFY_CONNS FLOOD_CONNS=$FLOOD_CONNS"
    } > "$OUT/environment.txt"
}

# flood_dir DIR BIN SERVER_EXTRA ATTRIBUTES: a fresh DIR with the peers' IdP metadata, a
# sled-store config ([server] plus SERVER_EXTRA lines; [attributes] account_id plus the
# ATTRIBUTES lines, which may go on to further sections) and an SP key.
flood_dir() {
    local dir="$1" bin="$2" server_extra="$3" attributes="$4"
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$PEERS/idp/idp-metadata.xml" "$dir/"
    cat > "$dir/samlgate.toml" <<CONF
[server]
listen = "127.0.0.1:$SG_PORT"
public_url = "$BASE"
$server_extra
[sp]
entity_id = "$BASE/saml/metadata"
keys_dir = "sp-keys"
[idp]
metadata = "idp-metadata.xml"
[store]
path = "store"
[attributes]
account_id = "gmisAccountId"
$attributes
CONF
    (cd "$dir" && "$bin" keys new --config samlgate.toml >/dev/null 2>&1)
}

# flood_serve DIR BIN: `BIN serve` in DIR (pid in DIR/pid, log in DIR/log), up on /healthz.
flood_serve() {
    (cd "$1" && exec "$2" serve --config samlgate.toml >>"$1/log" 2>&1) &
    echo $! > "$1/pid"
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$BASE/healthz" && break
        sleep 0.1
    done
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
# pct FILE 99%: that percentile of a `wrk --latency` output.
pct() { awk -v q="$2" '$1 == q {print $2}' "$1"; }
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
non3xx() { awk '/Non-2xx or 3xx/ {print $5}' "$1"; }

# verify_run RAW PID COOKIE [FLOOD_WRK_ARGS...]: /auth/verify with COOKIE under
# `wrk -t1 -c$VERIFY_CONNS -d$SECONDS_RUN --latency` (RAW.verify.txt); with FLOOD_WRK_ARGS,
# `wrk -t1 -c$FLOOD_CONNS -d$((SECONDS_RUN + 4))s FLOOD_WRK_ARGS` runs from 2 s before to 2 s
# after it (RAW.flood.txt). Sets LOAD0 (load average before), CPU (the gateway's CPU seconds
# during the verify run) and ASYNC_CPU (its async workers' share).
verify_run() {
    local raw="$1" pid="$2" cookie="$3" fp="" t0 t1 a0 a1
    shift 3
    LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$#" -gt 0 ]; then
        wrk -t1 -c"$FLOOD_CONNS" -d"$((SECONDS_RUN + 4))s" "$@" > "$raw.flood.txt" 2>&1 &
        fp=$!
        sleep 2
    fi
    t0="$(cpu_ticks "$pid")" a0="$(async_ticks "$pid")"
    wrk -t1 -c"$VERIFY_CONNS" -d"${SECONDS_RUN}s" --timeout 10s --latency -H "Cookie: $cookie" \
        "$BASE/auth/verify" > "$raw.verify.txt" 2>&1 || true
    t1="$(cpu_ticks "$pid")" a1="$(async_ticks "$pid")"
    if [ -n "$fp" ]; then wait "$fp" || true; fi
    CPU="$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b - a) / hz}')"
    ASYNC_CPU="$(awk -v a="$a0" -v b="$a1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b - a) / hz}')"
}
