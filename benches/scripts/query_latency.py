#!/usr/bin/env python3
"""Query API latency through HTTP against a running Sift (the storage benchmark's data directory).

usage: query_latency.py [--server http://127.0.0.1:3200] [--n 200] [--sift target/release/sift]

Picks trace ids from a trace search, then times each endpoint n times (sequentially, warm) and
`sift query trace` end to end; prints p50/p99 in milliseconds as JSON.
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
    return {"p50": round(pick(0.5), 2), "p99": round(pick(0.99), 2), "n": n}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="http://127.0.0.1:3200")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sift", default="target/release/sift")
    args = parser.parse_args()
    s = args.server
    ids = [t["trace_id"] for t in get(s, "/api/v1/traces?limit=1000")["traces"]]
    assert ids, "no traces stored"
    searches = ["timed%20out", "order", "%22POST%20/pay%22", "upstream%20AND%20checkout", "handled", "12345"]
    report = {
        "trace_by_id": timed(args.n, lambda i: get(s, f"/api/v1/traces/{ids[i % len(ids)]}")),
        "trace_search_service": timed(max(5, args.n // 20), lambda i: get(s, "/api/v1/traces?service=checkout&limit=20")),
        "trace_search_full_text": timed(args.n, lambda i: get(s, "/api/v1/traces?q=%22upstream%20timed%20out%22&limit=20")),
        "log_search": timed(args.n, lambda i: get(s, f"/api/v1/logs?q={searches[i % len(searches)]}&limit=100")),
        "logs_by_trace": timed(args.n, lambda i: get(s, f"/api/v1/logs?trace_id={ids[i % len(ids)]}")),
        "services": timed(args.n, lambda i: get(s, "/api/v1/services")),
        "metrics": timed(args.n, lambda i: get(s, "/api/v1/metrics?name=http.server.duration&agg=p99")),
        "sift_query_trace_cli": timed(
            max(5, args.n // 4),
            lambda i: subprocess.run(
                [args.sift, "query", "trace", ids[i % len(ids)], "--server", s], check=True, capture_output=True
            ),
        ),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
