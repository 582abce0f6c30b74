#!/usr/bin/env bash
# Fuzz webhook decoding + correlation (fuzz/fuzz_targets/webhook.rs) with cargo fuzz.
# Seeds the corpus from tests/fixtures (each webhook alone, plus all of a scenario in one
# input separated by 0xFF, as the target splits them), then runs libFuzzer.
#
# Usage: scripts/fuzz.sh [SECONDS]     (default 300; CI runs 60)
# Needs a nightly toolchain; installs cargo-fuzz if missing. Exits non-zero on a crash,
# leaving the reproducer under fuzz/artifacts/webhook/ (replay: cargo +nightly fuzz run webhook FILE).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-300}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive whole number" >&2; exit 2; }

cargo +nightly --version >/dev/null
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

corpus=$repo/fuzz/corpus/webhook
mkdir -p "$corpus"
cp "$repo"/tests/fixtures/scenario-single/webhooks/0*.json "$repo"/tests/fixtures/bench/*.json "$corpus"/
# All six scenario notifications in one input: open, join, resolve across deliveries.
python3 - "$repo/tests/fixtures/scenario-single/webhooks" "$corpus/scenario-all" <<'PY'
import pathlib, sys
parts = sorted(p for p in pathlib.Path(sys.argv[1]).glob("0*.json"))
pathlib.Path(sys.argv[2]).write_bytes(b"\x00" + b"\xff".join(p.read_bytes() for p in parts))
PY

cd "$repo/fuzz"
# -rss_limit_mb bounds memory per input: a leak or blow-up counts as a crash.
exec cargo +nightly fuzz run webhook "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1
