"""A Dask worker plugin holding one object per worker (`nextbest.distributed.ResourcePool`): built by
`factory(*args)` when the worker takes the plugin, closed when the plugin is removed (or the worker stops)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class WorkerResource(WorkerPlugin):
    """One `factory(*args)` per worker; `lock` keeps the tasks that use it one at a time (a worker may run
    several threads, a decision engine serves one batch at a time)."""

    def __init__(self, factory: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.factory, self.args = factory, args
        self.value: Any = None
        self.lock: threading.Lock | None = None

    def setup(self, worker: Any) -> None:
        self.lock = threading.Lock()
        self.value = self.factory(*self.args)

    def teardown(self, worker: Any) -> None:
        close = getattr(self.value, "close", None)
        if close is not None:
            close()
        self.value = None
