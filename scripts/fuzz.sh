#!/usr/bin/env bash
# Fuzz incidentd with cargo fuzz (libFuzzer; fuzz/ is its own project). Targets:
#   webhook  decoding + correlation into the in-memory repo (fuzz/fuzz_targets/webhook.rs)
#   store    the same notifications into the in-memory repo and the real SQLite repo; both
#            must agree (fuzz/fuzz_targets/store.rs)
#   http     one request per input through the real router (fuzz/fuzz_targets/http.rs)
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  the whole budget, split evenly between the targets, run one after another
#            (default 300; CI runs 120, i.e. 40 s each). With no TARGET, all of them.
#   e.g. scripts/fuzz.sh 60          20 s each for webhook, store, http
#        scripts/fuzz.sh 300 store   5 minutes of store
#
# Seeds: webhook and store start from tests/fixtures (each webhook alone, plus all of a
# scenario in one input separated by 0xFF, as those targets split them). http's inputs are
# structured (`arbitrary`), so raw fixtures would mean nothing to it: it builds its bodies
# from the same recorded webhooks itself and starts from an empty corpus. Corpora are kept
# in fuzz/corpus/TARGET between runs.
#
# Builds once (all targets, with ASan), then runs each. Needs a nightly toolchain; installs
# cargo-fuzz if missing. Runs every target even after a crash, then exits non-zero naming
# the targets that crashed; reproducers are under fuzz/artifacts/TARGET/
# (replay: cd fuzz && cargo +nightly fuzz run TARGET FILE).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=300
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive whole number" >&2; exit 2; }

cargo +nightly --version >/dev/null
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

cd "$repo/fuzz"
mapfile -t known < <(cargo +nightly fuzz list)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${known[@]}")
for t in "${targets[@]}"; do
    if ! printf '%s\n' "${known[@]}" | grep -qx -- "$t"; then
        echo "fuzz.sh: no target $t (known: ${known[*]})" >&2
        exit 2
    fi
done
each=$(( seconds / ${#targets[@]} ))
(( each > 0 )) || each=1

seed_webhooks() {
    local corpus=$1
    cp "$repo"/tests/fixtures/scenario-single/webhooks/0*.json "$repo"/tests/fixtures/bench/*.json "$corpus"/
    # All six scenario notifications in one input: open, join, resolve across deliveries. The
    # first byte picks the reopen window, so it is JSON whitespace ("\n": 30 minutes) to keep
    # the first notification decodable. For store, the same with what people and the
    # reconciler do in between ("!" scripts: ack, note, resolve as lost, resolve by hand).
    python3 - "$repo/tests/fixtures/scenario-single/webhooks" "$corpus" <<'PY'
import pathlib, sys
parts = [p.read_bytes() for p in sorted(pathlib.Path(sys.argv[1]).glob("0*.json"))]
corpus = pathlib.Path(sys.argv[2])
(corpus / "scenario-all").write_bytes(b"\n" + b"\xff".join(parts))
if corpus.name == "store":
    script = b"!" + bytes([0, 0, 1, 1, 3, 0, 2, 0])
    mixed = parts[:2] + [script] + parts[2:4] + [script] + parts[4:]
    (corpus / "scenario-actions").write_bytes(b"\n" + b"\xff".join(mixed))
PY
}

# One build for every target: `cargo fuzz run` below then finds it up to date.
cargo +nightly fuzz build

failed=()
for t in "${targets[@]}"; do
    corpus=$repo/fuzz/corpus/$t
    mkdir -p "$corpus"
    case $t in
        webhook | store) seed_webhooks "$corpus" ;;
    esac
    echo "fuzz.sh: $t for ${each}s" >&2
    # -rss_limit_mb bounds memory per input: a leak or blow-up counts as a crash.
    if ! cargo +nightly fuzz run "$t" "$corpus" -- \
        -max_total_time="$each" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1; then
        failed+=("$t")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: CRASH in ${failed[*]}; reproducers under fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]} (${each}s each)" >&2
