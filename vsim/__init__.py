"""vsim: a deterministic discrete-event model of virtualized block I/O (virtio-blk vs vhost-blk)."""

# First: the compiled or the pure-Python build of the hot modules (vsim.models.build), before
# any of them (vsim.kernel among them) is imported.
import vsim.models  # noqa: F401  # isort: skip
from vsim.__version__ import __version__
from vsim.engine import simulate
from vsim.errors import ConfigError, ProfileError, VsimError
from vsim.profile import Profile, load_profile
from vsim.results import Result
from vsim.scenario import DESIGNS, Design, Scenario, Workload, design
from vsim.studies import Comparison, SearchResult, compare, compare_measured, search
from vsim.sweep import SweepResult, sweep

__all__ = [
    "DESIGNS",
    "Comparison",
    "ConfigError",
    "Design",
    "Profile",
    "ProfileError",
    "Result",
    "Scenario",
    "SearchResult",
    "SweepResult",
    "VsimError",
    "Workload",
    "__version__",
    "compare",
    "compare_measured",
    "design",
    "load_profile",
    "search",
    "simulate",
    "sweep",
]
