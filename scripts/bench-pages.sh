#!/usr/bin/env bash
# The pages with many stored incidents: seeds N incidents (default 100,000) through the real
# webhook (first alerts spread over the last 28 days, one service each, 99% of them resolved by
# a second notification), waits for the queued jobs (drafts) to finish, then measures with oha:
# the incidents list (first page, a deep page, filtered, searched), an incident's page and the
# reports page (30 days, per week). Prints one line per request: req/s, p50 and p99.
#
# Usage: scripts/bench-pages.sh    (BENCH_INCIDENTS=100000 BENCH_DURATION=10s BENCH_CONCURRENCY=4)
# Goals (issue 16): list and incident pages p99 <= 50 ms, reports page p99 <= 200 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${BENCH_INCIDENTS:-100000}"
duration="${BENCH_DURATION:-10s}"
conc="${BENCH_CONCURRENCY:-4}"
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/incidentd"
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && exec "$OLDPWD/$bin" serve --log.level=warn \
    --web.listen-address="127.0.0.1:$port" --storage.path="$work/data") &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done

echo "seeding $n incidents through POST /webhook/alertmanager ..."
python3 - "$port" "$n" <<'PY'
import datetime, http.client, json, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
base = json.load(open("tests/fixtures/bench/payload-firing.json"))
now = datetime.datetime.now(datetime.timezone.utc)
span = 28 * 86400
def iso(t): return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
def post(c, p):
    c.request("POST", "/webhook/alertmanager", json.dumps(p), {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
def worker(k, step):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(k, n, step):
        p = json.loads(json.dumps(base))
        a = p["alerts"][0]
        a["fingerprint"] = "%016x" % i
        a["labels"]["service"] = "svc-%d" % i
        p["groupKey"] = "{}:{service=\"svc-%d\"}" % i
        starts = now - datetime.timedelta(seconds=span * (n - i) / n)
        a["startsAt"] = iso(starts)
        post(c, p)
        if i % 100 != 0:  # 99% resolve
            p["status"] = "resolved"; a["status"] = "resolved"
            a["endsAt"] = iso(starts + datetime.timedelta(seconds=60 + i % 3600))
            post(c, p)
t0 = time.time()
ts = [threading.Thread(target=worker, args=(k, 8)) for k in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("seeded %d incidents in %.1f s" % (n, time.time() - t0))
PY

echo "waiting for the queued jobs (drafts) to finish ..."
for _ in $(seq 1200); do
    queued=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^incidentd_jobs_queued/ {s += $2} END {print s + 0}')
    [ "$queued" = 0 ] && break
    sleep 1
done
echo "jobs queued: $queued"

url="http://127.0.0.1:$port"
deep=$(curl -fsS "$url/?limit=50" | grep -o 'after&#x3D;[ur][0-9]*' | head -1 | sed 's/&#x3D;/=/')
mid=$(printf 'INC-%s-%04d' "$(date -u +%Y)" $((n / 2)))
for path in "/" "/?$deep" "/?status=resolved" "/?status=open" "/?service=svc-$((n / 2))" "/?q=svc-4242" \
    "/incidents/$mid" "/reports" "/reports?by=month"; do
    out=$(oha --no-tui --output-format json -z "$duration" -c "$conc" "$url$path")
    python3 -c '
import json, sys
d = json.loads(sys.argv[2]); p = d["latencyPercentiles"]; s = d["statusCodeDistribution"]
print("GET %-34s %7.0f req/s  p50 %7.2f ms  p99 %7.2f ms  status %s" % (sys.argv[1], d["summary"]["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000, s))
' "$path" "$out"
done
