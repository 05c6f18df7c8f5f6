#!/usr/bin/env python3
"""Query API latency through HTTP against a running Sift (a soak's, or one serving a storage benchmark's
data directory).

usage: query_latency.py [--server http://127.0.0.1:3200] [--n 200] [--sift target/release/sift] [--hours 1]
                        [--at UNIX_SECONDS]

Picks trace ids from a trace search, then times each query of the search-and-metrics issue's list n times
(sequentially, warm) and `sift query trace` end to end; prints a table of p50/p99/max in milliseconds (with
each query's goal) and the same as JSON on the last line. Searches cover the last `--hours` (default: the
API's default, the last hour); the metric queries are timed over 1 and 24 hours. With `--at`, every window
ends then instead of now (a storage benchmark's store holds one closed hour: `--at` its end).
"""

import argparse
import json
import subprocess
import time
import urllib.parse
import urllib.request


def get(server, path):
    with urllib.request.urlopen(server + path, timeout=120) as response:
        return json.loads(response.read())


def timed(n, call):
    samples = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, max(0, int(q * len(samples) + 0.999999) - 1))]
    return {"p50": round(pick(0.5), 2), "p99": round(pick(0.99), 2), "max": round(samples[-1], 2), "n": n}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="http://127.0.0.1:3200")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sift", default="target/release/sift")
    parser.add_argument("--hours", type=float, default=None, help="search window (default: the API's last hour)")
    parser.add_argument("--at", type=int, default=None, help="windows end then (unix seconds; default: now)")
    args = parser.parse_args()
    s = args.server
    now = time.time() if args.at is None else args.at
    hours = args.hours if args.hours is not None or args.at is None else 1
    window = "" if hours is None else f"&start={int(now - hours * 3600)}&end={int(now)}"
    hour = "" if args.at is None else f"&start={int(now - 3600)}&end={int(now)}"
    ids = [t["trace_id"] for t in get(s, f"/api/v1/traces?limit=1000{window}")["traces"]]
    assert ids, "no traces stored"
    searches = ["timed%20out", "order", "%22POST%20/pay%22", "upstream%20AND%20checkout", "handled", "12345"]
    day = f"&start={int(now - 86400)}&end={int(now)}"
    # (name, path or path maker, goal p99 in ms, share of n): the queries and combinations.
    trace_searches = [
        ("traces ?service=checkout", "/api/v1/traces?service=checkout&limit=20"),
        ("traces ?status=error", "/api/v1/traces?status=error&limit=20"),
        ("traces ?min_duration=1s", "/api/v1/traces?min_duration=1s&limit=20"),
        ("traces ?service+status+min_duration", "/api/v1/traces?service=checkout&status=error&min_duration=100ms&limit=20"),
        ("traces ?attr=http.route:/pay", "/api/v1/traces?attr=http.route:/pay&limit=20"),
        ("traces ?service+attr", "/api/v1/traces?service=cart&attr=http.method:POST&limit=20"),
        ("traces ?q= (full text)", "/api/v1/traces?q=%22upstream%20timed%20out%22&limit=20"),
    ]
    rows = [("trace by id", lambda i: f"/api/v1/traces/{ids[i % len(ids)]}", 20, 1)]
    rows += [(name, (lambda p: lambda i: p + window)(path), 200, 4) for name, path in trace_searches]
    rows += [
        ("log search", lambda i: f"/api/v1/logs?q={searches[i % len(searches)]}&limit=100{window}", 100, 1),
        ("logs by trace", lambda i: f"/api/v1/logs?trace_id={ids[i % len(ids)]}" + (window if args.at else ""), None, 1),
        ("services", lambda i: "/api/v1/services", None, 1),
        ("metric p99, 1 h", lambda i: "/api/v1/metrics?name=http.server.duration&agg=p99" + hour, 50, 4),
        ("metric rate, 1 h", lambda i: "/api/v1/metrics?name=http.server.duration&agg=rate" + hour, 50, 4),
        ("metric p99, 24 h", lambda i: "/api/v1/metrics?name=http.server.duration&agg=p99&step=5m" + day, 200, 10),
    ]
    report = {}
    for name, path, goal, share in rows:
        report[name] = timed(max(3, args.n // share), lambda i: get(s, path(i)))
        report[name]["goal_p99"] = goal
    report["sift query trace (CLI)"] = timed(
        max(5, args.n // 4),
        lambda i: subprocess.run(
            [args.sift, "query", "trace", ids[i % len(ids)], "--server", s], check=True, capture_output=True
        ),
    )
    print(f"| query | n | p50 ms | p99 ms | max ms | goal p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, r in report.items():
        goal = r.get("goal_p99")
        print(f"| {name} | {r['n']} | {r['p50']} | {r['p99']} | {r['max']} | {'' if goal is None else goal} |")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
