#!/usr/bin/env bash
# Alert-storm benchmark: a data centre fails and thousands of services alert within seconds.
# scripts/storm.py sends each of STORM_SERVICES services' firing and resolved notification
# (2 × STORM_SERVICES webhooks) from STORM_SENDERS concurrent senders to the release build on
# a fresh database (drafts only: no Prometheus, no Slack), then this script waits for the
# follow-up work (the drafts) to drain and checks that every incident's draft is on disk and
# says it resolved.
#
# Two runs in one invocation, on the same machine, back to back:
#   storm     the storm as it comes: drafts render while the webhooks arrive;
#   baseline  the same storm with follow-up work held back until the last webhook is answered
#             (postmortem.render_delay longer than the storm): the webhook latency a storm-free
#             daemon gives the same load.
# Goal (issue 12): the storm's follow-up work done within 20 s of the last webhook, and its
# webhook p99 no worse than 1.25 × the baseline's. Exits 1 if either goal is missed.
#
# Usage: scripts/bench-storm.sh
# Environment (optional): STORM_SERVICES (3000), STORM_SENDERS (16), STORM_DRAIN_LIMIT (120 s,
# the longest wait for the queue to drain before giving up).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
services=${STORM_SERVICES:-3000}
senders=${STORM_SENDERS:-16}
drain_limit=${STORM_DRAIN_LIMIT:-120}
die() { echo "bench-storm.sh: error: $*" >&2; exit 1; }
[[ $services =~ ^[1-9][0-9]*$ ]] && ((services <= 100000)) || die "STORM_SERVICES: 1..100000"
[[ $senders =~ ^[1-9][0-9]*$ ]] && ((senders <= 256)) || die "STORM_SENDERS: 1..256"
[[ $drain_limit =~ ^[1-9][0-9]*$ ]] && ((drain_limit <= 1800)) || die "STORM_DRAIN_LIMIT: 1..1800"

(cd "$repo" && cargo build --release --locked --quiet) || die "cargo build --release failed"
bin=$repo/target/release/incidentd
work=$(mktemp -d)
pid=
stop_daemon() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    pid=
}
trap 'stop_daemon; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

queued() {  # jobs pending or running, all kinds, from /metrics
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk '/^incidentd_jobs_queued[{ ]/{s += $NF} END{print s + 0}'
}

# run NAME RENDER_DELAY: one storm on a fresh daemon; prints "p99_ms drain_s" on stdout.
run() {
    local name=$1 delay=$2 dir=$work/$1
    mkdir -p "$dir"
    cat >"$dir/incidentd.yml" <<YML
storage:
  path: $dir/data
postmortem:
  output_dir: $dir/drafts
  render_delay: $delay
YML
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    (cd "$dir" && exec "$bin" serve "--config.file=$dir/incidentd.yml" \
        "--web.listen-address=127.0.0.1:$port" --log.level=warn) >"$dir/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/-/ready" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/daemon.log" >&2; die "incidentd exited during startup"; }
        sleep 0.1
    done
    python3 "$repo/scripts/storm.py" --port "$port" --services "$services" --senders "$senders" \
        >"$dir/storm.json" || { cat "$dir/storm.json" >&2; die "$name: the storm had failures"; }
    local last drained=
    last=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["last_answer"])' "$dir/storm.json")
    if [[ $name == baseline ]]; then
        drained=-  # follow-up work was held back on purpose; not measured here
    else
        local deadline=$((SECONDS + drain_limit))
        while (($(queued "$port") > 0)); do
            ((SECONDS < deadline)) || die "$name: follow-up work not drained within ${drain_limit}s"
            sleep 0.1
        done
        drained=$(python3 -c 'import sys,time; print(round(time.time() - float(sys.argv[1]), 1))' "$last")
        local drafts resolved
        drafts=$(find "$dir/drafts" -maxdepth 1 -name 'INC-*.md' | wc -l)
        resolved=$(grep -l -m1 -i 'resolved' "$dir"/drafts/INC-*.md | wc -l)
        ((drafts == services)) || die "$name: $drafts drafts on disk for $services incidents"
        ((resolved == services)) || die "$name: only $resolved of $services drafts say resolved"
    fi
    echo "bench-storm.sh: $name: $(cat "$dir/storm.json") drained ${drained}s after the last webhook" >&2
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["p99_ms"])' "$dir/storm.json"
    echo "$drained"
    stop_daemon
}

echo "bench-storm.sh: $(nproc) cores; $services services × 2 webhooks from $senders senders" >&2
mapfile -t base < <(run baseline 10m)
mapfile -t storm < <(run storm 500ms)
python3 - "${base[0]}" "${storm[0]}" "${storm[1]}" <<'PY'
import sys
base, p99, drain = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
ratio = p99 / base
ok = drain <= 20 and ratio <= 1.25
print(f"storm: follow-up drained {drain:.1f} s after the last webhook (goal <= 20 s); "
      f"webhook p99 {p99:.1f} ms vs baseline {base:.1f} ms = {ratio:.2f}x (goal <= 1.25x): "
      f"{'ok' if ok else 'MISSED'}")
sys.exit(0 if ok else 1)
PY
