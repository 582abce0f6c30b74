#!/usr/bin/env bash
# Storage under retention: how the SQLite database grows under a sustained stream of new,
# distinct webhooks, (a) with the default retention (raw payloads 30d, incidents forever:
# nothing is old enough to prune, so it grows) and (b) with short retention (payloads 1m,
# resolved incidents 2m, pruned every 15s: it should level off). Each run is the release
# build on a fresh database, fed by scripts/load_mix.py at a fixed rate: new incidents,
# repeats of open groups whose bodies all differ (a changing annotation value, so nothing
# is deduplicated), and resolves. Every few seconds it samples the database and WAL sizes,
# page_count/freelist_count, the row counts of notifications, payloads, incidents and jobs
# (Python's sqlite3, read-only URI mode), the drafts directory and the daemon's RSS, then
# writes the "Storage under retention" section of BENCHMARKS.md.
#
# Usage: scripts/bench-storage.sh [SECONDS]   (takes about 2 × SECONDS plus the build)
#
# Environment (all optional; SECONDS on the command line wins over BENCH_STORAGE_SECONDS):
#   BENCH_STORAGE_SECONDS    length of each run's load, default 300; 60..1800
#   BENCH_STORAGE_RATE       webhooks per second, default 300; 1..5000
#   BENCH_STORAGE_INTERVAL   seconds between samples, default 15; 1..120
#   BENCH_STORAGE_TOLERANCE  percent the database file may grow within run (b)'s last third,
#                            default 5
#   BENCH_STORAGE_RUNS       which runs, default "a b"
#   BENCH_OUTPUT             Markdown file to write (default BENCHMARKS.md in the repository)
#
# Exit 1 if run (b)'s database file grows by more than the tolerance from the start of its
# last third to the end (or any sample in between), on a 5xx or transport error, or if the
# daemon dies. Raw samples and daemon logs are kept under target/bench-storage/<time>/.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command_line="$(for v in $(compgen -e | grep -E '^BENCH_(STORAGE_|OUTPUT)' | sort); do printf '%s=%q ' "$v" "${!v}"; done)scripts/bench-storage.sh${*:+ $*}"
die() { echo "bench-storage.sh: error: $*" >&2; exit 1; }
say() { echo "bench-storage.sh: $*" >&2; }
case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

seconds=${1:-${BENCH_STORAGE_SECONDS:-300}}
rate=${BENCH_STORAGE_RATE:-300}
interval=${BENCH_STORAGE_INTERVAL:-15}
tolerance=${BENCH_STORAGE_TOLERANCE:-5}
runs=${BENCH_STORAGE_RUNS:-a b}
output=${BENCH_OUTPUT:-$repo/BENCHMARKS.md}
[[ $seconds =~ ^[1-9][0-9]*$ ]] && ((seconds >= 60 && seconds <= 1800)) || die "SECONDS=$seconds: whole seconds, 60..1800"
[[ $rate =~ ^[1-9][0-9]*$ ]] && ((rate <= 5000)) || die "BENCH_STORAGE_RATE=$rate: 1..5000"
[[ $interval =~ ^[1-9][0-9]*$ ]] && ((interval <= 120)) || die "BENCH_STORAGE_INTERVAL=$interval: 1..120"
[[ $tolerance =~ ^[0-9]+$ ]] || die "BENCH_STORAGE_TOLERANCE=$tolerance: whole percent"
for r in $runs; do [[ $r == a || $r == b ]] || die "BENCH_STORAGE_RUNS: a and/or b, not $r"; done
for tool in cargo curl python3; do command -v "$tool" >/dev/null || die "$tool is required"; done

say "building the release binary"
(cd "$repo" && cargo build --release --locked --quiet) || die "cargo build --release failed"
bin=$repo/target/release/incidentd
results=$repo/target/bench-storage/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"

work=$(mktemp -d)
pid=
load=
stop_daemon() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=
}
cleanup() {
    if [[ -n $load ]] && kill -0 "$load" 2>/dev/null; then kill -TERM "$load" 2>/dev/null || true; fi
    stop_daemon
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# One run: $1 is the run's name (a or b); the retention keys are in the config it writes.
run() {
    local name=$1 dir=$work/$1 port status=0
    mkdir -p "$dir/rules"
    {
        echo "storage:"
        echo "  path: $dir/data"
        if [[ $name == b ]]; then
            echo "  raw_payload_retention: 1m"
            echo "  incident_retention: 2m"
            echo "  prune_interval: 15s"
        fi
        echo "rules_dir: $dir/rules"
        echo "postmortem:"
        echo "  output_dir: $dir/drafts"
    } >"$dir/incidentd.yml"
    cp "$dir/incidentd.yml" "$results/config-$name.yml"
    port=$(free_port)
    (cd "$dir" && exec "$bin" serve "--config.file=$dir/incidentd.yml" \
        "--web.listen-address=127.0.0.1:$port" --log.level=info) >"$results/daemon-$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/-/ready" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { tail -20 "$results/daemon-$name.log" >&2; die "incidentd exited during startup"; }
        sleep 0.1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" || die "incidentd not ready after 30s"

    say "run ($name): pid $pid on 127.0.0.1:$port; ${seconds}s at ${rate} webhooks/s, sampling every ${interval}s"
    python3 "$repo/scripts/load_mix.py" --port "$port" --seconds "$seconds" --threads 4 \
        --rate "$rate" --weights repeat=85,new=8,resolve=7 --changing-repeats 1 \
        --seed-groups 50 --max-open 200 --prefix "$name-" >"$results/load-$name.json" &
    load=$!
    # The sampler ends when the load driver does (one last sample) or after a bounded count.
    python3 - "$dir" "$pid" "$port" "$load" "$interval" "$((seconds / interval + 10))" \
        >"$results/samples-$name.jsonl" <<'PY' || status=1
import json, os, sqlite3, sys, time, urllib.request
data_dir, pid, port, load, interval, max_samples = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
db = os.path.join(data_dir, "data", "incidentd.db")
drafts = os.path.join(data_dir, "drafts")

def alive(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False

def size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

def sample(t0):
    s = {"t": round(time.monotonic() - t0, 1), "db": size(db), "wal": size(db + "-wal")}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                s[line.split(":")[0].lower()] = int(line.split()[1])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        s["webhooks"] = sum(int(float(l.split()[-1])) for l in r.read().decode().splitlines()
                            if l.startswith("incidentd_webhooks_received_total"))
    # Read-only, opened per sample so no read snapshot is held between samples.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        for p in ("page_size", "page_count", "freelist_count"):
            s[p] = conn.execute(f"PRAGMA {p}").fetchone()[0]
        for table in ("notifications", "payloads", "incidents", "jobs"):
            s[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        s["resolved"] = conn.execute("SELECT count(*) FROM incidents WHERE status = 'resolved'").fetchone()[0]
    finally:
        conn.close()
    files = [os.path.join(root, f) for root, _, fs in os.walk(drafts) for f in fs]
    s["drafts"] = len([f for f in files if f.endswith(".md")])
    s["drafts_bytes"] = sum(size(f) for f in files)
    return s

t0 = time.monotonic()
for i in range(max_samples):
    if not alive(pid):
        sys.exit("bench-storage.sh: incidentd died during the run")
    done = not alive(load)
    print(json.dumps(sample(t0)), flush=True)
    if done:
        break
    # Sleep to the next tick, waking early once the load driver has finished.
    tick = t0 + (i + 1) * interval
    while time.monotonic() < tick and alive(load):
        time.sleep(min(0.5, max(0.0, tick - time.monotonic())))
PY
    local load_status=0
    wait "$load" || load_status=$?
    load=
    ((load_status == 0)) || { say "run ($name): the load driver reported 5xx or transport errors"; status=1; }
    kill -0 "$pid" 2>/dev/null || { say "run ($name): incidentd died"; status=1; }
    stop_daemon
    ((status == 0)) || die "run ($name) failed; see $results"
}

for r in $runs; do run "$r"; done

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
mem_total=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || true)
BS_RESULTS=$results BS_RUNS=$runs BS_TOL=$tolerance BS_OUT=$output BS_COMMAND=$command_line \
    BS_SECONDS=$seconds BS_RATE=$rate BS_INTERVAL=$interval \
    BS_MACHINE="$(nproc) cores (${cpu_model:-unknown}), ${mem_total:-unknown} RAM, $(uname -sr)" \
    BS_COMMIT=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown) \
    BS_DIRTY=$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true) \
    python3 - <<'PY'
import datetime, json, os, re, sys
env = os.environ
results, tol = env["BS_RESULTS"], float(env["BS_TOL"])
MiB = 1024 * 1024
titles = {
    "a": "(a) defaults: `raw_payload_retention: 30d`, `incident_retention: 0s` (forever)",
    "b": "(b) short retention: `raw_payload_retention: 1m`, `incident_retention: 2m`, `prune_interval: 15s`",
}

def slope(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0

lines, ok, verdicts = [], True, []
for name in env["BS_RUNS"].split():
    rows = [json.loads(l) for l in open(f"{results}/samples-{name}.jsonl") if l.strip()]
    # The closing sample can land in the same second as the last tick: keep the later one.
    rows = [r for r, nxt in zip(rows, rows[1:] + [None]) if nxt is None or round(nxt["t"]) != round(r["t"])]
    load = json.load(open(f"{results}/load-{name}.json"))
    if len(rows) < 6:
        sys.exit("bench-storage.sh: too few samples to judge (run longer or sample more often)")
    last = rows[-1]
    hooks = last["webhooks"]
    lines += [f"### {titles[name]}", "",
              "| t s | webhooks | db MiB | WAL MiB | pages used / free | notifications | payloads | incidents (resolved) | jobs | drafts (MiB) | RSS MiB |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        used = r["page_count"] - r["freelist_count"]
        lines.append(
            f"| {r['t']:.0f} | {r['webhooks']:,} | {r['db'] / MiB:.1f} | {r['wal'] / MiB:.1f} | "
            f"{used:,} / {r['freelist_count']:,} | {r['notifications']:,} | {r['payloads']:,} | "
            f"{r['incidents']:,} ({r['resolved']:,}) | {r['jobs']:,} | {r['drafts']:,} ({r['drafts_bytes'] / MiB:.1f}) | "
            f"{r['vmrss'] / 1024:.1f} |")
    n = len(rows) // 3
    tail = rows[-(len(rows) - 2 * n):]
    start = tail[0]["db"]
    growth = (max(r["db"] for r in tail) - start) / start * 100 if start else 0.0
    per_hook = slope([r["webhooks"] for r in rows[1:]], [r["db"] + r["wal"] for r in rows[1:]])
    tail_per_hook = slope([r["webhooks"] for r in tail], [r["db"] + r["wal"] for r in tail])
    codes = ", ".join(f"{n:,} × {c}" for c, n in sorted(load["codes"].items()))
    lines += ["",
              f"{hooks:,} webhooks in {load['seconds']:.0f} s ({load['webhook_rps']:,.0f}/s; {codes}; "
              f"p50 {load['webhook_p50_ms']} ms, p99 {load['webhook_p99_ms']} ms). "
              f"Database file {last['db'] / MiB:.1f} MiB at the end, WAL at most "
              f"{max(r['wal'] for r in rows) / MiB:.1f} MiB; peak RSS {last['vmhwm'] / 1024:.1f} MiB. "
              f"Growth of database + WAL per webhook received (least squares over the samples): "
              f"**{per_hook:,.0f} bytes** over the whole run, {tail_per_hook:,.0f} bytes in the last third "
              f"({len(tail)} samples from t = {tail[0]['t']:.0f} s), where the file grew by {growth:.1f} %."]
    if name == "b":
        flat = growth <= tol
        ok &= flat
        verdicts.append(f"run (b): database file grew {growth:.1f} % within the last third "
                        f"(allowed {tol:.0f} %): {'levelled off, PASS' if flat else 'STILL GROWING, FAIL'}")
        lines += ["", f"Verdict: {verdicts[-1]}."]
    lines.append("")

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
section = "\n".join([
    "<!-- bench-storage:start (written by scripts/bench-storage.sh; edits inside are overwritten) -->",
    f"## Storage under retention, {now}",
    "",
    f"- Machine: {env['BS_MACHINE']}",
    f"- Commit: {env['BS_COMMIT']}{env['BS_DIRTY']}",
    f"- Command: `{env['BS_COMMAND']}`",
    f"- Load: `scripts/load_mix.py`, 4 keep-alive connections, {env['BS_RATE']} webhooks/s for "
    f"{env['BS_SECONDS']} s per run: 85 % repeats of open groups, every one with a new annotation "
    "value so no body is deduplicated (the worst case for storage: real repeats are mostly byte-for-byte "
    "identical and stored once), 8 % new incidents, 7 % resolves (at most 200 open groups); "
    "one-alert notifications of about 800 bytes. No Prometheus, no Slack: the only jobs are draft renders",
    f"- Each run: the release binary on a fresh database; samples every {env['BS_INTERVAL']} s of the "
    "database file and its `-wal`, `page_count − freelist_count` (pages in use) and `freelist_count`, "
    "row counts (Python `sqlite3`, read-only URI mode), the drafts directory, and the daemon's `VmRSS`",
    f"- Raw samples, configurations and daemon logs: `target/bench-storage/{os.path.basename(results)}/`",
    "",
    *lines,
    "<!-- bench-storage:end -->",
])
path = env["BS_OUT"]
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
pattern = re.compile(r"<!-- bench-storage:start.*?<!-- bench-storage:end -->", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _: section, text, count=1)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
print(section)
for v in verdicts:
    print(f"bench-storage.sh: {v}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
