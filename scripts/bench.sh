#!/usr/bin/env bash
# Webhook ingestion benchmark: starts the release build of incidentd on a fresh database and
# drives POST /webhook/alertmanager with oha, side by side with a bare baseline
# (scripts/bench_baseline: axum + group-commit SQLite insert of the body, WAL,
# synchronous=FULL), then writes a Markdown table into BENCHMARKS.md. The same on PostgreSQL:
# a throwaway cluster (initdb + pg_ctl, fsync and synchronous_commit on) for the run, the
# baseline's PostgreSQL mode, incidentd on it, and two incidentd replicas on it (the load
# split evenly between them).
#
# Usage: scripts/bench.sh            (from anywhere; takes ~ 2 × payloads × concurrencies × duration)
#
# Environment (all optional):
#   BENCH_DURATION      length of each run, oha syntax: 10s (default), 30s, 1m; at most 10m
#   BENCH_CONCURRENCY   space-separated connection counts (default "1 16 64")
#   BENCH_PAYLOADS      files under tests/fixtures/bench/ (default "payload-firing.json payload-firing-10.json")
#   BENCH_TARGETS       what to measure (default "baseline incidentd baseline-pg incidentd-pg
#                       incidentd-pg2"); "baseline" alone works without a daemon; the -pg
#                       targets need initdb and pg_ctl (Debian package postgresql)
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
targets=${BENCH_TARGETS:-baseline incidentd baseline-pg incidentd-pg incidentd-pg2}
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
    case $t in
    baseline | incidentd | baseline-pg | incidentd-pg | incidentd-pg2) ;;
    *) die "BENCH_TARGETS: unknown target '$t' (baseline, incidentd, baseline-pg, incidentd-pg, incidentd-pg2)" ;;
    esac
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
if [[ " $targets " == *" baseline"* ]]; then
    say "building the baseline (release)"
    # Same target directory as the crate, so shared dependencies are built once.
    CARGO_TARGET_DIR=$repo/target cargo build --release --quiet \
        --manifest-path "$repo/scripts/bench_baseline/Cargo.toml" ||
        die "building scripts/bench_baseline failed (see above)"
fi
if [[ " $targets " == *" incidentd"* ]]; then
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
server_pids=()
pg_dir=
pg_port=
# PostgreSQL's tools refuse to run as root: they run as the postgres user then.
as_pg() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_one() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        # Graceful shutdown gets 10 s, then the process is killed.
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
stop_server() {
    local pid
    for pid in "${server_pids[@]}"; do stop_one "$pid"; done
    server_pids=()
    server_pid=
}
stop_postgres() {
    [[ -n $pg_dir ]] || return 0
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/cluster" -m fast -w stop >/dev/null 2>&1 || true
    pg_dir=
}
cleanup() {
    stop_server
    stop_postgres
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A throwaway PostgreSQL cluster for the -pg targets, with the server's durable defaults
# (fsync, synchronous_commit on) and enough connections for two replicas' pools.
start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    command -v initdb >/dev/null && pg_bin=$(dirname "$(readlink -f "$(command -v initdb)")")
    [[ -x $pg_bin/initdb ]] || die "the -pg targets need initdb and pg_ctl (Debian package postgresql)"
    pg_dir=$work/pg
    mkdir -p "$pg_dir"
    # As root, initdb runs as postgres, which must be able to reach the cluster under $work
    # (mktemp -d makes it 0700).
    ((EUID == 0)) && chmod 711 "$work" && chown postgres: "$pg_dir"
    pg_port=$(free_port)
    as_pg "$pg_bin/initdb" -D "$pg_dir/cluster" -A trust -U bench >"$pg_dir/initdb.log" 2>&1 ||
        die "initdb failed (see $pg_dir/initdb.log)"
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/cluster" -l "$pg_dir/server.log" -w start \
        -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $pg_dir -c max_connections=200" >/dev/null ||
        die "PostgreSQL did not start (see $pg_dir/server.log)"
    say "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"
}

# create_db NAME: an empty database for one run; prints its URL.
create_db() {
    "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U bench -d postgres -c "CREATE DATABASE $1" >/dev/null ||
        die "cannot create database $1"
    echo "postgres://bench@127.0.0.1:$pg_port/$1"
}

# spawn_incidentd PORT DIR LOG [CONFIG]: one incidentd in the background; appends its pid.
spawn_incidentd() {
    local port=$1 dir=$2 log=$3 config=${4:-}
    (cd "$dir" && exec "$incidentd_bin" serve ${config:+"--config.file=$config"} \
        "--web.listen-address=127.0.0.1:$port" "--storage.path=$dir/data") >"$log" 2>&1 &
    server_pids+=($!)
}

# start_server TARGET PORT DIR LOG: starts TARGET on an empty DIR, sets server_pid, waits for
# /-/ready.
start_server() {
    local target=$1 port=$2 dir=$3 log=$4
    mkdir -p "$dir"
    case $target in
    baseline)
        "$baseline_bin" --listen "127.0.0.1:$port" --db "$dir/baseline.db" >"$log" 2>&1 &
        server_pids+=($!)
        ;;
    baseline-pg)
        "$baseline_bin" --listen "127.0.0.1:$port" --pg "$(create_db "$(basename "$dir" | tr -c 'a-z0-9\n' _)")" >"$log" 2>&1 &
        server_pids+=($!)
        ;;
    incidentd)
        # Run inside the scratch directory so embedded defaults (drafts under ./drafts) stay
        # out of the repository.
        spawn_incidentd "$port" "$dir" "$log"
        ;;
    incidentd-pg | incidentd-pg2)
        local url
        url=$(create_db "$(basename "$dir" | tr -c 'a-z0-9\n' _)")
        mkdir -p "$dir/secrets"
        echo "$url" >"$dir/secrets/postgres-url"
        printf 'storage:\n  backend: postgres\n  postgres:\n    url_file: secrets/postgres-url\n    sslmode: disable\n' >"$dir/incidentd.yml"
        spawn_incidentd "$port" "$dir" "$log" "$dir/incidentd.yml"
        if [[ $target == incidentd-pg2 ]]; then
            second_port=$(free_port)
            mkdir -p "$dir/b"
            spawn_incidentd "$second_port" "$dir/b" "$log.b" "$dir/incidentd.yml"
        fi
        ;;
    esac
    server_pid=${server_pids[0]}
    local deadline=$((SECONDS + ready_timeout)) pid p
    local ports=("$port")
    [[ $target == incidentd-pg2 ]] && ports+=("$second_port")
    for p in "${ports[@]}"; do
        while true; do
            for pid in "${server_pids[@]}"; do
                if ! kill -0 "$pid" 2>/dev/null; then
                    echo "--- last lines of its output ($log):" >&2
                    tail -n 20 "$log"* >&2
                    die "$target exited during startup before answering GET /-/ready on 127.0.0.1:$p"
                fi
            done
            curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$p/-/ready" 2>/dev/null && break
            if ((SECONDS >= deadline)); then
                echo "--- last lines of its output ($log):" >&2
                tail -n 20 "$log"* >&2
                die "$target did not answer GET http://127.0.0.1:$p/-/ready with 2xx within ${ready_timeout}s"
            fi
            sleep 0.1
        done
    done
}

peak_rss_kib() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}
# The servers' peak RSS added up (two replicas: both).
peak_rss_all() {
    local total=0 pid
    for pid in "${server_pids[@]}"; do total=$((total + $(peak_rss_kib "$pid"))); done
    echo "$total"
}

# --- the runs -------------------------------------------------------------------------------
[[ " $targets " == *"-pg"* ]] && start_postgres
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
            oha_run() { # PORT CONNECTIONS OUT
                oha --no-tui --output-format json -z "$duration" -c "$2" \
                    -m POST -H 'Content-Type: application/json' -D "$payload_path" \
                    "http://127.0.0.1:$1/webhook/alertmanager" >"$3"
            }
            if [[ $target == incidentd-pg2 ]]; then
                # Half the connections to each replica, at the same time.
                oha_run "$port" $(((c + 1) / 2)) "$results_dir/$run.json" &
                first=$!
                oha_run "$second_port" $((c / 2 > 0 ? c / 2 : 1)) "$results_dir/$run.b.json" ||
                    die "oha failed for $run (output in $results_dir/$run.b.json)"
                wait "$first" || die "oha failed for $run (output in $results_dir/$run.json)"
                outputs="$results_dir/$run.json,$results_dir/$run.b.json"
            else
                oha_run "$port" "$c" "$results_dir/$run.json" ||
                    die "oha failed for $run (output in $results_dir/$run.json)"
                outputs="$results_dir/$run.json"
            fi
            rss=$(peak_rss_all)
            for pid in "${server_pids[@]}"; do
                kill -0 "$pid" 2>/dev/null || die "$target died during the run $run (log: $results_dir/$run.log)"
            done
            stop_server
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$payload" "$alerts" "$c" "$rss" "$outputs" >>"$results"
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
    target, payload, alerts, conc, rss_kib, paths = line.rstrip("\n").split("\t")
    # Two replicas: one oha per replica, at the same time; their rates add up, and the
    # percentiles shown are the worse of the two (each is exact for its half of the load).
    rps = p50 = p99 = 0.0
    codes, errors = {}, {}
    for path in paths.split(","):
        r = json.load(open(path))
        summary = r.get("summary", {})
        elapsed = summary.get("total") or 0
        c = {int(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
        for k, v in c.items():
            codes[k] = codes.get(k, 0) + v
        ok = sum(v for k, v in c.items() if 200 <= k < 300)
        rps += ok / elapsed if elapsed else 0.0
        # Requests still in flight when the duration ends are cut off by oha, not failed by us.
        for k, v in (r.get("errorDistribution") or {}).items():
            if "deadline" not in k:
                errors[k] = errors.get(k, 0) + v
        pct = r.get("latencyPercentiles") or {}
        p50 = max(p50, (pct.get("p50") or 0) * 1000)
        p99 = max(p99, (pct.get("p99") or 0) * 1000)
    non2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
    rows.append(dict(
        target=target, payload=payload, alerts=int(alerts), conc=int(conc),
        rps=rps, p50=p50, p99=p99,
        errors=non2xx + sum(errors.values()), error_kinds=errors, codes=codes,
        rss=int(rss_kib or 0) / 1024,
    ))

# Goals of issue 8, at concurrency 64 on 2 cores.
GOALS = {1: (13000, 20.0), 10: (5000, 20.0)}
RSS_GOAL_MIB = 64

def fmt_int(x): return f"{x:,.0f}"
def baseline_of(target):
    return "baseline-pg" if target.endswith(("-pg", "-pg2")) else "baseline"
base = {(r["target"], r["payload"], r["conc"]): r for r in rows if r["target"].startswith("baseline")}
lines = [
    "| payload | conc. | target | 2xx/s | p50 ms | p99 ms | errors | peak RSS MiB | vs baseline | goal |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
]
for r in rows:
    b = base.get((baseline_of(r["target"]), r["payload"], r["conc"]))
    ratio = f"{r['rps'] / b['rps']:.2f}×" if not r["target"].startswith("baseline") and b and b["rps"] else ""
    goal = ""
    # Issue 15: on PostgreSQL, at least half the baseline's rate at c=64, p99 within 1.5× its.
    if r["target"] in ("incidentd-pg", "incidentd-pg2") and r["conc"] == 64 and b and b["rps"]:
        met = r["rps"] >= 0.5 * b["rps"] and r["p99"] <= 1.5 * b["p99"] and r["errors"] == 0
        goal = ("met" if met else "missed") + " (≥ 0.5× baseline-pg, p99 ≤ 1.5× its, no errors)"
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
    "- PostgreSQL targets: a throwaway local cluster (fsync and `synchronous_commit` on, its defaults); `baseline-pg` is the "
    "same baseline inserting into PostgreSQL, `incidentd-pg` one incidentd on it, `incidentd-pg2` two replicas on one "
    "database with half the connections each (rates added, the worse replica's percentiles shown, RSS of both); "
    "their *vs baseline* is against `baseline-pg`",
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
