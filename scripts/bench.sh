#!/usr/bin/env bash
# Runs the project's benchmarks and prints their tables. Each section is one
# benchmark; add new ones as further sections below.
#
#   scripts/bench.sh            # every section
#   scripts/bench.sh engine     # only the named sections
#
# Sections: engine, mount, cache (the mount section's comparison with
# passthrough_ll cache=always, alone), jobs, import, copies, volumes, aggregates
# (BENCH_AGG_SECTORS / BENCH_AGG_CONTRACTS / BENCH_AGG_ENTRIES /
# BENCH_AGG_PASS_ENTRIES, benches/aggregates.rs), tiers
# (scripts/bench_tiers.sh: BENCH_TIER_SECTORS). Scale with BENCH_SECTORS / BENCH_IO_SECTORS
# (benches/engine.rs), BENCH_MOUNT_SECTORS / BENCH_MOUNT_WRITE_SECTORS /
# BENCH_LIST_SECTORS / BENCH_MOUNT_PASSES (benches/mount.rs), BENCH_SHRINK_SECTORS /
# BENCH_SHRINK_ROUNDS (benches/jobs.rs), BENCH_IMPORT_SECTORS / BENCH_IMPORT_CONTRACTS /
# BENCH_VERIFY_SECTORS (benches/import.rs), BENCH_REDECLARE_SECTORS /
# BENCH_BACKUP_SECTORS (benches/volumes.rs), and BENCH_DIR (where every store is
# made). Installs what it needs when it is missing (as root, through
# apt-get): libfuse3-dev and pkg-config, to build libfuse's passthrough_ll
# example, the FUSE yardstick of the mount section.
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

# Installs Debian packages when running as root; false when that cannot be.
install_pkgs() {
    [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
    echo "installing $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
    }
}

# Builds libfuse's passthrough_ll example into $1 (a directory). Prints the
# binary's path, or on failure the reason, and returns non-zero.
build_passthrough_ll() {
    local out=$1 need=()
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    pkg-config --exists fuse3 2>/dev/null || need+=(libfuse3-dev)
    command -v gcc >/dev/null 2>&1 || need+=(gcc)
    if [[ ${#need[@]} -gt 0 ]] && ! install_pkgs "${need[@]}"; then
        echo "${need[*]} missing and not installable (not root, or apt-get failed)"
        return 1
    fi
    local src=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
    if [[ ! -f $src ]]; then
        # another Debian release may ship it gzipped or elsewhere
        src=$(dpkg -L libfuse3-dev 2>/dev/null | grep -E '/passthrough_ll\.c(\.gz)?$' | head -n1)
        if [[ -z $src ]]; then
            echo "libfuse3-dev ships no passthrough_ll.c example"
            return 1
        fi
    fi
    local dir
    dir=$(dirname "$src")
    if [[ $src == *.gz ]]; then
        gunzip -c "$src" >"$out/passthrough_ll.c"
        src=$out/passthrough_ll.c
    fi
    # shellcheck disable=SC2046 # pkg-config's flags are meant to split
    if ! gcc -O2 -I"$dir" "$src" $(pkg-config fuse3 --cflags --libs) \
        -o "$out/passthrough_ll" 2>"$out/gcc.log"; then
        echo "gcc failed: $(head -c 300 "$out/gcc.log" | tr '\n' ' ')"
        return 1
    fi
    echo "$out/passthrough_ll"
}

# Builds passthrough_ll into a temporary directory and exports where it is
# (or why there is none) for benches/mount.rs.
passthrough_for_bench() {
    pt_dir=$(mktemp -d)
    trap 'rm -rf "$pt_dir"' EXIT
    if built=$(build_passthrough_ll "$pt_dir"); then
        export BENCH_PASSTHROUGH_LL=$built
        unset BENCH_PASSTHROUGH_LL_MISSING
    else
        unset BENCH_PASSTHROUGH_LL
        export BENCH_PASSTHROUGH_LL_MISSING="passthrough_ll not built: $built"
    fi
}

# --- mount: reads, writes, ls and stat through a real mount (issue 3) --------
if want mount; then
    section "mount (benches/mount.rs)"
    if [[ ! -e /dev/fuse ]]; then
        echo "/dev/fuse is missing: nothing can be mounted on this machine" >&2
        exit 1
    fi
    if [[ $(id -u) != 0 ]] && ! command -v fusermount3 >/dev/null 2>&1; then
        echo "not root and no fusermount3 (package fuse3): cannot mount" >&2
        exit 1
    fi
    passthrough_for_bench
    cargo bench --quiet --bench mount
fi

# --- cache: the kernel's caches beside passthrough_ll cache=always (issue 20)
# (also the last rows of the mount section; this runs them alone)
if [[ " ${SECTIONS[*]} " == *" cache "* && " ${SECTIONS[*]} " != *" mount "* ]]; then
    section "cache (benches/mount.rs, BENCH_MOUNT_PART=cache)"
    passthrough_for_bench
    BENCH_MOUNT_PART=cache cargo bench --quiet --bench mount
fi

# --- copies: writes with two copies, the repair, a fallback read (issue 15)
if want copies; then
    section "copies (benches/copies.rs)"
    cargo bench --quiet --bench copies
fi

# --- jobs: shrink (issue 4) and check (issue 5) speed, in-process ------------
if want jobs; then
    section "jobs (benches/jobs.rs)"
    cargo bench --quiet --bench jobs
fi

# --- import: hostd import of 1M sectors / 10k contracts, --verify (issue 21)
if want import; then
    section "import (benches/import.rs)"
    cargo bench --quiet --bench import
fi

# --- volumes: redeclare, metadata backup, recover (issue 16) ------------------
if want volumes; then
    section "volumes (benches/volumes.rs)"
    cargo bench --quiet --bench volumes
fi

# --- aggregates: df, /status, getfattr, sectorfs contracts, a revision's
# cost and the background pass (issue 18)
if want aggregates; then
    section "aggregates (benches/aggregates.rs)"
    cargo bench --quiet --bench aggregates
fi

# --- tiers: cold reads, uploads and cache reads beside yardsticks (issue 17)
if want tiers; then
    section "tiers (scripts/bench_tiers.sh)"
    scripts/bench_tiers.sh
fi
