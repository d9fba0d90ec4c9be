#!/usr/bin/env bash
# Runs the project's benchmarks and prints their tables. Each section is one
# benchmark; add new ones as further sections below.
#
#   scripts/bench.sh            # every section
#   scripts/bench.sh engine     # only the named sections
#
# Scale with BENCH_SECTORS / BENCH_IO_SECTORS / BENCH_DIR (see benches/engine.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

SECTIONS=("$@")

# true when the section was asked for, or when none was named
want() {
    [[ ${#SECTIONS[@]} -eq 0 || " ${SECTIONS[*]} " == *" $1 "* ]]
}

section() {
    printf '\n== %s ==\n\n' "$1"
}

# --- engine: sector root, durable write, read, metadata at 1M sectors -------
if want engine; then
    section "engine (benches/engine.rs)"
    cargo bench --quiet --bench engine
fi
