#!/usr/bin/env bash
# Runs the benchmarks (release build). Installs redis-server when missing, like scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y redis-server
fi
cd benches
cargo run --release
