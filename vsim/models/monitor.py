"""Time-weighted level accumulators for utilisation and queue-length statistics."""

from __future__ import annotations

__all__ = [
    "Busy",
    "Level",
    "Registry",
]


class Level:
    """The time integral of a piecewise-constant level (busy 0/1, queue length, ...)."""

    __slots__ = ("_area", "_since", "_t0", "level", "name")

    def __init__(self, name: str, now: float = 0.0) -> None:
        self.name = name
        self.level = 0.0
        self._area = 0.0
        self._since = now
        self._t0 = now

    def set(self, level: float, now: float) -> None:
        """Change the level at time now."""
        self._area += self.level * (now - self._since)
        self._since = now
        self.level = level

    def add(self, delta: float, now: float) -> None:
        """Change the level by delta at time now."""
        self._area += self.level * (now - self._since)
        self._since = now
        self.level += delta

    def reset(self, now: float) -> None:
        """Forget the history before now (the end of the warm-up)."""
        self._area = 0.0
        self._since = now
        self._t0 = now

    def mean(self, now: float) -> float:
        """The time-average level from the last reset to now."""
        span = now - self._t0
        if span <= 0:
            return self.level
        return (self._area + self.level * (now - self._since)) / span


class Busy:
    """Busy time of a thread or CPU: cheaper than a Level for an on/off signal on the hot path.

    On the hot path callers switch it by setting `on` and `since` directly (no call): on at
    `since`, or off; elsewhere `start` and `stop` do the same.
    """

    __slots__ = ("_t0", "name", "on", "since", "total")

    def __init__(self, name: str, now: float = 0.0) -> None:
        self.name = name
        self.on = False
        self.since = now
        self.total = 0.0
        self._t0 = now

    def start(self, now: float) -> None:
        """Busy from now."""
        self.on = True
        self.since = now

    def stop(self, now: float) -> None:
        """Idle from now (adds the busy stretch that ends here)."""
        self.total += now - self.since
        self.on = False

    def reset(self, now: float) -> None:
        """Forget the history before now."""
        self.total = 0.0
        self._t0 = now
        if self.on:
            self.since = now

    def mean(self, now: float) -> float:
        """The busy fraction from the last reset to now."""
        span = now - self._t0
        busy = self.total + (now - self.since if self.on else 0.0)
        return busy / span if span > 0 else float(self.on)


class Registry:
    """All levels of one simulation, so the engine can reset and read them together."""

    def __init__(self) -> None:
        self.levels: dict[str, Level | Busy] = {}

    def level(self, name: str, now: float = 0.0) -> Level:
        """A new named level (names are unique: "cpu0.busy", "disk.queue", ...)."""
        lv = Level(name, now)
        self.levels[name] = lv
        return lv

    def busy(self, name: str, now: float = 0.0) -> Busy:
        """A new named busy-time accumulator."""
        b = Busy(name, now)
        self.levels[name] = b
        return b

    def reset(self, now: float) -> None:
        """Reset every level at the end of the warm-up."""
        for lv in self.levels.values():
            lv.reset(now)

    def means(self, now: float) -> dict[str, float]:
        """Every level's time average, by name."""
        return {name: lv.mean(now) for name, lv in self.levels.items()}
