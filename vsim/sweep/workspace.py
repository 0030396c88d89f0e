"""Sweep workspaces: one atomically written file per finished point, so a sweep can resume."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vsim.engine import stable_fields
from vsim.errors import ConfigError
from vsim.outputs import check_dir, remove_stale_tmp, write_atomic
from vsim.scenario import Scenario

__all__ = [
    "POINTS",
    "Workspace",
    "point_id",
]

POINTS = "points"


def point_id(scenario: Scenario, seed: int, options: dict[str, Any], profile_digest: str) -> str:
    """A stable name for a point: a hash of everything its result depends on."""
    doc = {
        "scenario": {**asdict(scenario), "workload": stable_fields(scenario.workload)},
        "seed": seed,
        "options": options,
        "profile": profile_digest,
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _checksum(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


class Workspace:
    """A sweep's output directory: points/<id>.json per finished point, results.csv at the end.

    Nothing is created before the first point finishes, so a sweep that fails at once leaves
    no stub directory; temporary files of killed sweeps are removed when it opens.
    """

    def __init__(self, root: str | Path, *, resume: bool) -> None:
        self.root = Path(root)
        self.dir = self.root / POINTS
        check_dir(self.root)
        if self.dir.is_dir():
            remove_stale_tmp(self.dir)
            if not resume and any(self.dir.glob("*.json")):
                raise ConfigError(
                    f"out {root} holds points of an earlier sweep: resume=True runs only the "
                    "missing ones; or choose another"
                )

    def load(self, pid: str) -> list[dict[str, Any]] | None:
        """The rows of a finished point, or None when missing, partial or corrupt."""
        path = self.dir / f"{pid}.json"
        try:
            doc = json.loads(path.read_text())
            rows = doc["rows"]
            if doc["id"] != pid or doc["sha256"] != _checksum(rows):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return list(rows)

    def save(self, pid: str, rows: list[dict[str, Any]]) -> None:
        """Write a finished point atomically (temporary file, fsync, rename)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"out {self.root}: cannot create ({e.strerror})") from None
        text = json.dumps({"id": pid, "sha256": _checksum(rows), "rows": rows})
        write_atomic(self.dir / f"{pid}.json", text)
