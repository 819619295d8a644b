#!/usr/bin/env python3
"""Tables (markdown) from one bench/load.sh run: medians of the repeats, ratios, targets.

usage: summarize.py RESULTS_DIR      (reads acs.jsonl, session.jsonl, environment.txt)
"""
import json
import os
import statistics
import sys


def load(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip()]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mmm(xs, fmt="{:.0f}"):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "-"
    return "{} / **{}** / {}".format(fmt.format(xs[0]), fmt.format(statistics.median(xs)), fmt.format(xs[-1]))


def f(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)


def la_range(rows):
    xs = sorted(float(r["loadavg"].split()[0]) for r in rows if r.get("loadavg"))
    return "%.1f to %.1f (median %.1f)" % (xs[0], xs[-1], statistics.median(xs)) if xs else "?"


def main():
    d = sys.argv[1]
    acs = load(os.path.join(d, "acs.jsonl"))
    ses = load(os.path.join(d, "session.jsonl"))
    out = []
    p = out.append
    p("# samlgate load run: %s\n" % os.path.basename(os.path.abspath(d)))
    env = os.path.join(d, "environment.txt")
    if os.path.exists(env):
        p("```\n" + open(env).read().strip() + "\n```\n")
    targets = []

    if acs:
        labels = []
        for r in acs:
            if r["label"] not in labels:
                labels.append(r["label"])
        rate = {l: med([r["logins_per_s"] for r in acs if r["label"] == l]) for l in labels}
        conc = acs[0]["concurrency"]
        p("## ACS logins (concurrency %d; min / median / max over %d rounds)\n" %
          (conc, len({r.get("repeat") for r in acs})))
        p("| SP | logins/s | ÷ shib (med) | p50 ms (med) | p99 ms (med) | server CPU ms/login (med) | "
          "peak RSS MiB (max) | ok / attempted (sum) | whoami checks |")
        p("|---|---|---|---|---|---|---|---|---|")
        for l in labels:
            rs = [r for r in acs if r["label"] == l]
            ratio = rate[l] / rate["shib"] if rate.get("shib") else None
            vok = sum(r.get("verify", {}).get("ok", 0) for r in rs)
            vn = sum(r.get("verify", {}).get("checked", 0) for r in rs)
            p("| %s | %s | %s | %s | %s | %s | %s | %d / %d | %d / %d |" % (
                l, mmm([r["logins_per_s"] for r in rs], "{:.1f}"),
                f(ratio, "{:.2f}x"),
                f(med([r["lat_ms"]["p50"] for r in rs])), f(med([r["lat_ms"]["p99"] for r in rs])),
                f(med([r.get("server_cpu_ms_per_login") for r in rs]), "{:.2f}"),
                f(max([r.get("server_peak_rss_mib") or 0 for r in rs])),
                sum(r["success"] for r in rs), sum(r["attempted"] for r in rs), vok, vn))
        p("")
        p("1-min load average at the end of each run: %s" % la_range(acs))
        p("")
        if rate.get("shib") and rate.get("samlgate"):
            rt = rate["samlgate"] / rate["shib"]
            targets.append(("samlgate ACS logins/s at c=%d >= 5x Shibboleth (first logins)" % conc,
                            "%.0f vs %.0f = %.2fx" % (rate["samlgate"], rate["shib"], rt), rt >= 5))
            if rate.get("samlgate-returning"):
                rt2 = rate["samlgate-returning"] / rate["shib"]
                targets.append(("same, returning users",
                                "%.0f vs %.0f = %.2fx" % (rate["samlgate-returning"], rate["shib"], rt2),
                                rt2 >= 5))

    if ses:
        p("## Requests with a session (wrk -t2, min / median / max over rounds)\n")
        p("| target | conns | req/s | ÷ nginx (med) | p50 ms (med) | p99 ms (med) | server CPU µs/req (med) | "
          "peak RSS MiB (max) | non-2xx |")
        p("|---|---|---|---|---|---|---|---|---|")
        conns = sorted({r["conns"] for r in ses})
        names = []
        for r in ses:
            if r["target"] not in names:
                names.append(r["target"])
        for c in conns:
            ng = med([r["wrk"].get("rps") for r in ses if r["target"] == "nginx-static" and r["conns"] == c])
            for n in names:
                rs = [r for r in ses if r["target"] == n and r["conns"] == c]
                if not rs:
                    continue
                rps = med([r["wrk"].get("rps") for r in rs])
                cpu = med([1e6 * r["server"]["server_cpu_s"] / r["wrk"]["requests"]
                           for r in rs if r["wrk"].get("requests")])
                p("| %s | %d | %s | %s | %s | %s | %s | %s | %d |" % (
                    n, c, mmm([r["wrk"].get("rps") for r in rs]),
                    f(rps / ng if ng and rps else None, "{:.2f}"),
                    f(med([r["wrk"].get("p50_ms") for r in rs]), "{:.2f}"),
                    f(med([r["wrk"].get("p99_ms") for r in rs]), "{:.2f}"),
                    f(cpu, "{:.0f}"),
                    f(max([r["server"].get("server_peak_rss_mib") or 0 for r in rs])),
                    sum(r.get("non_2xx_3xx", 0) + r["wrk"].get("err_status", 0) for r in rs)))
                if n == "samlgate-verify" and ng and rps:
                    targets.append(("/auth/verify with a session >= nginx static, %d conns" % c,
                                    "%.0f vs %.0f req/s = %.2fx" % (rps, ng, rps / ng), rps >= ng))
        p("")
        p("1-min load average at the end of each run: %s" % la_range(ses))
        p("")

    mixed = load(os.path.join(d, "mixed.jsonl"))
    if mixed:
        p("## Forward-auth during logins (wrk -c8; samlgate ACS at concurrency 8 in the background)\n")
        p("| target | req/s (med) | p50 ms (med) | p99 ms (med) | max ms (med) | ACS logins/s meanwhile (med) |")
        p("|---|---|---|---|---|---|")
        for n in ("samlgate-verify-alone", "samlgate-verify-under-acs", "nginx-static-alone", "nginx-static-under-acs"):
            rs = [r for r in mixed if r.get("target") == n]
            if not rs:
                continue
            acs_l = [r["logins_per_s"] for r in mixed if r.get("label") == "acs-during-" + n.replace("-under-acs", "")]
            p("| %s | %s | %s | %s | %s | %s |" % (
                n, f(med([r["wrk"].get("rps") for r in rs]), "{:.0f}"),
                f(med([r["wrk"].get("p50_ms") for r in rs]), "{:.2f}"),
                f(med([r["wrk"].get("p99_ms") for r in rs]), "{:.2f}"),
                f(med([r["wrk"].get("max_ms") for r in rs]), "{:.1f}"),
                f(med(acs_l), "{:.0f}") if n.endswith("under-acs") else "-"))
        p("")

    rss = [r.get("server_peak_rss_mib") for r in acs if r["label"].startswith("samlgate")]
    rss += [r["server"].get("server_peak_rss_mib") for r in ses if r["target"] == "samlgate-verify"]
    rss = [x for x in rss if x]
    if rss:
        targets.append(("samlgate RSS < 50 MB under load", "peak %.1f MiB (%.1f MB)" % (max(rss), max(rss) * 1.048576),
                        max(rss) * 1.048576 < 50))

    if targets:
        p("## Targets\n")
        p("| target | measured | met |")
        p("|---|---|---|")
        for t, m, ok in targets:
            p("| %s | %s | %s |" % (t, m, "yes" if ok else "**no**"))
        p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
