"""The simulated path's components: guest, virtqueue, syscall costs, CPUs, disk and backends."""
