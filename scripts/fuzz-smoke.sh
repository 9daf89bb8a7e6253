#!/bin/sh
# CI smoke run of every cargo-fuzz target in fuzz/: builds them (AddressSanitizer, through
# RUSTC_BOOTSTRAP on the stable toolchain), generates the seed corpora, runs each target for
# FUZZ_SECONDS (default 20) and fails on the first crash, leak or timeout it finds.
# Needs cargo-fuzz (`bash scripts/install-deps.sh fuzz`).
set -eu
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1
cargo fuzz build
./seed.sh
status=0
for t in $(cargo fuzz list); do
    mkdir -p "corpus/$t"
    echo "fuzz-smoke: $t for ${SECONDS_EACH}s"
    if ! cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" \
        -max_len=1048576 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"/tmp/fuzz-smoke-$t.log" 2>&1; then
        echo "fuzz-smoke: $t FAILED (log: /tmp/fuzz-smoke-$t.log; inputs in fuzz/artifacts/$t/)"
        tail -40 "/tmp/fuzz-smoke-$t.log"
        status=1
    fi
done
exit $status
