"""The cost table: named operations priced by the profile, each drawn from its own stream."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vsim.models.dists import Sampler, sampler
from vsim.profile import GUEST_OPS, HOST_OPS, OPTIONAL_OPS, Profile

RngFor = Callable[[str], np.random.Generator]


class Costs:
    """Samplers of every operation cost for one backend context ("user" or "kernel").

    Attributes are named after the operations (see vsim.profile.COST_DOCS); each is a callable
    returning microseconds.
    """

    def __init__(self, profile: Profile, context: str, rng_for: RngFor) -> None:
        self.context = context
        for op in GUEST_OPS + OPTIONAL_OPS:
            setattr(self, op, sampler(profile.cost(op, "guest"), rng_for(f"cost.{op}")))
        loop = profile.cost("guest_loop", "guest")
        # Whether fio's loop costs anything: without it the reap runs straight into the next
        # submission (one timeout for both).
        self.has_loop = not (loop.kind == "fixed" and loop.mean_us == 0.0)
        for op in HOST_OPS:
            setattr(self, op, sampler(profile.cost(op, context), rng_for(f"cost.{op}.{context}")))

    guest_submit: Sampler
    kick: Sampler
    guest_irq: Sampler
    guest_complete: Sampler
    guest_loop: Sampler
    wait_return: Sampler
    notify_read: Sampler
    pop: Sampler
    submit_call: Sampler
    submit_iocb: Sampler
    reap_call: Sampler
    reap_event: Sampler
    push: Sampler
    signal: Sampler
