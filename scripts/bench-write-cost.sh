#!/usr/bin/env bash
# What a change costs the webhook's writes: two release binaries (A, B) in turns on a fresh
# SQLite database each, fed the same write-heavy mix (scripts/load_mix.py: 40 % repeats, 40 %
# new incidents, 20 % resolves; drafts held back), measured by the daemon's own CPU time
# (utime + stime from /proc) per 1,000 webhooks, which holds up better on a shared machine
# than throughput does. Prints one line per run and the medians.
#
# Usage: scripts/bench-write-cost.sh A_BINARY B_BINARY
# Environment: BENCH_ROUNDS (default 3), BENCH_REQUESTS per run (default 12000, at most
# 100000).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "bench-write-cost.sh: error: $*" >&2; exit 1; }
[[ $# -eq 2 && -x $1 && -x $2 ]] || die "usage: $0 A_BINARY B_BINARY (two executables)"
rounds=${BENCH_ROUNDS:-3}
requests=${BENCH_REQUESTS:-12000}
[[ $rounds =~ ^[1-9][0-9]?$ ]] || die "BENCH_ROUNDS: 1..99"
[[ $requests =~ ^[1-9][0-9]*$ ]] && ((requests <= 100000)) || die "BENCH_REQUESTS: 1..100000"
hz=$(getconf CLK_TCK)
work=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The daemon's CPU time so far, in ms.
cpu_ms() { awk -v hz="$hz" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }

run() { # binary label
    rm -rf "$work/data"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'postmortem:\n  render_delay: 1h\n  output_dir: %s/drafts\n' "$work" >"$work/incidentd.yml"
    "$1" serve --log.level=warn --config.file="$work/incidentd.yml" \
        --web.listen-address="127.0.0.1:$port" --storage.path="$work/data" &
    pid=$!
    local ready=
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && { ready=1; break; }
        sleep 0.1
    done
    [[ -n $ready ]] || die "$2 did not become ready"
    local before after
    before=$(cpu_ms "$pid")
    python3 "$repo/scripts/load_mix.py" --port "$port" --threads 8 --seconds 600 \
        --weights repeat=40,new=40,resolve=20 --max-requests "$requests" >/dev/null
    after=$(cpu_ms "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    local per=$(( (after - before) * 1000 / requests ))
    echo "$2 round $3: $per ms of CPU per 1,000 webhooks"
    echo "$2 $per" >>"$work/results"
}

for r in $(seq "$rounds"); do
    run "$1" A "$r"
    run "$2" B "$r"
done
python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    runs.setdefault(k, []).append(int(v))
for k in sorted(runs):
    print("%s: median %d ms per 1,000 webhooks (runs %s)" % (k, statistics.median(runs[k]), runs[k]))
PY
