#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs redis-server (and redis-cli, which
# the cluster tests use), openssl and PostgreSQL when missing, then runs every test of the
# workspace and of the example service (examples/service, a workspace of its own).
# The tests start their own Redis and PostgreSQL servers on free loopback ports; they never
# use 6379 or 5432.
set -euo pipefail
cd "$(dirname "$0")/.."

# openssl makes the TLS tests' certificates at test time.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 \
    || ! command -v openssl >/dev/null 2>&1; then
    echo "redis-server or openssl not found; installing them with apt-get" >&2
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: apt-get is not available; install redis-server (7.x) yourself and rerun" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y redis-server openssl
fi

# The example service's tests run initdb/pg_ctl (postgresql's server binaries) themselves.
have_postgres() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if ! have_postgres; then
    echo "PostgreSQL's server binaries not found; installing postgresql with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y postgresql
fi

cargo test --workspace "$@"
# One target directory for both workspaces: the service reuses the library's build.
CARGO_TARGET_DIR="$PWD/target" cargo test --manifest-path examples/service/Cargo.toml "$@"
