#!/usr/bin/env bash
# Runs the whole test suite: unit tests, engine and crash tests, and the
# integration tests that mount a real sectorfs. Installs what the tests
# need when it is missing (as root, through apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  need=()
  command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
  command -v getfattr >/dev/null 2>&1 || need+=(attr)
  command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
  command -v rsync >/dev/null 2>&1 || need+=(rsync)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
if [ ! -e /dev/fuse ]; then
  echo "/dev/fuse is missing: the mount tests cannot run on this machine" >&2
  exit 1
fi

cargo test -- --test-threads="${TEST_THREADS:-2}"
