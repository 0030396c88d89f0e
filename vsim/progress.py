"""Progress bars (tqdm): the notebook widget in Jupyter, stderr on a terminal, else silent."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

__all__ = [
    "Progress",
    "interactive",
]


def interactive() -> bool:
    """True in a Jupyter kernel or when stderr is a terminal."""
    shell = sys.modules.get("IPython")
    if shell is not None:
        ip = shell.get_ipython()
        if ip is not None and type(ip).__name__ == "ZMQInteractiveShell":
            return True
    return sys.stderr.isatty()


class Progress:
    """A progress bar over n steps; call it with (done, total, label) after each step."""

    def __init__(self, total: int, desc: str, *, enabled: bool | None = None) -> None:
        self._bar: Any = None
        if enabled if enabled is not None else interactive():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is a dependency, but a bar is never worth a failure
                return
            self._bar = tqdm(
                total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True
            )

    def __call__(self, done: int, total: int, label: str) -> None:
        if self._bar is not None:
            if done < self._bar.n:  # a new phase counts from the start (vsim calibrate --measure)
                self._bar.reset(total=total)
            if total != self._bar.total:  # a bound that tightens (vsim measure --precision)
                self._bar.total = total
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix_str(label, refresh=True)

    def for_points(self, done: int, total: int, scenario: Any) -> None:
        """The callback of vsim.sweep.run_points."""
        w = scenario.workload
        self(done, total, f"{scenario.design.name} {w.rw} bs={w.bs} iodepth={w.iodepth}")

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
