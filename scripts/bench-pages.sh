#!/usr/bin/env bash
# The pages with many stored incidents: seeds N incidents (default 100,000) through the real
# webhook (first alerts spread over the last 28 days, one service each, 99% of them resolved by
# a second notification), then measures with oha:
# the incidents list (first page, a deep page, filtered, searched), an incident's page (one of
# the common alert, and one whose alert no other incident has) and the reports page (30 days,
# per week). Prints one line per request: req/s, p50 and p99.
#
# Usage: scripts/bench-pages.sh    (BENCH_INCIDENTS=100000 BENCH_DURATION=10s BENCH_CONCURRENCY=4)
# Goals (issue 16): list and incident pages p99 <= 50 ms, reports page p99 <= 200 ms.
# Drafts are held back (postmortem.render_delay: 24h), so no render job competes with the
# measurements and the incident page renders its draft for every request (its slowest case:
# with a stored draft it only converts it). BENCH_SKIP_BUILD=1 uses the release binary as is.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${BENCH_INCIDENTS:-100000}"
duration="${BENCH_DURATION:-10s}"
conc="${BENCH_CONCURRENCY:-4}"
command -v oha >/dev/null || cargo install oha --locked
[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release --quiet
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bin="$target/release/incidentd"
[ -x "$bin" ] || { echo "bench-pages.sh: $bin is missing: build it (cargo build --release)" >&2; exit 1; }
# BENCH_DATA=<dir>: keep the seeded database there and reuse it on the next run (no seeding).
work="${BENCH_DATA:-$(mktemp -d)}"
mkdir -p "$work"
seeded=; [ -f "$work/data/incidentd.db" ] && seeded=1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'postmortem:\n  render_delay: 24h\n  output_dir: %s/drafts\n' "$work" >"$work/incidentd.yml"
(cd "$work" && exec "$bin" serve --log.level=warn --config.file="$work/incidentd.yml" \
    --web.listen-address="127.0.0.1:$port" --storage.path="$work/data") &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; [ -n "${BENCH_DATA:-}" ] || rm -rf "$work"' EXIT
# A first start on a database seeded by an older incidentd migrates it first (the search index
# of migration 10: ~30 s at 100,000 incidents).
ready=
for _ in $(seq 1200); do curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && { ready=1; break; }; sleep 0.1; done
[ -n "$ready" ] || { echo "bench-pages.sh: incidentd did not become ready" >&2; exit 1; }

[ -n "$seeded" ] && echo "reusing the incidents seeded in $work" || echo "seeding $n incidents through POST /webhook/alertmanager ..."
[ -n "$seeded" ] || python3 - "$port" "$n" <<'PY'
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
failed = []
def guarded(k, step):
    try:
        worker(k, step)
    except Exception as e:
        failed.append(e)
ts = [threading.Thread(target=guarded, args=(k, 8)) for k in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
if failed:
    sys.exit("seeding failed: %r" % failed[0])
print("seeded %d incidents in %.1f s" % (n, time.time() - t0))
PY


url="http://127.0.0.1:$port"
# One incident whose alert name and service no other has (its page looks up related incidents
# past the newest ones): posted once, found again on reuse.
rare=$(python3 - "$port" <<'PY'
import datetime, http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
c.request("GET", "/api/v1/incidents?service=svc-rare")
found = json.loads(c.getresponse().read())["incidents"]
if found:
    print(found[0]["id"]); sys.exit()
p = json.load(open("tests/fixtures/bench/payload-firing.json"))
a = p["alerts"][0]
a["fingerprint"] = "rare000000000001"
a["labels"].update(alertname="RareAlertXyz", service="svc-rare")
p["commonLabels"]["alertname"] = "RareAlertXyz"
p["groupKey"] = '{}:{service="svc-rare"}'
a["startsAt"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
c.request("POST", "/webhook/alertmanager", json.dumps(p), {"Content-Type": "application/json"})
r = c.getresponse()
assert r.status == 200, r.status
print(json.loads(r.read())["incidents"][0])
PY
)
mid=$(printf 'INC-%s-%04d' "$(date -u +%Y)" $((n / 2)))
# BENCH_PATHS: the requests to measure (default: all of these).
paths="${BENCH_PATHS:-/ /?after=u$((n / 2)) /?after=r$((n / 2)) /?status=resolved /?status=open /?service=svc-$((n / 2)) /?q=svc-4242 /?q=HighError /?q=ConnectionPool /?q=INC-$(date -u +%Y)-5 /?q=zz /?q=db /incidents/$mid /incidents/$rare /reports /reports?by=month}"
for path in $paths; do
    out=$(oha --no-tui --output-format json -z "$duration" -c "$conc" "$url$path")
    python3 -c '
import json, sys
d = json.loads(sys.argv[2]); p = d["latencyPercentiles"]; s = d["statusCodeDistribution"]
ms = lambda v: "%7.2f ms" % (v * 1000) if v is not None else "   (none)"
print("GET %-34s %7.0f req/s  p50 %s  p99 %s  status %s" % (sys.argv[1], d["summary"]["requestsPerSec"], ms(p["p50"]), ms(p["p99"]), s))
' "$path" "$out"
done
