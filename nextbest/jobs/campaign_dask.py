"""The campaign's scoring of the base on a Dask cluster (`compute: dask`, nextbest/distributed.py).

`workers_for(project, settings, chunk)` is the campaign job's worker pool when the settings say Dask: each Dask
worker opens the project's decision engine once (`distributed.ResourcePool`, a worker plugin) with its own writer
to the project's decision log, as a service replica does, and decides the proposal and decision chunks sent to it;
the audience, the allocation under each channel's limits and the contact list stay in the job's process, so the
contact list does not depend on where the chunks were decided. The same `map`/`close` as the job's process pool.
On a real cluster the workers must reach what an engine reads and writes: the registry (an MLflow server), the
online store (Redis) and the decision log (PostgreSQL) -- not the embedded SQLite files of one machine.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from nextbest import distributed

if TYPE_CHECKING:
    from nextbest.project import Project
    from nextbest.settings import Settings
    from serving.engine import DecisionEngine

logger = logging.getLogger(__name__)


def _on_engine(engine: DecisionEngine, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(engine, *args) on a worker; a chunk of real decisions is in the log before its result goes back."""
    from nextbest.jobs import campaign

    result = fn(engine, *args)
    if fn is campaign._decide_part:
        engine.decision_log.flush(timeout=600.0)
    return result


def _open_engine(project: Project, settings: Settings, chunk: int) -> DecisionEngine:
    from nextbest.jobs.campaign import open_engine

    return open_engine(project, settings, chunk)


class DaskWorkers:
    """The campaign's chunks decided on the Dask cluster's workers, one engine per worker."""

    def __init__(self, project: Project, settings: Settings, chunk: int) -> None:
        self._stack = ExitStack()
        dask = self._stack.enter_context(distributed.client(settings))
        assert dask is not None
        try:
            self._pool = distributed.ResourcePool(
                dask, f"nextbest-campaign-{uuid.uuid4().hex[:8]}", _open_engine, (project, settings, chunk)
            )
        except BaseException:
            self._stack.close()
            raise
        self.size = self._pool.size
        logger.info("campaign: chunks decided on %d Dask workers", self.size)

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
        """fn(engine, *task) of every task on the workers, results in task order."""
        return self._pool.map(_on_engine, ((fn, *args) for args in tasks))

    def close(self) -> None:
        """Close the workers' engines and the client (again: nothing; the job may close its pool twice)."""
        try:
            self._pool.close()
        finally:
            self._stack.close()


def workers_for(project: Project, settings: Settings, chunk: int) -> DaskWorkers | None:
    """The Dask pool when `settings.compute` is "dask", else None (the job's own `--workers` processes)."""
    return DaskWorkers(project, settings, chunk) if distributed.enabled(settings) else None
