"""The distributed path: a batch job's partitions on a Dask cluster, chosen by configuration (docs/scale.md).

`settings.compute` is "local" (the default: this process and the job's own worker processes) or "dask". With
"dask", `client(settings)` connects to `settings.dask_scheduler`: an address (`tcp://host:8786`, a scheduler that
dask-kubernetes, dask-gateway, YARN or `dask scheduler` runs) or `local:N`, a `distributed.LocalCluster` of N worker
processes started here for the job's duration. The jobs take the client and send their partitions to it:

- training (`training.dask_train`): Optuna trials spread over the workers on one study (the PostgreSQL study, or
  `optuna_integration.DaskStorage` around the local SQLite one), the recipe's boosters fitted by `xgboost.dask`;
- the simulator's chunks (`nextbest.simulator.world`), each written by a worker into the world's staging folder;
- the feature pipeline's customer chunks (`feature_repo.pipeline.build_feature_tables`), one DuckDB per task;
- the campaign's scoring of the base (`nextbest.jobs.campaign`), each worker with its own decision engine
  (`EnginePool`).

Nothing here schedules work itself: Dask does (`Client.submit`, `Client.gather`, worker plugins). The client is
created with `set_as_default=False`, so libraries that run dask internally (Feast's file offline store) keep their
own threaded scheduler unless a job asks otherwise. A job inside a job (the demo trains after it simulates) reuses
the client already open in this process, and tests attach their own cluster with `attach(client)`.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nextbest.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

_LOCAL = re.compile(r"^local:(\d+)$")
_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|inproc|ucx)://\S+$")
_ACTIVE: list[Client] = []  # clients entered in this process (innermost last)


@dataclass(frozen=True)
class Scheduler:
    """A parsed `dask_scheduler` setting: an address to connect to, or a number of local worker processes."""

    address: str | None = None
    local_workers: int | None = None


def parse_scheduler(value: str) -> Scheduler:
    """`local:N` (N >= 1) or `tcp://host:port` (tls, ws, wss, inproc, ucx too); anything else is a ValueError."""
    text = value.strip()
    local = _LOCAL.match(text)
    if local:
        n = int(local.group(1))
        if n < 1:
            raise ValueError(f"local:N needs N >= 1, got {value!r}")
        return Scheduler(local_workers=n)
    if _ADDRESS.match(text):
        return Scheduler(address=text)
    raise ValueError(f"{value!r} is neither local:N nor a scheduler address such as tcp://host:8786")


def enabled(settings: Settings) -> bool:
    """True when the settings send batch partitions to Dask."""
    return settings.compute == "dask"


def current() -> Client | None:
    """The innermost client entered in this process (`client` or `attach`), else None."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextmanager
def attach(existing: Client) -> Iterator[Client]:
    """Make `existing` the client every `client(settings)` in this block yields (tests, notebooks); not closed."""
    _ACTIVE.append(existing)
    try:
        yield existing
    finally:
        _ACTIVE.remove(existing)


@contextmanager
def client(settings: Settings) -> Iterator[Client | None]:
    """None with `compute: local`; with `compute: dask`, a client on the configured scheduler (a LocalCluster of
    N processes for `local:N`, closed at the end), or the client already open in this process."""
    if not enabled(settings):
        yield None
        return
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    spec = parse_scheduler(settings.dask_scheduler)
    opened, cluster = _connect(spec, settings.dask_scheduler)
    _ACTIVE.append(opened)
    try:
        yield opened
    finally:
        _ACTIVE.remove(opened)
        opened.close()
        if cluster is not None:
            cluster.close()


def _connect(spec: Scheduler, setting: str) -> tuple[Client, Any]:
    from distributed import Client, LocalCluster

    if spec.local_workers is not None:
        cluster = LocalCluster(
            n_workers=spec.local_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        logger.info("Dask: a LocalCluster of %d worker processes at %s", spec.local_workers, cluster.scheduler_address)
        return Client(cluster, set_as_default=False), cluster
    try:
        connected = Client(spec.address, timeout="20s", set_as_default=False)
    except OSError as exc:
        raise ConfigError(f"dask_scheduler: cannot reach {setting} ({exc}); set NEXTBEST_DASK_SCHEDULER") from None
    logger.info("Dask: connected to %s (%d workers)", spec.address, n_workers(connected))
    return connected, None


def n_workers(dask: Client) -> int:
    """Workers the scheduler knows now."""
    return len(dask.scheduler_info(n_workers=-1).get("workers", {}))


def is_local(dask: Client) -> bool:
    """True when the cluster's scheduler runs in this process (a LocalCluster): its workers share this machine's
    files (a SQLite study, the world's staging folder)."""
    from distributed import LocalCluster

    return isinstance(getattr(dask, "cluster", None), LocalCluster)


def map_partitions(
    dask: Client,
    fn: Callable[..., Any],
    items: Sequence[Any],
    *common: Any,
    on_done: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """`fn(item, *common)` for every item on the cluster's workers, results in the items' order.

    The `common` arguments are sent to every worker once (`scatter(broadcast=True)`), not once per item;
    `on_done(i, result)` is called here as item i finishes (in finishing order). A failed item re-raises its
    worker's exception here."""
    from distributed import as_completed

    shared = [dask.scatter(value, broadcast=True, hash=False) for value in common]
    futures = [dask.submit(fn, item, *shared, pure=False) for item in items]
    position = {f.key: i for i, f in enumerate(futures)}
    try:
        for done in as_completed(futures, loop=dask.loop):
            result = done.result()  # raises the first failure now, not after every other item
            if on_done is not None:
                on_done(position[done.key], result)
        return dask.gather(futures)
    finally:
        for f in futures:
            f.cancel()
        for s in shared:
            s.release()


# -------------------------------------------------------------------- one resource per worker (campaign engines)


def _with_resource(name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    from distributed import get_worker

    plugin = get_worker().plugins[name]
    with plugin.lock:
        return fn(plugin.value, *args)


class ResourcePool:
    """`fn(resource, *task)` on the cluster's workers, each worker holding its own resource (`factory(*args)`,
    e.g. a decision engine on the project's decision log) for the pool's lifetime; results in task order, at most
    two tasks in flight per worker so this process's memory stays bounded. The same `map`/`close` as a process
    pool, so a job takes either."""

    def __init__(self, dask: Client, name: str, factory: Callable[..., Any], args: tuple[Any, ...]) -> None:
        from nextbest.dask_resource import WorkerResource

        self.dask = dask
        self.name: str | None = name
        self.size = max(1, n_workers(dask))
        dask.register_plugin(WorkerResource(factory, args), name=name)

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
        """fn(resource, *task) of every task, results in task order."""
        pending: deque[Any] = deque()
        for args in tasks:
            pending.append(self.dask.submit(_with_resource, self.name, fn, args, pure=False))
            if len(pending) >= 2 * self.size:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        """Tear the resources down on every worker (an engine flushes and closes its decision log); once."""
        if self.name is not None:
            name, self.name = self.name, None
            self.dask.unregister_worker_plugin(name)
