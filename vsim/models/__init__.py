"""The simulated path's components: guest, virtqueue, syscall costs, CPUs, disk and backends."""

# First, before any submodule: the compiled (mypyc) or the pure-Python build of the hot modules
# (vsim.models.build: a stale build runs as pure Python, with a StaleBuildWarning).
from vsim.models.build import BUILD  # noqa: F401

# isort: split
# The built-in disk models register by name (vsim.models.disk.DISK_MODELS) when imported.
from vsim.models import hdd, service  # noqa: F401

__all__: list[str] = []  # the modules are imported by name: vsim.models.guest, ...
