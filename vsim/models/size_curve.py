"""Disk service as a function of block size: measured sizes exactly, a monotone curve elsewhere."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vsim.models.dists import Dist, blend

__all__ = ["SizeCurve", "isotonic", "per_byte_slope"]


def isotonic(y: Sequence[float]) -> list[float]:
    """Pool-adjacent-violators: the non-decreasing sequence nearest to y in least squares (equal
    weights). A y that is already non-decreasing comes back unchanged, value for value."""
    blocks: list[tuple[float, int]] = []  # (sum, count) of each pooled run
    for v in y:
        s, n = float(v), 1
        while blocks and blocks[-1][0] / blocks[-1][1] > s / n:
            ps, pn = blocks.pop()
            s, n = ps + s, pn + n
        blocks.append((s, n))
    return [s / n for s, n in blocks for _ in range(n)]


def per_byte_slope(sizes: Sequence[int], means: Sequence[float]) -> float:
    """The least-squares slope (us per byte) of the means over the sizes, at least 0; 0 for
    fewer than two sizes."""
    if len(sizes) < 2:
        return 0.0
    mx = sum(sizes) / len(sizes)
    my = sum(means) / len(means)
    sxy = sum((x - mx) * (y - my) for x, y in zip(sizes, means, strict=True))
    sxx = sum((x - mx) ** 2 for x in sizes)
    return max(0.0, sxy / sxx)


@dataclass(frozen=True)
class SizeCurve:
    """The service-time distribution of one direction at any block size, from the sizes measured.

    - At a measured size: its measured distribution, exactly.
    - Elsewhere, the curve runs through the measured sizes' *envelope*: each size's quantile
      function scaled so that its mean is the pool-adjacent-violators (isotonic) fit of the
      measured means. Measured means can fall with bs by noise (a 512-byte read measured slower
      than a 4-KiB one); the envelope pools such sizes, so the curve's mean never falls as bs
      grows. Means that already rise are kept, and so is every envelope equal to its measured
      distribution.
    - Between two measured sizes: the neighbours' envelope quantile functions interpolated
      linearly in bs (dists.blend: exact on the union of their levels).
    - Above the largest size: its envelope shifted by `slope_us_per_byte` x (bs - largest), the
      non-negative least-squares slope of the measured means over the measured sizes (0 with
      one size). Below the smallest: the smallest size's envelope. Both are `extrapolated`.

    Every distribution off the measured sizes is empirical, so its draw is one uniform per
    request from the disk's stream, as a measured empirical distribution's is.
    """

    sizes: tuple[int, ...]
    measured: tuple[Dist, ...]
    envelope: tuple[Dist, ...]
    slope_us_per_byte: float

    @classmethod
    def fit(cls, measured: Mapping[int, Dist]) -> SizeCurve:
        """The curve through distributions measured at block sizes (bytes -> Dist)."""
        if not measured:
            raise ValueError("SizeCurve.fit: no measured sizes")
        sizes = tuple(sorted(measured))
        dists = tuple(measured[s] for s in sizes)
        shapes = [d.quantile_function() for d in dists]
        means = [q.mean for q in shapes]
        envelope = []
        for q, m, e in zip(shapes, means, isotonic(means), strict=True):
            if e == m:
                envelope.append(q)
            elif m > 0:
                envelope.append(q.scaled(e / m))
            else:  # all-zero service pooled with a later size: move it up instead
                envelope.append(q.shifted(e - m))
        return cls(sizes, dists, tuple(envelope), per_byte_slope(sizes, means))

    def extrapolated(self, bs: int) -> bool:
        """True when bs lies below the smallest measured size or above the largest."""
        return bs < self.sizes[0] or bs > self.sizes[-1]

    def at(self, bs: int) -> Dist:
        """The service-time distribution at block size bs."""
        s = self.sizes
        i = bisect.bisect_left(s, bs)
        if i < len(s) and s[i] == bs:
            return self.measured[i]
        if i == 0:
            return self.envelope[0]
        if i == len(s):
            delta = self.slope_us_per_byte * (bs - s[-1])
            return self.envelope[-1].shifted(delta) if delta else self.envelope[-1]
        t = (bs - s[i - 1]) / (s[i] - s[i - 1])
        return blend(self.envelope[i - 1], self.envelope[i], t)

    def describe(self) -> str:
        """The measured sizes, as `bs 512-4096` (or `bs 4096` for one size)."""
        lo, hi = self.sizes[0], self.sizes[-1]
        return f"bs {lo}" if lo == hi else f"bs {lo}-{hi}"
