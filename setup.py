"""Optional mypyc compilation of the simulator's hot modules: VSIM_COMPILE=1 pip install ...

Everything else (metadata, dependencies) is in pyproject.toml. Without VSIM_COMPILE=1 vsim is
pure Python. Compiled, the same model code runs about twice as fast with identical results.
"""

import os

from setuptools import setup

# The modules every simulated event goes through. The kernel subclasses SimPy's Environment,
# which mypyc cannot compile, and dists.py's frozen dataclass must stay picklable across
# process pools: both stay interpreted.
HOT = [
    "vsim/models/backends.py",
    "vsim/models/cpu.py",
    "vsim/models/disk.py",
    "vsim/models/guest.py",
    "vsim/models/monitor.py",
    "vsim/models/polling.py",
    "vsim/models/queue.py",
    "vsim/models/syscalls.py",
    "vsim/models/virtqueue.py",
]

ext_modules = []
if os.environ.get("VSIM_COMPILE") == "1":
    from mypyc.build import mypycify

    # Type-check only what is compiled, without the project's strict settings: the isolated
    # build environment has mypy but not vsim's dependencies (their types are Any here).
    flags = ["--config-file", os.devnull, "--ignore-missing-imports", "--follow-imports=silent"]
    ext_modules = mypycify([*flags, *HOT], opt_level="3")

setup(ext_modules=ext_modules)
