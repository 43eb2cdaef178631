"""Measure how much wall time JAX spends tracing, lowering and compiling.

JAX reports those phases through ``jax.monitoring`` duration events; ``CompileTimer`` sums them
while it is active, so a run can record what share of its time was compilation.
"""

from __future__ import annotations

from jax import monitoring

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileTimer:
    """``with CompileTimer() as timer: ...``; then ``timer.seconds`` and ``timer.compilations``."""

    def __init__(self):
        self.seconds = 0.0
        self.compilations = 0

    def _listen(self, event: str, duration_secs: float, **_kwargs: str | int) -> None:
        if event in COMPILE_EVENTS:
            self.seconds += duration_secs
            if event == COMPILE_EVENTS[-1]:
                self.compilations += 1

    def __enter__(self) -> CompileTimer:
        monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        monitoring.unregister_event_duration_listener(self._listen)
