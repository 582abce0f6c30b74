#!/usr/bin/env bash
# The incident list API with many stored incidents: seeds N incidents (default 100,000) through
# the real webhook, then measures GET /api/v1/incidents (first page, filtered by status, by
# service) with oha, and prints the query plans that show the indexes in use.
#
# Usage: scripts/bench-list.sh        (BENCH_INCIDENTS=100000 BENCH_DURATION=10s by default)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${BENCH_INCIDENTS:-100000}"
duration="${BENCH_DURATION:-10s}"
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && exec "$OLDPWD/target/release/incidentd" serve --log.level=warn \
    --web.listen-address="127.0.0.1:$port" --storage.path="$work/data") &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done

echo "seeding $n incidents through POST /webhook/alertmanager ..."
python3 - "$port" "$n" <<'PY'
import http.client, json, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
base = json.load(open("tests/fixtures/bench/payload-firing.json"))
def worker(k, step):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(k, n, step):
        p = json.loads(json.dumps(base))
        a = p["alerts"][0]
        a["fingerprint"] = "%016x" % i
        a["labels"]["service"] = "svc-%d" % i
        c.request("POST", "/webhook/alertmanager", json.dumps(p), {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
t0 = time.time()
ts = [threading.Thread(target=worker, args=(k, 8)) for k in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("seeded %d incidents in %.1f s" % (n, time.time() - t0))
PY

for query in "" "?status=open" "?status=resolved" "?service=svc-$((n / 2))" "?limit=500"; do
    out=$(oha --no-tui --output-format json -z "$duration" -c 16 "http://127.0.0.1:$port/api/v1/incidents$query")
    python3 -c '
import json, sys
d = json.loads(sys.argv[2]); p = d["latencyPercentiles"]
print("GET /api/v1/incidents%-22s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms" % (sys.argv[1], d["summary"]["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000))
' "$query" "$out"
done

python3 - "$work/data/incidentd.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for q in ["SELECT * FROM incidents WHERE seq < 9e18 ORDER BY seq DESC LIMIT 50",
          "SELECT * FROM incidents WHERE seq < 9e18 AND status = 'open' ORDER BY seq DESC LIMIT 50",
          "SELECT * FROM incidents WHERE seq < 9e18 AND service = 'x' ORDER BY seq DESC LIMIT 50"]:
    print("plan:", q.split(" WHERE ")[1][:60], "->", "; ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + q)))
PY
