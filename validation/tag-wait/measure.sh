#!/usr/bin/env bash
# Real fio on a block device with fewer tags than iodepth: a loop device (direct I/O onto a file
# on this machine's disk) whose request queue is cut to 4 tags (scheduler none, nr_requests=4).
# Reads only (--readonly); the loop device and its backing file are removed on every exit.
# Needs root and losetup. Usage: validation/tag-wait/measure.sh [OUTDIR]   (default: here)
set -euo pipefail
out=${1:-$(dirname "$0")}
img=$(mktemp /var/tmp/vsim-tagwait-XXXXXX.img)
dev=""
cleanup() { [ -n "$dev" ] && losetup -d "$dev"; rm -f "$img"; }
trap cleanup EXIT
dd if=/dev/urandom of="$img" bs=1M count=256 status=none
dev=$(losetup -f --show --direct-io=on "$img")
q=/sys/block/${dev#/dev/}/queue
echo none > "$q/scheduler"
echo 4 > "$q/nr_requests"
echo "# $(date -u +%FT%TZ) $(uname -r) $(fio --version) $dev nr_requests=$(cat "$q/nr_requests")" \
  > "$out/provenance.txt"
for qd in 1 2 4 8 16 32; do
  fio --name=tagwait --filename="$dev" --readonly --rw=randread --bs=4k --ioengine=libaio \
      --direct=1 --iodepth="$qd" --runtime=3 --time_based --randrepeat=1 \
      --output-format=json > "$out/qd$qd.json"
done
