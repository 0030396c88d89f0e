#!/bin/sh
# Open-loop test set: fio's rate_iops (poisson, and linear at one rate) at iodepth 8, 4k
# randread, both seed designs, 5 interleaved repeats of 2 s per point, on the reference backend.
# One dataset per rate (a measured point is keyed without its rate). Run on a quiet machine.
set -e
cd "$(dirname "$0")"
for r in 2000 5000 8000 11000 14000 20000; do
  vsim measure --design virtio-blk,vhost-blk --rw randread --bs 4k --iodepth 8 \
    --rate-iops "$r" --rate-process poisson --repeat 5 --runtime 2 --trace-ios 0 \
    --dir "${SCRATCH:-/tmp}" --out "poisson-$r"
done
vsim measure --design virtio-blk,vhost-blk --rw randread --bs 4k --iodepth 8 \
  --rate-iops 8000 --rate-process linear --repeat 5 --runtime 2 --trace-ios 0 \
  --dir "${SCRATCH:-/tmp}" --out linear-8000
# Predictions (profile local-s9, calibrated in the same session from closed-loop runs only):
for d in poisson-* linear-*; do
  vsim validate --profile ../../calibration/profiles/local-s9.toml --measured "$d" \
    --report "$d/report" --ios 20000 > /dev/null
done
python summary.py > summary.md
