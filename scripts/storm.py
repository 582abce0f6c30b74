#!/usr/bin/env python3
"""An alert storm against a running incidentd: a data centre fails, N services alert at once.

Each of --services services opens one incident (a firing notification) and then resolves it,
sent by --senders concurrent senders (Alertmanager replicas and routes), each on its own
keep-alive connection: every sender first sends the firing notifications of its share of the
services, then their resolves. Loopback only; the request count is fixed (2 × services) and
every request has a timeout.

Prints one JSON object: webhooks sent, HTTP status counts, p50/p99 (ms), and the wall-clock
times (epoch seconds) of the first request and of the last answer. Exits 1 on any transport
failure or non-200 answer.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_mix import iso, payload, pct  # noqa: E402  (the same Alertmanager bodies)


def sender(port, groups, out, token):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lat, codes, failures = [], {}, 0
    bodies = [payload(g, "firing") for g in groups]
    for g in groups:
        # The resolve's endsAt is when the sender resolves it, as Alertmanager would say.
        bodies.append(None)
    for i, body in enumerate(bodies):
        if body is None:
            body = payload(groups[i - len(groups)], "resolved", iso(time.time()))
        start = time.perf_counter()
        try:
            conn.request("POST", "/webhook/alertmanager", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            failures += 1
            print(f"storm: {e}", file=sys.stderr)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        lat.append(time.perf_counter() - start)
        codes[resp.status] = codes.get(resp.status, 0) + 1
    conn.close()
    out.append((lat, codes, failures))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--services", type=int, default=3000)
    ap.add_argument("--senders", type=int, default=16)
    ap.add_argument("--prefix", default="storm-", help="prefix of services and fingerprints")
    ap.add_argument("--token", default=os.environ.get("STORM_TOKEN", ""))
    args = ap.parse_args()
    if not (0 < args.services <= 100_000 and 0 < args.senders <= 256):
        ap.error("--services must be in (0, 100000] and --senders in (0, 256]")
    now = iso(time.time())
    groups = [{"service": f"{args.prefix}svc-{n}", "fingerprint": f"{args.prefix}{n:016x}",
               "starts_at": now} for n in range(args.services)]
    shares = [groups[i::args.senders] for i in range(args.senders)]
    results = []
    first = time.time()
    threads = [threading.Thread(target=sender, args=(args.port, share, results, args.token))
               for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last = time.time()
    lat = [x for ls, _, _ in results for x in ls]
    codes = {}
    for _, cs, _ in results:
        for c, n in cs.items():
            codes[str(c)] = codes.get(str(c), 0) + n
    failures = sum(f for _, _, f in results)
    print(json.dumps({
        "services": args.services, "senders": args.senders, "webhooks": len(lat),
        "codes": codes, "failures": failures, "seconds": round(last - first, 2),
        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
        "first_request": round(first, 3), "last_answer": round(last, 3),
    }))
    sys.exit(1 if failures or set(codes) - {"200"} else 0)


if __name__ == "__main__":
    main()
