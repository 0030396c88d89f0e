"""QEMU's adaptive polling rule (util/aio-posix.c adjust_polling_time), shared by the model's
threads and the reference backend's."""

from __future__ import annotations

__all__ = [
    "POLL_START_US",
    "adjust_poll_us",
]

# The first poll time after none ("start polling at 4 microseconds", adjust_polling_time).
POLL_START_US = 4.0


def adjust_poll_us(poll_us: float, block_us: float, max_us: float) -> float:
    """The next poll time (us) after a wait of `block_us` (from the start of the poll to the
    event, polling and blocking included) under the ceiling `max_us` (poll-max-ns / 1000),
    with QEMU's defaults poll-grow 0 (double) and poll-shrink 0 (reset): unchanged when the
    event came within the poll time; 0 when the wait passed the ceiling; else, when both are
    below the ceiling, 4 us from 0 or twice the poll time, capped at the ceiling."""
    if block_us <= poll_us:
        return poll_us
    if block_us > max_us:
        return 0.0
    if poll_us < max_us and block_us < max_us:
        return min(2 * poll_us if poll_us else POLL_START_US, max_us)
    return poll_us
