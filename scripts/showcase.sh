#!/usr/bin/env bash
# Regenerates examples/postmortem-scenario-single.md (the README's showcase) and its charts
# from a real run: scripts/demo.sh with a real Prometheus and Alertmanager, 130 s of normal
# traffic (the baseline), a 60 s connection-pool outage, then the wait for the full evidence
# snapshot (snapshot_delay 35s, snapshot_margin 30s after the resolve). About 4-5 minutes.
#
#   scripts/showcase.sh            # INCIDENTD_BIN=… to use a built binary instead of cargo build
#
# Run it whenever the draft changes (template, rules/, evidence) and commit its output as is.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export DEMO_OUTPUT=$repo/examples/postmortem-scenario-single.md
export DEMO_NORMAL_SECONDS=${DEMO_NORMAL_SECONDS:-130}
export DEMO_INCIDENT_SECONDS=${DEMO_INCIDENT_SECONDS:-60}
export DEMO_SNAPSHOT_BASELINE=${DEMO_SNAPSHOT_BASELINE:-2m}
export DEMO_SNAPSHOT_DELAY=${DEMO_SNAPSHOT_DELAY:-35s}
export DEMO_SNAPSHOT_MARGIN=${DEMO_SNAPSHOT_MARGIN:-30s}
exec "$repo/scripts/demo.sh"
