#!/bin/sh
# Think-time test set: the job files here (fio's thinktime, thinktime_spin, thinktime_blocks)
# on the reference backend at iodepth 1 and 4, both seed designs, 5 interleaved repeats of 2 s;
# then the predictions from local-s9 (closed-loop calibration, same session). Quiet machine.
set -e
cd "$(dirname "$0")"
for j in think-200us think-1ms-spin; do
  vsim measure "$j.fio" --design virtio-blk,vhost-blk --iodepth 1,4 --repeat 5 --trace-ios 0 \
    --dir "${SCRATCH:-/tmp}" --out "$j"
done
for j in think-200us think-1ms-spin; do
  vsim validate --profile ../../calibration/profiles/local-s9.toml --measured "$j" \
    --report "$j/report" --ios 20000 > "$j/validate.txt"
done
