#!/usr/bin/env bash
# incidentd demo: a real Prometheus and Alertmanager turn a scripted outage into an incident, a
# timeline and a post-mortem draft, in about a minute and a half.
#
#   apt-get install -y --no-install-recommends prometheus prometheus-alertmanager
#   scripts/demo.sh
#
# It starts, on free loopback ports and in a temporary directory: a payment-service exporter
# (python3), Prometheus with examples/prometheus-rules.yml, Alertmanager with
# examples/alertmanager.yml (both with timings shortened: `for: 5s`, [10s] ranges,
# group_wait 1s, group_interval 5s) and incidentd (built with cargo unless INCIDENTD_BIN
# names a binary). Then it plays normal → database pool at 97-100 % with errors and latency
# (30 s, acknowledged by "demo" on the way) → recovered, waits for the incident to resolve
# and prints the API and the draft. Everything it started is stopped on exit, Ctrl-C included.
#
# Environment: INCIDENTD_BIN (binary to run), DEMO_INCIDENT_SECONDS (default 30),
# DEMO_NORMAL_SECONDS (normal traffic before the outage, default 12), DEMO_SNAPSHOT_DELAY,
# DEMO_SNAPSHOT_MARGIN, DEMO_SNAPSHOT_BASELINE (incidentd's prometheus.snapshot_*, default
# 5s, 5s, 10s), DEMO_KEEP=1 (keep the temporary directory: configs, logs, database, drafts),
# DEMO_OUTPUT=path.md (wait until the incident's full evidence snapshot is stored and its
# draft re-rendered, then copy the draft to path.md and its chart directory INC-…/ beside it,
# where the draft's image links point; no prompt). scripts/showcase.sh uses the last one.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
incident_seconds=${DEMO_INCIDENT_SECONDS:-30}
normal_seconds=${DEMO_NORMAL_SECONDS:-12}
output=${DEMO_OUTPUT:-}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

find_bin() {
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

prometheus=$(find_bin prometheus) ||
    die "prometheus not found: apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
alertmanager=$(find_bin prometheus-alertmanager alertmanager) ||
    die "alertmanager not found: apt-get install -y --no-install-recommends prometheus-alertmanager"
command -v python3 >/dev/null || die "python3 is needed for the demo exporter"
command -v curl >/dev/null || die "curl is needed to talk to the APIs"

if [[ -n ${INCIDENTD_BIN:-} ]]; then
    incidentd=$INCIDENTD_BIN
else
    say "building incidentd (cargo build)"
    (cd "$repo" && cargo build --quiet --bin incidentd)
    incidentd=${CARGO_TARGET_DIR:-$repo/target}/debug/incidentd
fi
[[ -x $incidentd ]] || die "no incidentd binary at $incidentd"

work=$(mktemp -d -t incidentd-demo.XXXXXX)
pids=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((${#pids[@]})); then
        say "stopping the demo's processes"
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    if [[ ${DEMO_KEEP:-0} == 1 ]]; then
        say "kept $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
exporter_port=$(free_port)
prometheus_port=$(free_port)
alertmanager_port=$(free_port)
incidentd_port=$(free_port)
api=http://127.0.0.1:$incidentd_port

# --- the exporter: payment-service metrics; POST /phase/<normal|incident|recovered> switches ----
cat >"$work/exporter.py" <<'PY'
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
SHARES = {  # share of requests per latency bucket (not cumulative)
    "normal": [0, 0.1, 0.3, 0.3, 0.2, 0.095, 0.005, 0, 0, 0, 0],
    "incident": [0, 0, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0],
}
ERRORS = {"normal": 0.01, "incident": 0.25}
POOL = {"normal": 18, "incident": 97, "recovered": 25}
RPS = 50.0

lock = threading.Lock()
state = {"phase": "normal", "last": time.monotonic(), "scrapes": 0, "ok": 0.0, "e500": 0.0,
         "e503": 0.0, "buckets": [0.0] * len(BUCKETS), "sum": 0.0, "count": 0.0}

def advance():
    now = time.monotonic()
    n = RPS * (now - state["last"])
    state["last"] = now
    kind = "incident" if state["phase"] == "incident" else "normal"
    err = ERRORS[kind]
    state["ok"] += n * (1 - err)
    state["e500"] += n * err * 2 / 3
    state["e503"] += n * err / 3
    lower = 0.0
    for i, share in enumerate(SHARES[kind]):
        state["buckets"][i] += n * share
        state["sum"] += n * share * (lower + BUCKETS[i]) / 2
        lower = BUCKETS[i]
    state["count"] += n

def render():
    state["scrapes"] += 1
    phase = state["phase"]
    pool = POOL[phase] + state["scrapes"] % (4 if phase == "incident" else 5)
    out = [
        "# TYPE db_connection_pool_active gauge",
        f'db_connection_pool_active{{pool="primary"}} {pool}',
        "# TYPE db_connection_pool_max gauge",
        'db_connection_pool_max{pool="primary"} 100',
        "# TYPE http_requests_total counter",
    ]
    for code, key in (("200", "ok"), ("500", "e500"), ("503", "e503")):
        out.append(f'http_requests_total{{handler="/api/v1/payments",method="POST",code="{code}"}} {state[key]}')
    out.append("# TYPE http_request_duration_seconds histogram")
    cumulative = 0.0
    for le, count in zip(BUCKETS, state["buckets"]):
        cumulative += count
        out.append(f'http_request_duration_seconds_bucket{{handler="/api/v1/payments",le="{le}"}} {cumulative}')
    out.append(f'http_request_duration_seconds_bucket{{handler="/api/v1/payments",le="+Inf"}} {state["count"]}')
    out.append(f'http_request_duration_seconds_sum{{handler="/api/v1/payments"}} {state["sum"]}')
    out.append(f'http_request_duration_seconds_count{{handler="/api/v1/payments"}} {state["count"]}')
    return ("\n".join(out) + "\n").encode()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        with lock:
            advance()
            body = render()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        phase = self.path.rsplit("/", 1)[-1]
        if not self.path.startswith("/phase/") or phase not in POOL:
            self.send_error(404)
            return
        with lock:
            advance()
            state["phase"] = phase
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY

# --- configuration: the examples, with the demo's ports and short timings ------------------------
mkdir -p "$work/secrets"
python3 -c 'import secrets; print(secrets.token_hex(16))' >"$work/secrets/webhook-token"
sed -e 's/^\( *for:\).*/\1 5s/' -e 's/\[5m\]/[10s]/g' \
    "$repo/examples/prometheus-rules.yml" >"$work/rules.yml"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ['$work/rules.yml']
alerting:
  alertmanagers:
    - api_version: v2
      static_configs:
        - targets: ['127.0.0.1:$alertmanager_port']
scrape_configs:
  - job_name: payment-service
    static_configs:
      - targets: ['127.0.0.1:$exporter_port']
        labels: {service: payment-service, env: demo}
EOF
sed -e 's/^\( *group_wait:\).*/\1 1s/' -e 's/^\( *group_interval:\).*/\1 5s/' \
    -e "s|^\( *- url:\).*|\1 $api/webhook/alertmanager|" \
    -e "s|^\( *credentials_file:\).*|\1 $work/secrets/webhook-token|" \
    "$repo/examples/alertmanager.yml" >"$work/alertmanager.yml"
cat >"$work/incidentd.yml" <<EOF
web:
  external_url: $api/
  webhook_auth:
    bearer_token_file: secrets/webhook-token
storage:
  path: $work/data
prometheus:
  url: http://127.0.0.1:$prometheus_port
  snapshot_delay: ${DEMO_SNAPSHOT_DELAY:-5s}
  snapshot_margin: ${DEMO_SNAPSHOT_MARGIN:-5s}
  # The demo's Prometheus has only seconds of history: take the baseline from those.
  snapshot_baseline: ${DEMO_SNAPSHOT_BASELINE:-10s}
alertmanager:
  url: http://127.0.0.1:$alertmanager_port
rules_dir: $repo/rules
postmortem:
  output_dir: $work/drafts
  timezone: UTC
EOF
"$incidentd" check-config "$work/incidentd.yml" >/dev/null ||
    die "incidentd check-config failed: $("$incidentd" check-config "$work/incidentd.yml")"

# --- start everything -----------------------------------------------------------------------------
start() { # name, command...
    local name=$1
    shift
    "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
}
wait_ready() { # name, url
    local i
    for ((i = 0; i < 120; i++)); do
        if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
        sleep 0.25
    done
    tail -20 "$work/$1.log" >&2 || true
    die "$1 did not become ready at $2"
}

say "starting exporter, Prometheus, Alertmanager and incidentd in $work"
start exporter python3 "$work/exporter.py" "$exporter_port"
start prometheus "$prometheus" --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/prometheus-data" \
    --web.listen-address="127.0.0.1:$prometheus_port" \
    --web.external-url="http://127.0.0.1:$prometheus_port"
start alertmanager "$alertmanager" --config.file="$work/alertmanager.yml" \
    --storage.path="$work/alertmanager-data" \
    --web.listen-address="127.0.0.1:$alertmanager_port" \
    --web.external-url="http://127.0.0.1:$alertmanager_port" \
    --cluster.listen-address=
start incidentd "$incidentd" serve --config.file="$work/incidentd.yml" \
    --web.listen-address="127.0.0.1:$incidentd_port" --storage.path="$work/data"
wait_ready exporter "http://127.0.0.1:$exporter_port/metrics"
wait_ready prometheus "http://127.0.0.1:$prometheus_port/-/ready"
wait_ready alertmanager "http://127.0.0.1:$alertmanager_port/-/ready"
wait_ready incidentd "$api/-/ready"

phase() {
    curl -fsS -X POST "http://127.0.0.1:$exporter_port/phase/$1"
    say "$(date -u +%H:%M:%S) payment-service: $1"
}
first_incident() { # prints the first incident's id and status, tab-separated
    curl -fsS "$api/api/v1/incidents" | python3 -c '
import json, sys
incidents = json.load(sys.stdin)["incidents"]
if incidents:
    print(incidents[-1]["id"] + "\t" + incidents[-1]["status"])'
}

say "normal traffic for $normal_seconds s (Prometheus needs a history before the outage)"
sleep "$normal_seconds"
phase incident
id=""
for ((i = 0; i < incident_seconds; i++)); do
    sleep 1
    if [[ -z $id ]]; then
        read -r id _ < <(first_incident) || true
        if [[ -n $id ]]; then
            say "$(date -u +%H:%M:%S) incidentd opened $id; acknowledging it as \"demo\""
            curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
                -d '{"by": "demo"}' "$api/api/v1/incidents/$id/ack"
        fi
    fi
done
phase recovered

say "waiting for the alerts to resolve (about 15 s)"
status=""
for ((i = 0; i < 240; i++)); do
    read -r id status < <(first_incident) || true
    [[ $status == resolved ]] && break
    sleep 0.5
done
[[ $status == resolved ]] || die "the incident did not resolve; logs in $work (DEMO_KEEP=1 keeps them)"
say "$(date -u +%H:%M:%S) $id resolved"
draft=$work/drafts/$id.md
if [[ -n $output ]]; then
    say "waiting for the full evidence snapshot (snapshot_delay ${DEMO_SNAPSHOT_DELAY:-5s} after the resolve)"
    evidence_state() {
        curl -fsS "$api/api/v1/incidents/$id" | python3 -c '
import json, sys
e = json.load(sys.stdin).get("evidence") or {}
print(e.get("state") or "none")'
    }
    ev=""
    for ((i = 0; i < 600; i++)); do
        ev=$(evidence_state) || true
        [[ $ev == resolved ]] && break
        sleep 0.5
    done
    [[ $ev == resolved ]] || die "the full evidence snapshot did not arrive (state: $ev); DEMO_KEEP=1 keeps the logs"
    say "$(date -u +%H:%M:%S) full evidence stored; waiting for the draft to settle"
    # The draft re-renders render_delay (0.5 s) after the evidence lands: wait until it is
    # newer than the evidence and has not changed for 5 s. Up to 3 minutes: draft threads
    # run at a lower priority, so on a busy machine the render can wait its turn.
    marker=$work/evidence-resolved
    touch "$marker"
    stable=0
    last=""
    for ((i = 0; i < 360 && stable < 10; i++)); do
        sleep 0.5
        [[ -f $draft && $draft -nt $marker && -d $work/drafts/$id ]] || continue
        sum=$(cat "$draft" "$work/drafts/$id"/* | sha256sum)
        if [[ $sum == "$last" ]]; then stable=$((stable + 1)); else stable=0 last=$sum; fi
    done
    ((stable >= 10)) || die "the draft was not re-rendered after the full evidence snapshot"
    [[ $(evidence_state) == resolved ]] || die "the evidence left the resolved state"
    out_dir=$(cd "$(dirname "$output")" && pwd)
    cp "$draft" "$output"
    rm -rf "${out_dir:?}/$id"
    cp -R "$work/drafts/$id" "$out_dir/$id"
    say "copied $id.md to $output and its charts to $out_dir/$id/"
else
    # The draft re-renders a moment after each change; evidence follows snapshot_delay later.
    sleep 8
fi
cat <<EOF

incidentd's API while this demo runs:
  $api/api/v1/incidents
  $api/api/v1/incidents/$id
  $api/api/v1/incidents/$id/postmortem
  $api/metrics
The draft on disk: $draft
Prometheus: http://127.0.0.1:$prometheus_port   Alertmanager: http://127.0.0.1:$alertmanager_port

EOF
curl -fsS "$api/api/v1/incidents/$id" | python3 -c '
import json, sys
i = json.load(sys.stdin)
for k in ("id", "title", "status", "severity", "impact_start", "impact_start_method", "fired_at",
          "detected_at", "acknowledged_at", "resolved_at", "ttd_seconds", "tta_seconds",
          "ttr_seconds", "duration_seconds"):
    print(f"  {k:20} {i.get(k)}")
print("  alerts               " + ", ".join(a["alertname"] for a in i["alerts"]))'
echo
echo "----- $draft -----"
cat "$draft"
echo "----- end of draft -----"
if [[ -z $output && -t 0 ]]; then
    read -r -p "Press Enter to stop the demo and clean up. " _
fi
