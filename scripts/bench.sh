#!/usr/bin/env bash
# Webhook ingestion benchmark: starts the release build of incidentd on a fresh database and
# drives POST /webhook/alertmanager with oha, side by side with a bare baseline
# (scripts/bench_baseline: axum + group-commit SQLite insert of the body, WAL,
# synchronous=FULL), then writes a Markdown table into BENCHMARKS.md.
#
# Usage: scripts/bench.sh            (from anywhere; takes ~ 2 × payloads × concurrencies × duration)
#
# Environment (all optional):
#   BENCH_DURATION      length of each run, oha syntax: 10s (default), 30s, 1m; at most 10m
#   BENCH_CONCURRENCY   space-separated connection counts (default "1 16 64")
#   BENCH_PAYLOADS      files under tests/fixtures/bench/ (default "payload-firing.json payload-firing-10.json")
#   BENCH_TARGETS       what to measure (default "baseline incidentd"); "baseline" alone works
#                       without a daemon
#   BENCH_OUTPUT        Markdown file to write (default BENCHMARKS.md in the repository)
#   BENCH_READY_TIMEOUT seconds to wait for /-/ready (default 30)
#
# Every run gets a new process and an empty database, so runs do not see each other's
# data; the raw oha JSON of each run is kept under target/bench/<time>/.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command_line="$(for v in $(compgen -e | grep '^BENCH_' | sort); do printf '%s=%q ' "$v" "${!v}"; done)scripts/bench.sh${*:+ $*}"

duration=${BENCH_DURATION:-10s}
concurrency=${BENCH_CONCURRENCY:-1 16 64}
payloads=${BENCH_PAYLOADS:-payload-firing.json payload-firing-10.json}
targets=${BENCH_TARGETS:-baseline incidentd}
output=${BENCH_OUTPUT:-$repo/BENCHMARKS.md}
ready_timeout=${BENCH_READY_TIMEOUT:-30}

die() {
    echo "bench.sh: error: $*" >&2
    exit 1
}
say() { echo "bench.sh: $*" >&2; }

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*) die "unexpected argument '$1' (settings are environment variables; see --help)" ;;
esac

# --- check the settings before spending minutes on builds ---------------------------------
[[ $duration =~ ^([0-9]+)(s|m)$ ]] || die "BENCH_DURATION=$duration: expected seconds or minutes such as 10s or 1m"
seconds=${BASH_REMATCH[1]}
[[ ${BASH_REMATCH[2]} == m ]] && seconds=$((seconds * 60))
((seconds >= 1 && seconds <= 600)) || die "BENCH_DURATION=$duration: must be between 1s and 10m"
for c in $concurrency; do
    [[ $c =~ ^[1-9][0-9]*$ ]] && ((c <= 1024)) || die "BENCH_CONCURRENCY: '$c' is not a connection count between 1 and 1024"
done
for p in $payloads; do
    [[ -f $repo/tests/fixtures/bench/$p ]] || die "BENCH_PAYLOADS: $repo/tests/fixtures/bench/$p does not exist"
done
for t in $targets; do
    [[ $t == baseline || $t == incidentd ]] || die "BENCH_TARGETS: unknown target '$t' (baseline, incidentd)"
done
[[ $ready_timeout =~ ^[1-9][0-9]*$ ]] || die "BENCH_READY_TIMEOUT=$ready_timeout: expected whole seconds"

for tool in cargo curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required but not installed"
done
[[ -r /proc/self/status ]] || die "/proc is needed to read the daemon's peak RSS (Linux only)"

# --- tools and builds -----------------------------------------------------------------------
if ! command -v oha >/dev/null; then
    say "installing the load generator: cargo install oha --locked"
    cargo install oha --locked || die "cargo install oha --locked failed (see above)"
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    command -v oha >/dev/null || die "oha was installed but is not on PATH; add ${CARGO_HOME:-$HOME/.cargo}/bin to PATH"
fi
oha_version=$(oha --version 2>/dev/null | head -n1)

baseline_bin=$repo/target/release/incidentd-bench-baseline
incidentd_bin=$repo/target/release/incidentd
if [[ " $targets " == *" baseline "* ]]; then
    say "building the baseline (release)"
    # Same target directory as the crate, so shared dependencies are built once.
    CARGO_TARGET_DIR=$repo/target cargo build --release --quiet \
        --manifest-path "$repo/scripts/bench_baseline/Cargo.toml" ||
        die "building scripts/bench_baseline failed (see above)"
fi
if [[ " $targets " == *" incidentd "* ]]; then
    say "building incidentd (release)"
    cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --bin incidentd ||
        die "building incidentd failed (see above)"
fi

# --- helpers --------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/incidentd-bench.XXXXXX")
results_dir=$repo/target/bench/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results_dir"
results=$results_dir/results.tsv
: >"$results"
server_pid=

stop_server() {
    [[ -n $server_pid ]] || return 0
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        # Graceful shutdown gets 10 s, then the process is killed.
        for _ in $(seq 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server TARGET PORT DIR LOG: starts TARGET on an empty DIR, sets server_pid, waits for
# /-/ready.
start_server() {
    local target=$1 port=$2 dir=$3 log=$4
    mkdir -p "$dir"
    case $target in
    baseline)
        "$baseline_bin" --listen "127.0.0.1:$port" --db "$dir/baseline.db" >"$log" 2>&1 &
        ;;
    incidentd)
        # Run inside the scratch directory so embedded defaults (drafts under ./drafts) stay
        # out of the repository.
        (cd "$dir" && exec "$incidentd_bin" serve \
            "--web.listen-address=127.0.0.1:$port" "--storage.path=$dir/data") >"$log" 2>&1 &
        ;;
    esac
    server_pid=$!
    local deadline=$((SECONDS + ready_timeout))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            local status=0
            wait "$server_pid" || status=$?
            server_pid=
            echo "--- last lines of its output ($log):" >&2
            tail -n 20 "$log" >&2
            die "$target exited during startup with status $status before answering GET /-/ready on 127.0.0.1:$port"
        fi
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/-/ready" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "--- last lines of its output ($log):" >&2
    tail -n 20 "$log" >&2
    die "$target did not answer GET http://127.0.0.1:$port/-/ready with 2xx within ${ready_timeout}s"
}

peak_rss_kib() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# --- the runs -------------------------------------------------------------------------------
say "$oha_version; $duration per run; concurrency $concurrency; targets $targets"
for payload in $payloads; do
    payload_path=$repo/tests/fixtures/bench/$payload
    alerts=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["alerts"]))' "$payload_path")
    for c in $concurrency; do
        # Targets alternate within each setting so drift of the machine hits both alike.
        for target in $targets; do
            run=$target-${payload%.json}-c$c
            port=$(free_port)
            start_server "$target" "$port" "$work/$run" "$results_dir/$run.log"
            say "$run: oha -z $duration -c $c"
            oha --no-tui --output-format json -z "$duration" -c "$c" \
                -m POST -H 'Content-Type: application/json' -D "$payload_path" \
                "http://127.0.0.1:$port/webhook/alertmanager" >"$results_dir/$run.json" ||
                die "oha failed for $run (output in $results_dir/$run.json)"
            rss=$(peak_rss_kib "$server_pid")
            kill -0 "$server_pid" 2>/dev/null || die "$target died during the run $run (log: $results_dir/$run.log)"
            stop_server
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$payload" "$alerts" "$c" "$rss" "$results_dir/$run.json" >>"$results"
        done
    done
done

# --- the report -----------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
mem_total=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || true)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit="$commit (with uncommitted changes)"
fi

BENCH_RESULTS=$results BENCH_OUT=$output BENCH_COMMAND=$command_line BENCH_OHA=$oha_version \
    BENCH_NPROC=$(nproc) BENCH_CPU=${cpu_model:-unknown} BENCH_MEM=${mem_total:-unknown} \
    BENCH_KERNEL="$(uname -sr)" BENCH_COMMIT=$commit BENCH_DUR=$duration \
    BENCH_RAW_DIR=${results_dir#"$repo"/} \
    python3 - <<'PY'
import json, os, re, datetime

rows = []
for line in open(os.environ["BENCH_RESULTS"]):
    target, payload, alerts, conc, rss_kib, path = line.rstrip("\n").split("\t")
    r = json.load(open(path))
    summary = r.get("summary", {})
    elapsed = summary.get("total") or 0
    codes = {int(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    non2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
    # Requests still in flight when the duration ends are cut off by oha, not failed by us.
    errors = {k: v for k, v in (r.get("errorDistribution") or {}).items() if "deadline" not in k}
    pct = r.get("latencyPercentiles") or {}
    rows.append(dict(
        target=target, payload=payload, alerts=int(alerts), conc=int(conc),
        rps=ok / elapsed if elapsed else 0.0,
        p50=(pct.get("p50") or 0) * 1000, p99=(pct.get("p99") or 0) * 1000,
        errors=non2xx + sum(errors.values()), error_kinds=errors, codes=codes,
        rss=int(rss_kib or 0) / 1024,
    ))

# Goals of issue 8, at concurrency 64 on 2 cores.
GOALS = {1: (13000, 20.0), 10: (5000, 20.0)}
RSS_GOAL_MIB = 64

def fmt_int(x): return f"{x:,.0f}"
base = {(r["payload"], r["conc"]): r for r in rows if r["target"] == "baseline"}
lines = [
    "| payload | conc. | target | 2xx/s | p50 ms | p99 ms | errors | peak RSS MiB | vs baseline | goal |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
]
for r in rows:
    b = base.get((r["payload"], r["conc"]))
    ratio = f"{r['rps'] / b['rps']:.2f}×" if r["target"] != "baseline" and b and b["rps"] else ""
    goal = ""
    if r["target"] == "incidentd" and r["conc"] == 64 and r["alerts"] in GOALS:
        rps_goal, p99_goal = GOALS[r["alerts"]]
        met = r["rps"] >= rps_goal and r["p99"] <= p99_goal and r["rss"] <= RSS_GOAL_MIB and r["errors"] == 0
        goal = ("met" if met else "missed") + f" (≥ {fmt_int(rps_goal)}/s, p99 ≤ {p99_goal:g} ms, ≤ {RSS_GOAL_MIB} MiB)"
    label = f"{r['alerts']} alert{'s' if r['alerts'] != 1 else ''}"
    lines.append(
        f"| {label} | {r['conc']} | {r['target']} | {fmt_int(r['rps'])} | {r['p50']:.2f} | {r['p99']:.2f} "
        f"| {r['errors']} | {r['rss']:.1f} | {ratio} | {goal} |"
    )

error_notes = []
for r in rows:
    if r["errors"]:
        detail = ", ".join([f"HTTP {k}: {v}" for k, v in sorted(r["codes"].items()) if not 200 <= k < 300]
                           + [f"{k}: {v}" for k, v in r["error_kinds"].items()])
        error_notes.append(f"- {r['target']}, {r['payload']}, c={r['conc']}: {detail}")

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
section = "\n".join([
    "<!-- bench:start (written by scripts/bench.sh; edits inside are overwritten) -->",
    f"## Webhook ingestion, {now}",
    "",
    f"- Machine: {os.environ['BENCH_NPROC']} cores ({os.environ['BENCH_CPU']}), {os.environ['BENCH_MEM']} RAM, {os.environ['BENCH_KERNEL']}",
    f"- Commit: {os.environ['BENCH_COMMIT']}",
    f"- Command: `{os.environ['BENCH_COMMAND']}`",
    f"- Load: {os.environ['BENCH_OHA']} on the same machine, {os.environ['BENCH_DUR']} per run, keep-alive connections, "
    "`POST /webhook/alertmanager` with the same payload from `tests/fixtures/bench/` every time; "
    "each run starts a new process on an empty database",
    "- Baseline: `scripts/bench_baseline/` (axum, JSON parse, one writer group-committing the raw body into SQLite, "
    "WAL, `synchronous=FULL`), run alternately with incidentd; *vs baseline* is incidentd's 2xx/s divided by the baseline's",
    "- 2xx/s counts only answers with a 2xx status; *errors* are non-2xx answers and failed requests "
    "(requests cut off at the end of the duration are not errors); peak RSS is the daemon's `VmHWM`",
    f"- Raw oha output and daemon logs: `{os.environ['BENCH_RAW_DIR']}/`",
    "",
    *lines,
    *([""] + ["Errors:"] + error_notes if error_notes else []),
    "<!-- bench:end -->",
])

path = os.environ["BENCH_OUT"]
try:
    text = open(path).read()
except FileNotFoundError:
    text = ("# Benchmarks\n\nReproduce with `scripts/bench.sh` (see `scripts/bench.sh --help`). "
            "Absolute numbers drift by about ±15 % between runs on shared machines; compare the ratio "
            "to the baseline measured in the same run.\n\n")
pattern = re.compile(r"<!-- bench:start.*?<!-- bench:end -->", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _: section, text, count=1)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
print("\n".join(lines))
PY
say "wrote $output"
