#!/usr/bin/env bash
# Realistic-mix webhook benchmark: the release build of incidentd on a fresh database, fed by
# scripts/load_mix.py in several processes (Python's GIL caps one process) with mostly
# repeats of open groups (Alertmanager's repeat_interval), some new incidents and some
# resolves. Reports webhook requests/s and p50/p99 overall and per kind.
#
# Usage: scripts/bench-mix.sh
#
# Environment (all optional):
#   BENCH_MIX_SECONDS   length of the timed run, default 30; at most 600
#   BENCH_MIX_PROCS     driver processes, default 4
#   BENCH_MIX_THREADS   keep-alive connections per process, default 16 (4 × 16 = 64 in all)
#   BENCH_MIX_WEIGHTS   load_mix.py --weights, default repeat=85,new=8,resolve=7
#
# The driver is Python and shares the machine's cores with the daemon, so on small machines
# it is part of what is measured: these numbers are a floor, not comparable with
# scripts/bench.sh (oha, one fixed payload).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${BENCH_MIX_SECONDS:-30}
procs=${BENCH_MIX_PROCS:-4}
threads=${BENCH_MIX_THREADS:-16}
weights=${BENCH_MIX_WEIGHTS:-repeat=85,new=8,resolve=7}
die() { echo "bench-mix.sh: error: $*" >&2; exit 1; }
[[ $seconds =~ ^[1-9][0-9]*$ ]] && ((seconds <= 600)) || die "BENCH_MIX_SECONDS: 1..600"
[[ $procs =~ ^[1-9][0-9]*$ ]] && ((procs <= 16)) || die "BENCH_MIX_PROCS: 1..16"
[[ $threads =~ ^[1-9][0-9]*$ ]] && ((threads <= 64)) || die "BENCH_MIX_THREADS: 1..64"

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
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec "$bin" serve "--web.listen-address=127.0.0.1:$port" "--storage.path=$work/data" \
    --log.level=warn) >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/-/ready" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { tail -20 "$work/daemon.log" >&2; die "incidentd exited during startup"; }
    sleep 0.1
done

echo "bench-mix.sh: $(nproc) cores; $procs × $threads connections; ${seconds}s; weights $weights" >&2
drivers=()
for i in $(seq "$procs"); do
    python3 "$repo/scripts/load_mix.py" --port "$port" --seconds "$seconds" --threads "$threads" \
        --weights "$weights" --prefix "p$i-" --seed "$i" --seed-groups 50 --max-open 500 \
        --dump "$work/lat-$i" >"$work/out-$i.json" &
    drivers+=($!)
done
status=0
for d in "${drivers[@]}"; do wait "$d" || status=1; done
peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
python3 - "$work" "$procs" "$peak" <<'PY'
import glob, json, sys
work, procs, peak = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
outs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/out-*.json"))]
lat = {}
for f in glob.glob(f"{work}/lat-*"):
    for line in open(f):
        k, v = line.split()
        lat.setdefault(k, []).append(float(v))
secs = max(o["seconds"] for o in outs)
def p(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * q / 100))] * 1000
codes = {}
for o in outs:
    for c, n in o["codes"].items():
        codes[c] = codes.get(c, 0) + n
allw = [x for k in ("repeat", "new", "resolve") for x in lat.get(k, [])]
print("| kind | requests | share | p50 ms | p99 ms |")
print("|---|---:|---:|---:|---:|")
for k in ("repeat", "new", "resolve"):
    xs = lat.get(k, [])
    if xs:
        print(f"| {k} | {len(xs)} | {100 * len(xs) / len(allw):.0f} % | {p(xs, 50):.2f} | {p(xs, 99):.2f} |")
print(f"| **all webhooks** | {len(allw)} | | {p(allw, 50):.2f} | {p(allw, 99):.2f} |")
print()
print(f"{len(allw) / secs:.0f} webhook requests/s over {secs:.1f} s; HTTP codes {codes}; "
      f"transport failures {sum(o['failures'] for o in outs)}; peak RSS {peak / 1024:.1f} MiB")
PY
exit $status
