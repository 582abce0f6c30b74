#!/usr/bin/env python3
"""A realistic mix of Alertmanager deliveries and API calls against a running incidentd.

Used by scripts/soak.sh, scripts/bench-mix.sh and scripts/bench-storage.sh. Loopback only,
bounded in time and in requests. Each thread keeps one HTTP/1.1 keep-alive connection.

The mix (weights are per request; see --weights):
  repeat   a firing notification of a group that is already open, unchanged (Alertmanager's
           repeat_interval re-sends every open group); with --changing-repeats P, a share P
           of repeats carry a changed annotation (a new "value"), so their bodies are new
  new      a firing notification of a new group (a new incident); the set of open groups is
           capped, so past the cap the oldest open group is resolved instead
  resolve  a resolved notification of an open group
  read     GET /api/v1/incidents (first page) or GET /api/v1/incidents/{id}
  ack      POST /api/v1/incidents/{id}/ack

Prints one JSON object on stdout: per kind and overall counts, requests/s, p50/p99 (ms) and
HTTP status counts. Exits 1 if any request failed at the transport level or got a 5xx.
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time
from datetime import datetime, timezone

KINDS = ("repeat", "new", "resolve", "read", "ack")


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class State:
    """Open groups and known incident ids, shared by the threads."""

    def __init__(self, max_open, seed_groups, prefix=""):
        self.prefix = prefix
        self.lock = threading.Lock()
        self.next_group = 0
        self.next_value = 0  # --changing-repeats: every changed repeat gets a new value
        self.open = []  # groups: dict(service, fingerprint, starts_at)
        self.incidents = []  # recent ids, bounded
        self.max_open = max_open
        for _ in range(seed_groups):
            self.open.append(self.new_group())

    def new_group(self):
        n = self.next_group
        self.next_group += 1
        return {"service": f"{self.prefix}svc-{n}", "fingerprint": f"{self.prefix}{n:016x}", "starts_at": iso(time.time())}

    def remember(self, ids):
        with self.lock:
            self.incidents.extend(ids)
            del self.incidents[:-1000]


def payload(group, status, ends_at=None, value=None):
    labels = {
        "alertname": "SoakAlert",
        "service": group["service"],
        "severity": "critical",
        "instance": "10.0.0.1:9100",
    }
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"soak alert on {group['service']}"},
    }
    if value is not None:
        # As when an alert's annotation quotes its current value: same alert, new body.
        alert["annotations"]["value"] = str(value)
    alert.update({
        "startsAt": group["starts_at"],
        "endsAt": ends_at or "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:1/graph",
        "fingerprint": group["fingerprint"],
    })
    return json.dumps({
        "version": "4",
        "groupKey": "{}:{alertname=\"SoakAlert\", service=\"%s\"}" % group["service"],
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "incidents",
        "groupLabels": {"alertname": "SoakAlert", "service": group["service"]},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://127.0.0.1:1",
        "alerts": [alert],
    }).encode()


class Pacer:
    """Spreads requests evenly over time across all threads (--rate); a no-op without a rate."""

    def __init__(self, rate):
        self.gap = 1.0 / rate if rate else 0.0
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def wait(self, deadline):
        if not self.gap:
            return
        with self.lock:
            now = time.monotonic()
            # A thread that fell behind does not earn a burst to catch up.
            slot = max(self.next, now - self.gap)
            self.next = slot + self.gap
        delay = min(slot, deadline) - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def worker(args, state, deadline, budget, results, rng, pacer):
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    lat = {k: [] for k in KINDS}
    codes = {}
    failures = 0
    weights = [args.weights[k] for k in KINDS]
    while time.monotonic() < deadline:
        pacer.wait(deadline)
        if time.monotonic() >= deadline:
            break
        with budget["lock"]:
            if budget["left"] <= 0:
                break
            budget["left"] -= 1
        kind = rng.choices(KINDS, weights)[0]
        method, path, body = "POST", "/webhook/alertmanager", None
        with state.lock:
            if kind == "repeat" and state.open:
                value = None
                if args.changing_repeats and rng.random() < args.changing_repeats:
                    state.next_value += 1
                    value = state.next_value
                body = payload(rng.choice(state.open), "firing", value=value)
            elif kind in ("repeat", "new"):
                kind = "new"
                if len(state.open) >= state.max_open:
                    kind = "resolve"
                else:
                    group = state.new_group()
                    state.open.append(group)
                    body = payload(group, "firing")
            if kind == "resolve":
                if state.open:
                    group = state.open.pop(rng.randrange(len(state.open)) if rng.random() < 0.5 else 0)
                    body = payload(group, "resolved", iso(time.time()))
                else:
                    kind = "read"
            if kind == "ack" and not state.incidents:
                kind = "read"
            if kind == "read":
                method = "GET"
                if state.incidents and rng.random() < 0.5:
                    path = "/api/v1/incidents/" + rng.choice(state.incidents)
                else:
                    path = "/api/v1/incidents?limit=50"
            elif kind == "ack":
                path = "/api/v1/incidents/%s/ack" % rng.choice(state.incidents)
                body = json.dumps({"by": "soak"}).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        start = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            failures += 1
            print(f"load_mix: {kind} {path}: {e}", file=sys.stderr)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
            continue
        lat[kind].append(time.perf_counter() - start)
        codes[resp.status] = codes.get(resp.status, 0) + 1
        if kind in ("new", "repeat") and resp.status == 200:
            try:
                state.remember(json.loads(data).get("incidents", []))
            except ValueError:
                pass
    conn.close()
    results.append((lat, codes, failures))


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p / 100))] * 1000, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--max-requests", type=int, default=5_000_000)
    ap.add_argument("--max-open", type=int, default=200, help="cap on open groups")
    ap.add_argument("--seed-groups", type=int, default=50, help="open groups opened before timing")
    ap.add_argument("--weights", default="repeat=80,new=8,resolve=7,read=4,ack=1")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="", help="prefix of services and fingerprints, so that "
                    "several driver processes keep separate groups")
    ap.add_argument("--rate", type=float, default=0,
                    help="requests per second over all threads (0: as fast as possible)")
    ap.add_argument("--changing-repeats", type=float, default=0, metavar="P",
                    help="share of repeats (0..1) whose body changes (a new annotation value)")
    ap.add_argument("--dump", help="write every latency (seconds) as 'kind value' lines here")
    args = ap.parse_args()
    if not (0 < args.seconds <= 1800 and 0 < args.threads <= 256):
        ap.error("--seconds must be in (0, 1800] and --threads in (0, 256]")
    if not (0 <= args.rate <= 100_000 and 0 <= args.changing_repeats <= 1):
        ap.error("--rate must be in [0, 100000] and --changing-repeats in [0, 1]")
    w = dict(kv.split("=") for kv in args.weights.split(","))
    args.weights = {k: float(w.get(k, 0)) for k in KINDS}

    state = State(args.max_open, 0, args.prefix)
    # Open the seed groups (untimed) so repeats have something to repeat from the start.
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    for _ in range(args.seed_groups):
        g = state.new_group()
        conn.request("POST", "/webhook/alertmanager", body=payload(g, "firing"),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            sys.exit(f"load_mix: seeding got HTTP {r.status}: {data[:200]!r}")
        state.open.append(g)
        state.remember(json.loads(data).get("incidents", []))
    conn.close()

    budget = {"lock": threading.Lock(), "left": args.max_requests}
    results = []
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    pacer = Pacer(args.rate)
    threads = [threading.Thread(target=worker, args=(args, state, deadline, budget, results,
                                                     random.Random(args.seed * 1000 + i), pacer))
               for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    out = {"seconds": round(elapsed, 1), "threads": args.threads, "kinds": {}, "codes": {}}
    all_lat, failures = [], 0
    for k in KINDS:
        ls = [x for lat, _, _ in results for x in lat[k]]
        all_lat += ls
        out["kinds"][k] = {"count": len(ls), "p50_ms": pct(ls, 50), "p99_ms": pct(ls, 99)}
    for _, codes, f in results:
        failures += f
        for c, n in codes.items():
            out["codes"][str(c)] = out["codes"].get(str(c), 0) + n
    webhooks = [x for lat, _, _ in results for k in ("repeat", "new", "resolve") for x in lat[k]]
    out.update(requests=len(all_lat), failures=failures,
               rps=round(len(all_lat) / elapsed, 1),
               p50_ms=pct(all_lat, 50), p99_ms=pct(all_lat, 99),
               webhook_rps=round(len(webhooks) / elapsed, 1),
               webhook_p50_ms=pct(webhooks, 50), webhook_p99_ms=pct(webhooks, 99),
               open_groups=len(state.open), groups_created=state.next_group)
    print(json.dumps(out))
    if args.dump:
        with open(args.dump, "w") as f:
            for lat, _, _ in results:
                for k in KINDS:
                    f.writelines(f"{k} {x}\n" for x in lat[k])
    server_errors = sum(n for c, n in out["codes"].items() if c.startswith("5"))
    sys.exit(1 if failures or server_errors else 0)


if __name__ == "__main__":
    main()
