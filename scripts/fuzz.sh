#!/usr/bin/env bash
# Runs one fuzz target for a while (nightly Rust and cargo-fuzz, installed when missing):
#
#   scripts/fuzz.sh envelope_decode 300     the envelope decoder, 5 minutes
#   scripts/fuzz.sh key_injective 300       the key encoder: equal keys iff equal values
#   scripts/fuzz.sh attribute_parse 300     the attribute parser: no panic on any tokens
#
# Bounded property-test versions of the three run in the test suite. Findings land in
# fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target="${1:?usage: scripts/fuzz.sh TARGET [SECONDS]}"
seconds="${2:-60}"
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo +nightly fuzz run "$target" -- -max_total_time="$seconds"
