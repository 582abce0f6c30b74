#!/usr/bin/env bash
# Crash campaign (issue 12): the release build of incidentd under a random mixed load (new
# incidents, repeats, resolves, acknowledgements, notes, hand resolves from concurrent
# senders; evidence against the recorded Prometheus, Slack against the fake), killed with
# SIGKILL at a random moment each round, restarted on the same storage. After every round:
# the restart succeeds, every webhook and API write answered 2xx is stored, integrity_check
# and foreign_key_check are clean. At the end: every job done (none failed), every incident
# has its draft showing its final status and its evidence, Slack got every message with at
# most one extra copy per kill (docs/slack.md). Then the other tests of tests/api/crash.rs:
# the exact crash state of commit 1f060a2 (a running and a pending render of one incident),
# and SIGTERM under a large backlog (exit 0 within the 5 s job grace, backlog done after).
#
# The campaign is the integration test `crash::crash_campaign_*` in tests/api/crash.rs; CI
# runs it with 3 rounds as part of `cargo test`.
#
# Usage: scripts/crash-campaign.sh [ROUNDS]     (default 50)
#
# Environment (optional):
#   INCIDENTD_CRASH_SEED     replay a campaign (the seed is printed at the start)
#   INCIDENTD_CRASH_SENDERS  concurrent senders, default 4
#   CARGO_TARGET_DIR         as usual
#
# Exit status: cargo test's (non-zero when a round fails; the output names the round and
# what was lost).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-50}
[[ $rounds =~ ^[1-9][0-9]*$ ]] && ((rounds <= 10000)) || {
    echo "crash-campaign.sh: error: ROUNDS=$rounds: a whole number, 1..10000" >&2
    exit 2
}
command -v cargo >/dev/null || { echo "crash-campaign.sh: error: cargo is required" >&2; exit 2; }
cd "$repo"
echo "crash-campaign.sh: $rounds rounds, release build" >&2
start=$(date +%s)
INCIDENTD_CRASH_ROUNDS=$rounds cargo test --release --locked --test api crash -- --nocapture --test-threads 1
echo "crash-campaign.sh: passed in $(($(date +%s) - start)) s" >&2
