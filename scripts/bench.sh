#!/usr/bin/env bash
# Runs the benchmarks (release build): the wall-clock scenarios, then instruction counts per hit
# under callgrind. Installs redis-server and valgrind when missing, like scripts/test.sh.
#
#   scripts/bench.sh                         everything (about 5 minutes)
#   BENCH_TELEMETRY=1 scripts/bench.sh      with a fmt subscriber at INFO and a Prometheus recorder
#   BENCH_RTT_US=500 scripts/bench.sh        every client behind a proxy adding a 0.5 ms round trip
#                                            (BENCH_RTT_US=0: the proxy's own overhead)
#   BENCH_ONLY=hits,throughput scripts/bench.sh   some scenarios: hits, throughput, tagged, miss,
#                                            miss_proxy, stampede, invalidation, breaker, l1,
#                                            l1_throughput, l1_lag, payloads, codecs,
#                                            instructions
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
    SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "$@"
}
command -v redis-server >/dev/null 2>&1 || install redis-server

wants() { [ -z "${BENCH_ONLY:-}" ] || [[ ",${BENCH_ONLY// /}," == *",$1,"* ]]; }

cd benches
cargo build --release --bins
only_instructions=false
[ "${BENCH_ONLY:-}" = "instructions" ] && only_instructions=true
if ! $only_instructions; then
    target/release/redis-cached-benches
fi

if wants instructions; then
    command -v valgrind >/dev/null 2>&1 || install valgrind
    # Instructions of N hits, for two N: the difference per extra hit is the cost of one hit,
    # with start-up and warm-up cancelled out. Callgrind counts instructions, not time, but a
    # poll that finds the socket not yet readable costs some, so counts move by a few hundred
    # per hit between runs; each figure is the median of three.
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/hitloop "$1" "$2" 2>&1 \
            | sed -n 's/.*Collected : //p'
    }
    per_hit() {
        local small big runs=()
        for _ in 1 2 3; do
            small=$(count "$1" 1000)
            big=$(count "$1" 3000)
            runs+=($(( (big - small) / 2000 )))
        done
        printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p
    }
    echo
    echo "| contender (one hit, current-thread runtime) | instructions | vs its floor |"
    echo "|---|---|---|"
    floor=""
    for c in raw-get redis-cached cached-crate raw-mget3 redis-cached-tag1 moka embedded moka-get l1; do
        n=$(per_hit "$c")
        case "$c" in
            raw-get | raw-mget3 | moka | moka-get) floor=$n; vs="(floor)" ;;
            *) vs="+$(( n - floor )) ($(awk "BEGIN { printf \"%.2f\", $n / $floor }")x)" ;;
        esac
        echo "| $c | $n | $vs |"
    done
fi
