"""The simulated path's components: guest, virtqueue, syscall costs, CPUs, disk and backends."""

# The built-in disk models register by name (vsim.models.disk.DISK_MODELS) when imported.
from vsim.models import hdd, service  # noqa: F401

__all__: list[str] = []  # the modules are imported by name: vsim.models.guest, ...
