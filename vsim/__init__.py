"""vsim: a deterministic discrete-event model of virtualized block I/O (virtio-blk vs vhost-blk)."""

from vsim.engine import simulate
from vsim.errors import ConfigError, ProfileError, VsimError
from vsim.profile import Profile, load_profile
from vsim.results import Result
from vsim.scenario import DESIGNS, Design, Scenario, Workload, design
from vsim.sweep import SweepResult, sweep

__version__ = "0.1.0"
__all__ = [
    "DESIGNS",
    "ConfigError",
    "Design",
    "Profile",
    "ProfileError",
    "Result",
    "Scenario",
    "SweepResult",
    "VsimError",
    "Workload",
    "design",
    "load_profile",
    "simulate",
    "sweep",
]
