"""Measurement on the real path: campaigns, the real-fio baseline, microbenchmarks, datasets."""

from vsim.measure.baseline import fio_command, fio_error, fio_rows, fio_version, measure_fio
from vsim.measure.campaign import (
    Campaign,
    head,
    measure,
    measure_microbench,
    provenance,
    record_fio_json,
    run_name,
    summarise,
)
from vsim.measure.dataset import MeasuredRun, MeasuredSet, load_measured
from vsim.measure.layout import check_dataset

__all__ = [
    "Campaign",
    "MeasuredRun",
    "MeasuredSet",
    "check_dataset",
    "fio_command",
    "fio_error",
    "fio_rows",
    "fio_version",
    "head",
    "load_measured",
    "measure",
    "measure_fio",
    "measure_microbench",
    "provenance",
    "record_fio_json",
    "run_name",
    "summarise",
]
