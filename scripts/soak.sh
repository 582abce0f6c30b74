#!/usr/bin/env bash
# Soak run: the release build of incidentd under a realistic mix (scripts/load_mix.py:
# repeats of open groups, new incidents, resolves, API reads, acks) with Prometheus and
# Slack both unreachable (closed loopback ports), so evidence and Slack jobs keep failing
# and retrying the whole time. Samples the daemon's RSS (VmRSS) and open file descriptors
# every few seconds and fails if either keeps growing.
#
# Usage: scripts/soak.sh
#
# Environment (all optional):
#   SOAK_SECONDS   length of the load, default 180; at most 1800
#   SOAK_THREADS   load driver threads (keep-alive connections), default 4
#   SOAK_INTERVAL  seconds between samples, default 3
#   SOAK_GROWTH    allowed growth in percent of the last third's average over the middle
#                  third's, for RSS (default 10); FDs may grow by at most 8 descriptors
#
# Criterion: the first third is warm-up (allocator, SQLite page cache, connection pools fill
# up); leaking shows as the last third sitting above the middle third. Exit 1 on growth,
# on a 5xx or transport error, or if the daemon dies.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${SOAK_SECONDS:-180}
threads=${SOAK_THREADS:-4}
interval=${SOAK_INTERVAL:-3}
growth=${SOAK_GROWTH:-10}
die() { echo "soak.sh: error: $*" >&2; exit 1; }
say() { echo "soak.sh: $*" >&2; }
[[ $seconds =~ ^[1-9][0-9]*$ ]] && ((seconds <= 1800)) || die "SOAK_SECONDS=$seconds: whole seconds, 1..1800"
[[ $threads =~ ^[1-9][0-9]*$ ]] && ((threads <= 64)) || die "SOAK_THREADS=$threads: 1..64"
[[ $interval =~ ^[1-9][0-9]*$ ]] || die "SOAK_INTERVAL=$interval: whole seconds"
[[ $growth =~ ^[0-9]+$ ]] || die "SOAK_GROWTH=$growth: whole percent"
for tool in cargo curl python3; do command -v "$tool" >/dev/null || die "$tool is required"; done

say "building the release binary"
(cd "$repo" && cargo build --release --locked --quiet) || die "cargo build --release failed"
bin=$repo/target/release/incidentd

work=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
# Closed ports: bound and released, nothing listens there afterwards.
prom_port=$(free_port)
slack_port=$(free_port)
mkdir -p "$work/rules"
cat >"$work/incidentd.yml" <<YML
storage:
  path: $work/data
rules_dir: $work/rules
postmortem:
  output_dir: $work/drafts
prometheus:
  url: http://127.0.0.1:$prom_port
  timeout: 2s
  quick_snapshot_delay: 1s
  snapshot_delay: 5s
  snapshot_margin: 5s
  retry_backoff: 1s
slack:
  api_url: http://127.0.0.1:$slack_port/api/
  channel: "#soak"
YML
export INCIDENTD_SLACK_BOT_TOKEN=xoxb-soak-not-a-real-token
(cd "$work" && exec "$bin" serve "--config.file=$work/incidentd.yml" \
    "--web.listen-address=127.0.0.1:$port" --log.level=warn) >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/-/ready" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { tail -20 "$work/daemon.log" >&2; die "incidentd exited during startup"; }
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" || die "incidentd not ready after 30s"

say "pid $pid on 127.0.0.1:$port; ${seconds}s, $threads threads, sampling every ${interval}s"
python3 "$repo/scripts/load_mix.py" --port "$port" --seconds "$seconds" --threads "$threads" \
    --weights repeat=50,new=15,resolve=12,read=18,ack=5 --max-open 300 >"$work/load.json" &
load=$!
samples=$work/samples
: >"$samples"
while kill -0 "$load" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "incidentd died during the soak (see its log above)"
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    # Webhooks answered so far, so the summary can show whether throughput holds up.
    hooks=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk '/^incidentd_webhooks_received_total/ {n += $NF} END {printf "%d", n}' || echo 0)
    echo "$SECONDS $rss $fds ${hooks:-0}" >>"$samples"
    sleep "$interval"
done
load_status=0
wait "$load" || load_status=$?
kill -0 "$pid" 2>/dev/null || die "incidentd died during the soak"
queued=$(curl -fsS "http://127.0.0.1:$port/metrics" | grep '^incidentd_jobs_queued' | tr '\n' ' ' || true)

python3 - "$samples" "$work/load.json" "$growth" "$load_status" "$queued" <<'PY'
import json, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
load = json.load(open(sys.argv[2])) if open(sys.argv[2]).read().strip() else {}
growth, load_status, queued = float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if len(rows) < 6:
    sys.exit("soak.sh: too few samples to judge (run longer)")
n = len(rows) // 3
mid, last = rows[n:2 * n], rows[2 * n:]
avg = lambda xs: sum(xs) / len(xs)
ok = True
print(f"requests: {load.get('requests')} ({load.get('rps')}/s), codes {load.get('codes')}, "
      f"p50 {load.get('p50_ms')} ms, p99 {load.get('p99_ms')} ms, "
      f"groups created {load.get('groups_created')}, transport failures {load.get('failures')}")
print(f"jobs queued at the end: {queued.strip() or 'n/a'}")
for name, col, limit in (("RSS KiB", 1, None), ("open FDs", 2, 8)):
    vals = [r[col] for r in rows]
    m, l = avg([r[col] for r in mid]), avg([r[col] for r in last])
    allowed = m + limit if limit is not None else m * (1 + growth / 100)
    verdict = "flat" if l <= allowed else "GROWING"
    ok &= l <= allowed
    print(f"{name}: first {vals[0]}, last {vals[-1]}, max {max(vals)}; "
          f"middle-third avg {m:.0f}, last-third avg {l:.0f} (allowed {allowed:.0f}): {verdict}")
rates = []
for part in (rows[:n], mid, last):
    span = part[-1][0] - part[0][0]
    rates.append(f"{(part[-1][3] - part[0][3]) / span:.0f}" if span > 0 else "n/a")
print(f"webhooks/s by third: {' / '.join(rates)}")
print(f"samples: {len(rows)}; at each tenth of the run (s, RSS KiB, FDs, webhooks answered):")
for i in range(10 + 1):
    t, rss, fds, hooks = rows[min(len(rows) - 1, i * (len(rows) - 1) // 10)]
    print(f"  {t:>6} {rss:>9} {fds:>4} {hooks:>10}")
if load_status != 0:
    print("load driver reported 5xx or transport errors")
    ok = False
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
PY
