#!/usr/bin/env bash
# samlgate under connection and invalid-ACS floods (issue #7 item 5), on loopback.
# About 17 minutes with the defaults (3 rounds of each section) on the 2-core machine.
#
#   conns   wrk -t2 -c$CONNS (1,000) keep-alive connections on GET /auth/verify with a live
#           session cookie for CONNS_SECONDS (60 s), while the peers' bench_acs.py posts VALID,
#           distinct, fresh ACS responses (gen_responses.py --vary, generated just before the
#           round: every post a first login of a new NameID) at concurrency ACS_CONC (4) for the
#           same time. Records req/s, p50/p99/max, non-2xx and socket errors (target: 0),
#           ACS logins/s and failures meanwhile, the gateway's peak RSS and CPU (procstat.py),
#           its open fds and the ESTABLISHED connections on its port half-way through, and
#           the kernel's TcpExt ListenOverflows (accept queue full) over the run.
#           Fresh gateway (empty store) per round.
#   flood   wrk -t2 -c$VERIFY_CONNS (8) on /auth/verify for VERIFY_SECONDS (30 s) alone, then
#           while a flood of INVALID ACS posts runs (an aiohttp client, concurrency FLOOD_CONC
#           (32), as fast as it can) of each kind in FLOOD_KINDS:
#             garbage  ~8 KB SAMLResponse that is not base64          -> 400 bad_base64
#             bigsig   ~170 KB well-formed Response (both signatures, the IdP's real key) with
#                      one byte of an attribute value changed after signing: prescan, strict
#                      parse, c14n and digests of the whole document run -> 403 signature_invalid
#             doctype  a 7 KB signed Response with an internal DTD subset -> 400 doctype_forbidden
#             mixed    the three above in turn on every connection
#           and, as the control for plain CPU sharing on this 2-core box (FLOOD_CONTROL=1),
#           wrk on the peers' nginx static page alone and during the mixed flood (the flood
#           still aimed at samlgate). Records /auth/verify p50/p99/max alone vs during each flood
#           (target: p99 <= 10 ms), the flood's rate and status codes, and the reason codes
#           the gateway logged for the flood's posts (counted from its log), and the gateway's
#           CPU split: its runtime (async) worker threads vs the rest (verification, store).
#
# usage: bench/flood.sh [conns] [flood]    (default: both)
#        OUT=bench/results/flood-<UTC> bench/flood.sh summary    (only rewrite its summary.md)
#   env: REPEATS (3), CONNS (1000), CONNS_SECONDS (60), ACS_CONC (4),
#        ACS_POOL (CONNS_SECONDS*250 responses per round), VERIFY_CONNS (8), VERIFY_SECONDS (30),
#        FLOOD_CONC (32), FLOOD_KINDS ("mixed garbage bigsig doctype"), BIG_KB (170: XML size of
#        bigsig; its form body must stay under [server] max_body_bytes = 256 KiB),
#        FLOOD_CONTROL (1), VERIFY_SLOTS (empty: the gateway's default; a number: written as
#        [server] max_concurrent_verifications into the run's config, for comparison),
#        NOFILE (65536: the soft fd limit the script raises to, at most the hard limit),
#        OUT (bench/results/flood-<UTC>), SAMLGATE_BIN (default: cargo build --release once,
#        binary copied aside), BENCH_WORK (/tmp/samlgate-bench), SG_PORT (18090)
# Output: $OUT/{environment.txt,conns.jsonl,flood.jsonl,summary.md,samlgate-log-tail.txt,raw/}
#   raw/ holds the wrk text, bench_acs.py and flood-client JSON of every run (a few KB each);
#   response pools and request bodies stay in $BENCH_WORK/flood.
set -euo pipefail
# shellcheck source=bench/common.sh disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# our own gateway folder, so a bench/load.sh run's store is never wiped by ours
SG_DIR="$BENCH_WORK/samlgate-flood"

SECTIONS="${*:-conns flood}"
REPEATS="${REPEATS:-3}"
CONNS="${CONNS:-1000}"
CONNS_SECONDS="${CONNS_SECONDS:-60}"
ACS_CONC="${ACS_CONC:-4}"
ACS_POOL="${ACS_POOL:-$((CONNS_SECONDS * 250))}"
VERIFY_CONNS="${VERIFY_CONNS:-8}"
VERIFY_SECONDS="${VERIFY_SECONDS:-30}"
FLOOD_CONC="${FLOOD_CONC:-32}"
FLOOD_KINDS="${FLOOD_KINDS:-mixed garbage bigsig doctype}"
BIG_KB="${BIG_KB:-170}"
FLOOD_CONTROL="${FLOOD_CONTROL:-1}"
NOFILE="${NOFILE:-65536}"
VERIFY_SLOTS="${VERIFY_SLOTS:-}"
if [ "$SECTIONS" = summary ] && [ ! -f "${OUT:-/nonexistent}/environment.txt" ]; then
    bdie "summary: set OUT to an existing results folder"
fi
OUT="${OUT:-$BENCH_DIR/results/flood-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT/raw"
OUT="$(cd "$OUT" && pwd)"
FW="$BENCH_WORK/flood"
VERIFY_URL="http://127.0.0.1:$SG_PORT/auth/verify"
NGINX_URL="http://127.0.0.1:18080/public/menu.html"

# write_summary: $OUT/summary.md from $OUT/{environment.txt,conns.jsonl,flood.jsonl}
write_summary() {
    "$PY" - "$OUT" > "$OUT/summary.md" <<'PYEOF'
import json, os, statistics, sys
out = sys.argv[1]


def load(name):
    p = os.path.join(out, name)
    return [json.loads(l) for l in open(p) if l.strip()] if os.path.exists(p) else []


def mmm(xs, fmt="{:.1f}"):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return "{} / **{}** / {}".format(fmt.format(xs[0]), fmt.format(statistics.median(xs)), fmt.format(xs[-1]))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


env = open(os.path.join(out, "environment.txt")).read()
print("# samlgate flood run: %s\n" % os.path.basename(out))
print("```\n" + env.strip() + "\n```\n")
print("Every figure: min / **median** / max over the rounds.\n")

rows = load("conns.jsonl")
if rows:
    n = len(rows)
    w = [r["w"]["wrk"] for r in rows]
    a = [r["acs"] for r in rows]
    s = [r["server"] for r in rows]
    print("## A. %s keep-alive connections on /auth/verify for %s s, ACS logins at concurrency %s meanwhile (%d rounds)\n"
          % (rows[0]["conns"], rows[0]["seconds"], a[0].get("concurrency"), n))
    print("| measure | value |\n|---|---|")
    print("| /auth/verify req/s | %s |" % mmm([x.get("rps") for x in w], "{:.0f}"))
    print("| p50 / p99 / max ms (median round) | %s / %s / %s |" % tuple(
        "{:.1f}".format(med([x.get(k) for x in w])) for k in ("p50_ms", "p99_ms", "max_ms")))
    print("| p99 ms | %s |" % mmm([x.get("p99_ms") for x in w]))
    print("| max ms | %s |" % mmm([x.get("max_ms") for x in w], "{:.0f}"))
    print("| requests answered (sum of rounds) | %d |" % sum(x.get("requests", 0) for x in w))
    print("| non-2xx/3xx (sum) | **%d** |" % sum(r["w"]["non_2xx_3xx"] for r in rows))
    print("| socket errors connect/read/write/timeout (sum) | **%d / %d / %d / %d** |" % tuple(
        sum(x.get(k, 0) for x in w) for k in ("err_connect", "err_read", "err_write", "err_timeout")))
    print("| ESTABLISHED on the gateway port half-way (includes ACS client) | %s |" % mmm([r["mid"].get("established") for r in rows], "{:.0f}"))
    print("| gateway open fds half-way | %s |" % mmm([r["mid"].get("fds") for r in rows], "{:.0f}"))
    print("| kernel ListenOverflows during the run (accept queue full: SYN/ACK dropped, client retries) | %s |" % mmm([r.get("listen_overflows") for r in rows], "{:.0f}"))
    print("| ACS logins/s meanwhile | %s |" % mmm([x.get("logins_per_s") for x in a]))
    print("| ACS logins ok / failed (sum) | %d / **%d** |" % (sum(x.get("success", 0) for x in a), sum(x.get("failed", 0) for x in a)))
    print("| ACS login latency p50 ms | %s |" % mmm([x.get("lat_ms", {}).get("p50") for x in a]))
    print("| ACS login latency p99 ms | %s |" % mmm([x.get("lat_ms", {}).get("p99") for x in a]))
    print("| ACS cookies followed up ok | %d / %d |" % (sum(x.get("verify", {}).get("ok", 0) for x in a), sum(x.get("verify", {}).get("checked", 0) for x in a)))
    print("| ACS posting time s (target: the wrk time) | %s |" % mmm([x.get("wall_s") for x in a]))
    print("| ACS pool used up before the end? | %s |" % ", ".join(
        "yes" if x.get("attempted", 0) >= r["acs_pool"] else "no" for x, r in zip(a, rows)))
    print("| gateway peak RSS MiB | %s |" % mmm([x.get("server_peak_rss_mib") for x in s]))
    print("| gateway CPU, %% of 2 cores | %s |" % mmm([100 * x["server_cpu_s"] / (2 * x["duration_s"]) for x in s if x.get("duration_s")], "{:.0f}"))
    print("| /auth/verify right after | %s |" % ", ".join(str(r["verify_after"]) for r in rows))
    print("| load average before -> after | %s |\n" % "; ".join("%s -> %s" % (r["loadavg_before"], r["loadavg_after"]) for r in rows))

rows = load("flood.jsonl")
if rows:
    print("## B. /auth/verify (wrk -c%s, %s s) alone and during invalid-ACS floods\n" % (rows[0]["conns"], rows[0]["seconds"]))
    print("| target, condition | req/s | p50 ms | p99 ms | max ms | p99 <= 10 ms? | flood req/s | flood statuses (sum) | reasons logged (sum) | gateway CPU % of 2 cores | of which async workers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    order = []
    for r in rows:
        k = (r["target"], r["condition"])
        if k not in order:
            order.append(k)
    for k in order:
        rs = [r for r in rows if (r["target"], r["condition"]) == k]
        w = [r["w"]["wrk"] for r in rs]
        fl = [r["flood"] for r in rs if r["flood"]]
        st, rsn = {}, {}
        for f in fl:
            for c, v in f.get("status", {}).items():
                st[c] = st.get(c, 0) + v
        for r in rs:
            for c, v in r["log_reasons"].items():
                rsn[c] = rsn.get(c, 0) + v
        p99s = [x.get("p99_ms") for x in w if x.get("p99_ms") is not None]
        ok = "-" if k[0] != "samlgate" else ("yes" if p99s and max(p99s) <= 10 else ("median only" if p99s and med(p99s) <= 10 else "**no**"))
        cpu = [100 * r["server"]["server_cpu_s"] / (2 * r["server"]["duration_s"]) for r in rs if r["server"].get("duration_s")]
        aw = [100 * r["threads"]["async_workers_cpu_s"] / (2 * r["threads"]["seconds"]) for r in rs if r.get("threads", {}).get("seconds")]
        print("| %s, %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            k[0], k[1], mmm([x.get("rps") for x in w], "{:.0f}"), mmm([x.get("p50_ms") for x in w], "{:.2f}"),
            mmm([x.get("p99_ms") for x in w]), mmm([x.get("max_ms") for x in w], "{:.0f}"), ok,
            mmm([f.get("rps") for f in fl], "{:.0f}") if fl else "-",
            ", ".join("%s: %d" % kv for kv in sorted(st.items())) or "-",
            ", ".join("%s: %d" % kv for kv in sorted(rsn.items())) or "-",
            mmm(cpu, "{:.0f}") if k[0] == "samlgate" else "-",
            mmm(aw, "{:.0f}") if k[0] == "samlgate" and aw else "-"))
    print()
    print("CPU %% of 2 cores over the wrk run (procstat.py); async workers: the gateway's first %d tokio-rt-worker "
          "threads by thread id (the runtime's worker threads; verification and store work run on the other, "
          "blocking-pool threads).\n" % (os.cpu_count() or 2))
    # per kind inside the floods: the flood client's own view
    print("Flood client, per kind (median round): requests/s, status codes, X-Samlgate-Reason, latency p50/p99 ms\n")
    print("| flood | kind | body bytes | req/s | statuses | reason header | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|")
    seen = []
    for r in rows:
        if r["target"] == "samlgate" and r["flood"]:
            for kind in r["flood"].get("kinds", {}):
                if (r["condition"], kind) not in seen:
                    seen.append((r["condition"], kind))
    for cond, kind in seen:
        ks = [r["flood"]["kinds"][kind] for r in rows if r["target"] == "samlgate" and r["condition"] == cond]
        st = {}
        rh = {}
        for x in ks:
            for c, v in x["status"].items():
                st[c] = st.get(c, 0) + v
            for c, v in x["reason_header"].items():
                rh[c] = rh.get(c, 0) + v
        print("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
            cond, kind, ks[0]["body_bytes"], mmm([x["rps"] for x in ks], "{:.0f}"),
            ", ".join("%s: %d" % kv for kv in sorted(st.items())),
            ", ".join("%s: %d" % kv for kv in sorted(rh.items())) or "-",
            mmm([x["lat_ms"]["p50"] for x in ks]), mmm([x["lat_ms"]["p99"] for x in ks])))
    print()
PYEOF
}

if [ "$SECTIONS" = summary ]; then   # only rewrite summary.md of the results folder OUT
    write_summary
    cat "$OUT/summary.md"
    exit 0
fi

# 1,000 client sockets in wrk plus 1,000 in the gateway (which inherits this limit): the
# usual 1024 default would not do. Raise the soft limit as far as NOFILE / the hard limit.
hard_nofile="$(ulimit -Hn)"
want_nofile="$NOFILE"
[ "$hard_nofile" != unlimited ] && [ "$hard_nofile" -lt "$want_nofile" ] && want_nofile="$hard_nofile"
ulimit -n "$want_nofile" || blog "WARNING: could not raise ulimit -n to $want_nofile"
[ "$(ulimit -n)" -ge $((CONNS + 200)) ] || bdie "ulimit -n is $(ulimit -n): too low for $CONNS connections"

if ss -Hltn "sport = :$SG_PORT" | grep -q .; then
    bdie "port $SG_PORT is in use (another bench run?); set SG_PORT"
fi

peers_copy
ensure_binary
mkdir -p "$FW"
cd "$PEERS"

nginx_started=0
cleanup() {
    sg_stop
    if [ "$nginx_started" = 1 ] && [ -s run/nginx/nginx.pid ]; then
        kill -QUIT "$(cat run/nginx/nginx.pid)" 2>/dev/null || true
    fi
    # the gateway's last 200 log lines, colour codes stripped
    if [ -f "$SG_DIR/samlgate.log" ]; then
        tail -n 200 "$SG_DIR/samlgate.log" | sed 's/\x1b\[[0-9;]*m//g' > "$OUT/samlgate-log-tail.txt" || true
    fi
}
trap cleanup EXIT

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "debian: $(cat /etc/debian_version)"
    echo "samlgate: $(cd "$REPO" && git rev-parse --short HEAD) (+ uncommitted: $(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock | wc -l) files in src/Cargo), binary $SAMLGATE_BIN"
    echo "binary: file time $(date -u -r "$SAMLGATE_BIN" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$SAMLGATE_BIN" | cut -c1-16)"
    echo "rustc: $(rustc --version 2>/dev/null)"
    dpkg-query -W -f='${Package} ${Version}\n' wrk nginx libssl3 libxmlsec1 libxml2 2>/dev/null
    echo "python: $("$PY" -c 'import sys, aiohttp; print(sys.version.split()[0], "aiohttp", aiohttp.__version__)')"
    echo "ulimit -n (soft/hard): $(ulimit -n) / $hard_nofile"
    echo "net.core.somaxconn: $(cat /proc/sys/net/core/somaxconn); tcp_max_syn_backlog: $(cat /proc/sys/net/ipv4/tcp_max_syn_backlog); ip_local_port_range: $(tr '\t' ' ' < /proc/sys/net/ipv4/ip_local_port_range)"
    echo "gateway [server] limits: defaults (max_connections 10000, header_read_timeout_seconds 10, max_body_bytes 262144, max_concurrent_verifications = cores = $(nproc) since b0f1f75 (4 x cores before) unless VERIFY_SLOTS is set); listen backlog: the 'listen socket' line below"
    echo "settings: REPEATS=$REPEATS CONNS=$CONNS CONNS_SECONDS=$CONNS_SECONDS ACS_CONC=$ACS_CONC ACS_POOL=$ACS_POOL VERIFY_CONNS=$VERIFY_CONNS VERIFY_SECONDS=$VERIFY_SECONDS FLOOD_CONC=$FLOOD_CONC FLOOD_KINDS=\"$FLOOD_KINDS\" BIG_KB=$BIG_KB FLOOD_CONTROL=$FLOOD_CONTROL VERIFY_SLOTS=${VERIFY_SLOTS:-default}"
    echo "loadavg at start: $(cat /proc/loadavg)"
} > "$OUT/environment.txt"
cat "$OUT/environment.txt" >&2

# ------------------------------------------------------------------ helpers (python)
# The invalid-ACS flood client: keep-alive aiohttp connections, each posting the kinds given
# in turn, as fast as answers come back, until --duration. One JSON object on stdout.
cat > "$FW/flood_client.py" <<'PYEOF'
import argparse, asyncio, json, resource, time
import aiohttp
try:
    import uvloop
except ImportError:
    uvloop = None


def pct(v, p):
    if not v:
        return None
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return round(v[k] * 1000, 2)


async def run(a):
    kinds = []
    for spec in a.kind:
        name, _, path = spec.partition("=")
        kinds.append((name, open(path, "rb").read()))
    st = {n: {"n": 0, "status": {}, "reason": {}, "lat": []} for n, _ in kinds}
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "samlgate-flood/1"}
    conn = aiohttp.TCPConnector(limit=a.concurrency, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=a.timeout),
                                     cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False) as s:
        deadline = time.perf_counter() + a.duration

        async def worker(w):
            i = w
            while time.perf_counter() < deadline:
                name, body = kinds[i % len(kinds)]
                i += 1
                t0 = time.perf_counter()
                reason = None
                try:
                    async with s.post(a.url, data=body, headers=hdrs, allow_redirects=False) as r:
                        await r.read()
                        code = str(r.status)
                        reason = r.headers.get("X-Samlgate-Reason")
                except Exception as e:  # connection reset, timeout
                    code = "error:" + type(e).__name__
                k = st[name]
                k["n"] += 1
                k["status"][code] = k["status"].get(code, 0) + 1
                if reason:
                    k["reason"][reason] = k["reason"].get(reason, 0) + 1
                k["lat"].append(time.perf_counter() - t0)

        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(w) for w in range(a.concurrency)])
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    total = sum(k["n"] for k in st.values())
    status = {}
    for k in st.values():
        for c, n in k["status"].items():
            status[c] = status.get(c, 0) + n
    out = {"url": a.url, "concurrency": a.concurrency, "wall_s": round(wall, 3), "requests": total,
           "rps": round(total / wall, 1), "status": status,
           "client_cpu_pct_of_one_core": round(100 * ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / wall, 1),
           "kinds": {}}
    for n, _ in kinds:
        k = st[n]
        lat = sorted(k["lat"])
        out["kinds"][n] = {"requests": k["n"], "rps": round(k["n"] / wall, 1), "status": k["status"],
                           "reason_header": k["reason"], "body_bytes": len(dict(kinds)[n]),
                           "lat_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99),
                                      "max": round(lat[-1] * 1000, 2) if lat else None}}
    return out


ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--kind", action="append", required=True, help="NAME=FILE of a complete form body")
ap.add_argument("--concurrency", type=int, default=32)
ap.add_argument("--duration", type=float, default=30)
ap.add_argument("--timeout", type=float, default=30)
a = ap.parse_args()
if uvloop:
    uvloop.install()
print(json.dumps(asyncio.run(run(a))))
PYEOF

# The invalid request bodies (form-encoded, ready to post): garbage, bigsig, doctype.
make_bodies() {
    local big_attr=()
    # bigsig: BIG_KB of XML, mostly 40 values of one extra attribute (each well under the
    # 128 KiB limit of one command-line argument)
    mapfile -d '' big_attr < <("$PY" - "$BIG_KB" <<'PYEOF'
import random, string, sys
n, size = 40, (int(sys.argv[1]) * 1024 - 8000) // 40 - 60
rnd = random.Random(11)
for i in range(1, n + 1):
    v = "PAD%02d-" % i + "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(size))
    sys.stdout.write("--attr\0floodPadding=%s\0" % v)
PYEOF
)
    "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count 1 --nameid GM0888888 \
        "${big_attr[@]}" --out "$FW/bigsig-src/" 2>/dev/null
    "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count 1 --nameid GM0888889 \
        --out "$FW/small-src/" 2>/dev/null
    "$PY" - "$FW" $((256 * 1024)) <<'PYEOF'
import base64, os, random, sys, urllib.parse
fw, limit = sys.argv[1], int(sys.argv[2])
def form(xml):
    return urllib.parse.urlencode([("SAMLResponse", base64.b64encode(xml).decode())]).encode()
big = open(os.path.join(fw, "bigsig-src", "000000.xml"), "rb").read()
# one byte of a signed attribute value changed after signing: both digests fail, after the
# whole document went through parse and c14n
i = big.index(b"PAD01-") + 10
big = big[:i] + (b"A" if big[i:i + 1] != b"A" else b"B") + big[i + 1:]
small = open(os.path.join(fw, "small-src", "000000.xml"), "rb").read()
decl, _, rest = small.partition(b"?>")
doctype = (decl + b"?>\n<!DOCTYPE samlp:Response [\n<!ENTITY a \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\">\n"
           b"<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\n"
           b"<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">\n]>" + rest.replace(b"</samlp:Response>", b"&c;</samlp:Response>", 1))
rnd = random.Random(7)
alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*$,;"
garbage = "".join(rnd.choice(alphabet) for _ in range(8000))
bodies = {"bigsig": form(big), "doctype": form(doctype),
          "garbage": urllib.parse.urlencode([("SAMLResponse", garbage)]).encode()}
for name, body in bodies.items():
    open(os.path.join(fw, name + ".form"), "wb").write(body)
    print("%s: %d bytes form body%s" % (name, len(body), " (XML %d bytes)" % len(big) if name == "bigsig" else ""))
if len(bodies["bigsig"]) > limit:
    sys.exit("bigsig body %d > max_body_bytes %d: lower BIG_KB" % (len(bodies["bigsig"]), limit))
PYEOF
}

jq_merge() {  # KEY=JSON... : one JSON object from key=value pairs (values parsed as JSON if they are)
    "$PY" - "$@" <<'PYEOF'
import json, sys
d = {}
for kv in sys.argv[1:]:
    k, _, v = kv.partition("=")
    try:
        d[k] = json.loads(v)
    except ValueError:
        d[k] = v
print(json.dumps(d, ensure_ascii=False))
PYEOF
}

fresh_gateway() {  # a new store and a session cookie in $sg_cookie
    sg_stop
    sg_config
    if [ -n "$VERIFY_SLOTS" ]; then
        sed -i "/^public_url = /a max_concurrent_verifications = $VERIFY_SLOTS" "$SG_DIR/samlgate.toml"
    fi
    # the port may have been taken since the start (another engineer's bench run): sg_start
    # would then find *their* gateway healthy and we would measure it
    if ss -Hltn "sport = :$SG_PORT" | grep -q .; then
        bdie "port $SG_PORT is in use by another process; set SG_PORT"
    fi
    sg_start
    kill -0 "$(cat "$SG_DIR/samlgate.pid")" 2>/dev/null ||
        bdie "our gateway is not running (port $SG_PORT taken?): $(tail -3 "$SG_DIR/samlgate.log")"
    if ! grep -q '^listen socket' "$OUT/environment.txt"; then
        echo "listen socket (ss -ltn: Recv-Q, Send-Q = backlog): $(ss -Hltn "sport = :$SG_PORT" | awk '{print $2, $3}')" >> "$OUT/environment.txt"
    fi
    sg_cookie="$(sg_session GM0999999)"
    [ -n "$sg_cookie" ] || bdie "no samlgate session cookie"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $sg_cookie" "$VERIFY_URL")
    [ "$code" = 200 ] || bdie "/auth/verify with the session cookie: HTTP $code"
}

# wrk_json RAWFILE: the WRKJSON line of lib/wrk-report.lua plus wrk's own error counts
wrk_json() {
    local f="$1" line non2xx sock
    line="$(sed -n 's/^WRKJSON //p' "$f")"
    [ -n "$line" ] || line='{}'
    non2xx="$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$f")"
    sock="$(sed -n 's/^ *Socket errors: *\(.*\)/\1/p' "$f")"
    jq_merge "wrk=$line" "non_2xx_3xx=${non2xx:-0}" "socket_errors=\"${sock:-none}\""
}

# listen_overflows: the kernel's count of connections dropped because a listen (accept) queue
# was full (TcpExt ListenOverflows; system-wide, so read it right before and after a run)
listen_overflows() {
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) n[i] = $i; h = 1 }
        else { for (i = 1; i <= NF; i++) if (n[i] == "ListenOverflows") print $i } }' /proc/net/netstat
}

# thread_cpu FILE: the gateway's threads now, "tid comm cpu-ticks" per line (+ a "total" line)
thread_cpu() {
    local pid t
    pid="$(cat "$SG_DIR/samlgate.pid")"
    {
        for t in /proc/"$pid"/task/*; do
            printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ < "$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
        done
        printf 'total total %s\n' "$(awk '{print $14 + $15}' "/proc/$pid/stat")"
    } > "$1" 2>/dev/null || true
}
# thread_split BEFORE AFTER SECONDS: CPU seconds of the runtime's async worker threads (the
# first nproc tokio-rt-worker threads by id; blocking-pool threads come later) and of the process
thread_split() {
    "$PY" - "$@" "$(nproc)" <<'PYEOF'
import json, os, sys
b, a, secs, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
hz = os.sysconf("SC_CLK_TCK")
def rd(f):
    d = {}
    for l in open(f):
        p = l.split()
        if len(p) == 3:
            d[p[0]] = (p[1], int(p[2]))
    return d
B, A = rd(b), rd(a)
if "total" not in A or "total" not in B:
    print(json.dumps({"error": "gateway threads not readable"}))
    sys.exit(0)
workers = sorted((int(t) for t, (c, _) in A.items() if t != "total" and c == "tokio-rt-worker"))[:n]
aw = sum(A[str(t)][1] - B.get(str(t), ("", 0))[1] for t in workers)
tot = A["total"][1] - B["total"][1]
print(json.dumps({"seconds": secs, "async_workers_cpu_s": aw / hz, "process_cpu_s": tot / hz,
                  "threads_after": len(A) - 1, "async_worker_tids": workers}))
PYEOF
}

# log_reasons OFFSET: reason codes of the gateway's "login refused"/"login accepted" lines
# written after byte OFFSET of its log, as JSON {"code": count}
log_reasons() {
    tail -c +"$(($1 + 1))" "$SG_DIR/samlgate.log" | sed 's/\x1b\[[0-9;]*m//g' |
        grep -E 'login (refused|accepted)' |
        sed -n 's/.* reason="\([a-z0-9_]*\)".*/\1/p' | sed 's/^$/(accepted)/' |
        sort | uniq -c | awk 'BEGIN {printf "{"} {printf "%s\"%s\":%d", (NR > 1 ? "," : ""), $2, $1} END {print "}"}'
}

# ------------------------------------------------------------------ conns
if [[ " $SECTIONS " == *" conns "* ]]; then
    blog "== conns ($CONNS connections on /auth/verify for ${CONNS_SECONDS}s + ACS logins at concurrency $ACS_CONC, $REPEATS rounds)"
    : > "$OUT/conns.jsonl"
    for rep in $(seq "$REPEATS"); do
        fresh_gateway
        nid="GM$(printf '%07d' $((2000000 + rep * 100000)))"
        blog "rep $rep: generating $ACS_POOL fresh signed responses (NameIDs from $nid)"
        "$PY" gen_responses.py --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count "$ACS_POOL" \
            --vary --nameid "$nid" --jobs 2 --out "$FW/acs-pool.b64" 2>/dev/null
        raw="$OUT/raw/conns-rep$rep"
        load0="$(cut -d' ' -f1-3 /proc/loadavg)"
        off="$(stat -c %s "$SG_DIR/samlgate.log")"
        "$PY" bench_acs.py --label "acs-during-$CONNS-conns" --acs "$SG_ACS" --responses "$FW/acs-pool.b64" \
            --concurrency "$ACS_CONC" --duration "$CONNS_SECONDS" --relay-state /staff/menu.html \
            --whoami "http://127.0.0.1:$SG_PORT/auth/userinfo" --verify 20 \
            --server-pidfile "$SG_DIR/samlgate.pid" > "$raw.acs.json" 2>"$raw.acs.err" &
        bp=$!
        # bench_acs.py reads and encodes its whole pool before the first post (tens of seconds
        # for a big pool on a busy box): start wrk when its first login reaches the gateway, so
        # the two 60 s windows coincide
        for _ in $(seq 1800); do
            # grep -c reads to the end (grep -q would SIGPIPE tail, a failure under pipefail)
            [ "$(tail -c +"$((off + 1))" "$SG_DIR/samlgate.log" | grep -c 'login accepted')" -gt 0 ] && break
            kill -0 "$bp" 2>/dev/null || bdie "bench_acs.py ended before its first login: $(tail -3 "$raw.acs.err")"
            sleep 0.1
        done
        lo0="$(listen_overflows)"
        "$PY" procstat.py --duration "$CONNS_SECONDS" "$SG_DIR/samlgate.pid" > "$raw.procstat.json" &
        pp=$!
        # half-way: what the gateway holds open
        (
            sleep $((CONNS_SECONDS / 2))
            pid="$(cat "$SG_DIR/samlgate.pid")"
            printf '{"fds":%d,"established":%d,"threads":%d}\n' \
                "$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)" \
                "$(ss -Htn state established "sport = :$SG_PORT" | wc -l)" \
                "$(awk '/^Threads/ {print $2}' "/proc/$pid/status")" > "$raw.mid.json"
        ) &
        mp=$!
        wrk -t2 -c"$CONNS" -d"${CONNS_SECONDS}s" --timeout 10s -s lib/wrk-report.lua \
            -H "Cookie: $sg_cookie" "$VERIFY_URL" > "$raw.wrk.txt" 2>&1 || true
        wait "$bp" || true
        wait "$pp" || true
        wait "$mp" || true
        [ -s "$raw.acs.err" ] || rm -f "$raw.acs.err"
        load1="$(cut -d' ' -f1-3 /proc/loadavg)"
        lo1="$(listen_overflows)"
        after=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $sg_cookie" "$VERIFY_URL")
        acs_json="$(cat "$raw.acs.json")"
        [ -n "$acs_json" ] || acs_json='{}'
        line="$(jq_merge "repeat=$rep" "conns=$CONNS" "seconds=$CONNS_SECONDS" \
            "w=$(wrk_json "$raw.wrk.txt")" "acs=$acs_json" "acs_pool=$ACS_POOL" \
            "server=$(cat "$raw.procstat.json")" "mid=$(cat "$raw.mid.json" 2>/dev/null || echo '{}')" \
            "listen_overflows=$((lo1 - lo0))" "verify_after=$after" "loadavg_before=\"$load0\"" "loadavg_after=\"$load1\"")"
        printf '%s\n' "$line" >> "$OUT/conns.jsonl"
        blog "rep $rep: $(printf '%s' "$line" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); w=d["w"]["wrk"]; a=d["acs"]; print(w.get("rps"), "req/s p50", w.get("p50_ms"), "p99", w.get("p99_ms"), "max", w.get("max_ms"), "ms; non-2xx", d["w"]["non_2xx_3xx"], "socket errors:", d["w"]["socket_errors"], "| ACS", a.get("logins_per_s"), "logins/s ok", a.get("success"), "failed", a.get("failed"), a.get("by_status"), "| RSS", d["server"].get("server_peak_rss_mib"), "MiB CPU", d["server"].get("server_cpu_s"), "s | mid", d["mid"], "| listen overflows", d["listen_overflows"])')"
    done
fi

# ------------------------------------------------------------------ flood
# verify_run REP TARGET CONDITION KIND: wrk on TARGET (samlgate|nginx) for VERIFY_SECONDS,
# with the flood of KIND (none: alone) aimed at samlgate's ACS meanwhile
verify_run() {
    local rep="$1" target="$2" cond="$3" kind="$4" url="$VERIFY_URL" hdr=(-H "Cookie: $sg_cookie")
    local raw="$OUT/raw/flood-rep$rep-$target-$cond" fp="" pp off load0 flood='{}' reasons='{}' threads
    [ "$target" = nginx ] && { url="$NGINX_URL"; hdr=(); }
    off="$(stat -c %s "$SG_DIR/samlgate.log")"
    load0="$(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$kind" != none ]; then
        local kargs=() k
        if [ "$kind" = mixed ]; then
            for k in garbage bigsig doctype; do kargs+=(--kind "$k=$FW/$k.form"); done
        else
            kargs=(--kind "$kind=$FW/$kind.form")
        fi
        "$PY" "$FW/flood_client.py" --url "$SG_ACS" "${kargs[@]}" --concurrency "$FLOOD_CONC" \
            --duration $((VERIFY_SECONDS + 2)) > "$raw.flood.json" 2>"$raw.flood.err" &
        fp=$!
        sleep 1
    fi
    "$PY" procstat.py --duration "$VERIFY_SECONDS" "$SG_DIR/samlgate.pid" > "$raw.procstat.json" &
    pp=$!
    thread_cpu "$raw.threads0"
    wrk -t2 -c"$VERIFY_CONNS" -d"${VERIFY_SECONDS}s" --timeout 10s -s lib/wrk-report.lua \
        "${hdr[@]}" "$url" > "$raw.wrk.txt" 2>&1 || true
    thread_cpu "$raw.threads1"
    threads="$(thread_split "$raw.threads0" "$raw.threads1" "$VERIFY_SECONDS")"
    rm -f "$raw.threads0" "$raw.threads1"
    wait "$pp" || true
    if [ -n "$fp" ]; then
        wait "$fp" || true
        flood="$(cat "$raw.flood.json")"
        [ -n "$flood" ] || flood='{}'
        sleep 0.5
        reasons="$(log_reasons "$off")"
    fi
    [ -s "$raw.flood.err" ] || rm -f "$raw.flood.err"
    local line
    line="$(jq_merge "repeat=$rep" "target=$target" "condition=$cond" "conns=$VERIFY_CONNS" \
        "seconds=$VERIFY_SECONDS" "w=$(wrk_json "$raw.wrk.txt")" "flood=$flood" \
        "log_reasons=$reasons" "server=$(cat "$raw.procstat.json")" "threads=$threads" \
        "loadavg_before=\"$load0\"" "loadavg_after=\"$(cut -d' ' -f1-3 /proc/loadavg)\"")"
    printf '%s\n' "$line" >> "$OUT/flood.jsonl"
    blog "rep $rep $target $cond: $(printf '%s' "$line" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); w=d["w"]["wrk"]; f=d["flood"]; print(w.get("rps"), "req/s p50", w.get("p50_ms"), "p99", w.get("p99_ms"), "max", w.get("max_ms"), "ms non-2xx", d["w"]["non_2xx_3xx"], "| flood", f.get("rps"), "req/s", f.get("status"), "| log", d["log_reasons"])')"
}

if [[ " $SECTIONS " == *" flood "* ]]; then
    blog "== flood (/auth/verify -c$VERIFY_CONNS ${VERIFY_SECONDS}s alone / during invalid-ACS floods at concurrency $FLOOD_CONC: $FLOOD_KINDS; $REPEATS rounds)"
    : > "$OUT/flood.jsonl"
    make_bodies > "$OUT/raw/flood-bodies.txt"
    cat "$OUT/raw/flood-bodies.txt" >&2
    if [ "$FLOOD_CONTROL" = 1 ]; then
        # shellcheck disable=SC1091
        (source "$PEERS/common.sh" && ensure_pkgs nginx) >&2
        if ! { [ -s run/nginx/nginx.pid ] && kill -0 "$(cat run/nginx/nginx.pid)" 2>/dev/null; }; then
            nginx_started=1
        fi
        ./start-nginx.sh >/dev/null 2>&1 || bdie "start-nginx.sh failed"
    fi
    for rep in $(seq "$REPEATS"); do
        fresh_gateway
        # the first response on a fresh connection pool warms nothing up that matters, but a
        # short wrk run first keeps round 1 comparable with the later ones
        wrk -t1 -c"$VERIFY_CONNS" -d2s -H "Cookie: $sg_cookie" "$VERIFY_URL" >/dev/null 2>&1 || true
        verify_run "$rep" samlgate alone none
        for kind in $FLOOD_KINDS; do
            verify_run "$rep" samlgate "flood-$kind" "$kind"
        done
        if [ "$FLOOD_CONTROL" = 1 ]; then
            verify_run "$rep" nginx alone none
            verify_run "$rep" nginx flood-mixed mixed
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $sg_cookie" "$VERIFY_URL")
        blog "rep $rep: /auth/verify with the session cookie after the floods: HTTP $code"
    done
fi

echo "loadavg at end: $(cat /proc/loadavg)" >> "$OUT/environment.txt"

write_summary
cat "$OUT/summary.md"
blog "results in $OUT"
