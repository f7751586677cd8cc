"""Running the twin: one warm world per seed, forked for every policy and the no-contact control, lived day by day.

Per seed (`run_seed`):
1. `warm_up`: a world of the config's customers lives `warmup_days` under the logging policy (the bank's past: its
   history fills the genome's 90-day windows), the genome (`DailyGenome`) following it day by day;
2. the cohort: every customer live at the end of the warm-up, with their relationship value (the policy's value at
   risk at that snapshot);
3. for the control and for each policy, a copy of the warm world and genome (`copy.deepcopy`: every copy shares the
   warm state and, by the world's common random numbers, every draw) lives `days` more days: the control under no
   contact, a policy through its engine (`EngineAgent`: one `decide_batch` per day, its own decision log under the
   run folder), each day's rows added to its genome; its `Ledger` records what happened to each customer.
Timings per step (world, genome, decisions, feedback) are kept with each ledger.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from nextbest.base import Frozen
from nextbest.twin.scorecard import CONTROL, Ledger

if TYPE_CHECKING:
    from nextbest.features.daily import DailyGenome
    from nextbest.policy import PolicyConfig
    from nextbest.project import Project
    from nextbest.settings import Settings
    from nextbest.simulator.stepper import DayReport, World
    from nextbest.twin.policies import TwinPolicy

logger = logging.getLogger(__name__)

#: progress callback: (what, done, total)
ProgressFn = Callable[[str, int, int], None]


class TwinConfig(Frozen):
    """What one twin run simulates: world size, warm-up and twin days, seeds, campaign slots, engine options."""

    customers: int = Field(3_000, gt=0)
    days: int = Field(90, gt=0)
    warmup_days: int = Field(90, ge=1)
    seeds: tuple[int, ...] = (1,)
    scheduled_rate: float = Field(0.07, gt=0.0, le=1.0)
    chunk_size: int = Field(25_000, gt=0)
    explain: bool = False
    keep_records: bool = False
    #: processes the policies of a seed run in (forked from the warm world; 1: one after the other)
    workers: int = Field(1, ge=1)


@dataclass
class Warm:
    """A seed's world at the end of its warm-up, with its genome and cohort."""

    seed: int
    world: World
    genome: DailyGenome
    cohort: np.ndarray
    relationship_value: np.ndarray
    last: DayReport
    seconds: float
    #: each cohort customer's age at the end of the warm-up (the fairness check's age bands)
    ages: np.ndarray | None = None


@dataclass
class SeedResult:
    """Every ledger of one seed (the control's first) and how long each step took."""

    seed: int
    ledgers: list[Ledger] = field(default_factory=list)
    warmup_seconds: float = 0.0


def warm_up(config: TwinConfig, seed: int, policy: PolicyConfig, progress: ProgressFn | None = None) -> Warm:
    """The seed's world lived `warmup_days` under the logging policy, its genome alongside."""
    from nextbest.features.daily import DailyGenome
    from nextbest.simulator import SimulationConfig
    from nextbest.simulator.policy import LoggingPolicy
    from nextbest.simulator.stepper import World

    t0 = time.perf_counter()
    sim = SimulationConfig.build(
        customers=config.customers, days=config.warmup_days + config.days, seed=seed, chunk_size=config.chunk_size
    )
    world = World(sim, scheduled_rate=config.scheduled_rate)
    genome = DailyGenome(world.initial_tables(), world.epoch)
    logging_policy = LoggingPolicy(world.table, seed=seed)
    report = None
    for d in range(config.warmup_days):
        report = world.step(logging_policy)
        genome.add_day(world.day_tables())
        if progress is not None:
            progress(f"seed {seed}: warm-up", d + 1, config.warmup_days)
    assert report is not None
    snapshot = genome.snapshot()
    cohort = snapshot["customer_id"].to_numpy(dtype=np.int64)
    value = relationship_values(snapshot, policy)
    ages = snapshot["age"].to_numpy(dtype=np.float64) if "age" in snapshot else None
    seconds = time.perf_counter() - t0
    logger.info(
        "seed %d: warm-up of %d days in %.1f s, %d customers live", seed, config.warmup_days, seconds, len(cohort)
    )
    return Warm(seed, world, genome, cohort, value, report, seconds, ages=ages)


def relationship_values(snapshot: Any, config: PolicyConfig) -> np.ndarray:
    """Each customer's value at risk under the decision policy (`customer_view`), from their snapshot row."""
    from nextbest.policy import customer_view

    names = list(config.value_at_risk_features)
    if not names:
        return np.full(len(snapshot), config.default_value_at_risk)
    rows = snapshot[["customer_id", *names, *config.profile.identity_features]].to_dict("records")
    return np.array([customer_view(r["customer_id"], r, config).value_at_risk for r in rows], dtype=np.float64)


def live_control(warm: Warm, days: int, catalogue: Any, progress: ProgressFn | None = None) -> Ledger:
    """The no-contact control: the same customers, never contacted."""
    from nextbest.simulator.policy import NoContactPolicy

    world = copy.deepcopy(warm.world)
    ledger = Ledger(CONTROL, warm.seed, warm.cohort, warm.relationship_value, catalogue, ages=warm.ages)
    t0 = time.perf_counter()
    policy = NoContactPolicy()
    for d in range(days):
        report = world.step(policy)
        ledger.add_day(report, world.day_tables(), np.empty(0, dtype=np.int64))
        if progress is not None:
            progress(f"seed {warm.seed}: {CONTROL}", d + 1, days)
    ledger.finish(world)
    ledger.seconds = {"world": time.perf_counter() - t0}
    return ledger


def live_policy(
    warm: Warm,
    policy: TwinPolicy,
    days: int,
    settings: Settings,
    project: Project,
    run_dir: Path,
    config: TwinConfig,
    progress: ProgressFn | None = None,
) -> Ledger:
    """One policy over the warm world's copy: its engine decides each day's points in one batch."""
    from nextbest.decision_log import DecisionLog
    from nextbest.twin.agent import EngineAgent
    from nextbest.twin.engine import TwinEngine

    world, genome = copy.deepcopy(warm.world), copy.deepcopy(warm.genome)
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"seed{warm.seed}-{policy.name}.db"
    path.unlink(missing_ok=True)
    log = DecisionLog(f"sqlite:///{path}", key_type=project.served.key_type)
    engine_settings = settings.model_copy(update={"home": run_dir / "home"})
    engine = TwinEngine(
        engine_settings, project, policy.policy, log, policy.models, explain=config.explain,
        keep_records=config.keep_records,
    )  # fmt: skip
    engine.start()
    agent = EngineAgent(world, genome, engine)
    agent.end_day(warm.last, {})
    ledger = Ledger(policy.name, warm.seed, warm.cohort, warm.relationship_value, engine.catalogue, ages=warm.ages)
    clock = _Clock()
    try:
        for d in range(days):
            _live_day(world, genome, agent, ledger, clock)
            if progress is not None:
                progress(f"seed {warm.seed}: {policy.label}", d + 1, days)
    finally:
        engine.close()
        genome.close()
    ledger.finish(world)
    # "world" includes the decisions (they are made inside the day); they are also counted apart
    ledger.seconds = {**clock.seconds, **agent.seconds}
    return ledger


@dataclass
class _Clock:
    seconds: dict[str, float] = field(default_factory=dict)
    _t: float = 0.0

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now


def _live_day(world: World, genome: DailyGenome, agent: Any, ledger: Ledger, clock: _Clock) -> None:
    """One day: the world steps (the agent decides inside), the genome and the log learn what happened."""
    clock.start()
    agent.begin_day()
    report = world.step(agent)
    clock.lap("world")
    tables = world.day_tables()
    clock.lap("tables")
    genome.add_day(tables)
    clock.lap("genome")
    agent.end_day(report, tables)
    clock.lap("feedback")
    ledger.add_day(report, tables, agent.asked.customer_id)
    if agent.asked.priced:
        ledger.add_prices(*(np.array(c) for c in zip(*agent.asked.priced, strict=True)))
    clock.lap("ledger")


def run_seed(
    config: TwinConfig,
    seed: int,
    policies: Sequence[TwinPolicy],
    settings: Settings,
    project: Project,
    run_dir: Path,
    progress: ProgressFn | None = None,
) -> SeedResult:
    """The control and every policy over one seed's warm world (see the module docstring); with `config.workers`
    > 1 the policies run in that many forked processes, each from the same warm state."""
    _serving, catalogue, project_policy = project.decisions()
    warm = warm_up(config, seed, project_policy, progress)
    warm.genome.close()  # a DuckDB connection is not carried into a copy (nor across a fork)
    result = SeedResult(seed, warmup_seconds=warm.seconds)
    tasks = [None, *policies]  # None: the control
    run = partial(_live_task, warm, config, settings, project, run_dir)
    if config.workers > 1 and "fork" in mp.get_all_start_methods():
        result.ledgers = _in_processes(run, tasks, config.workers, progress)
    else:
        result.ledgers = [run(task, progress) for task in tasks]
    for ledger in result.ledgers[1:]:
        logger.info("seed %d, %s: %s", seed, ledger.policy, {k: round(v, 1) for k, v in ledger.seconds.items()})
    return result


def _live_task(
    warm: Warm,
    config: TwinConfig,
    settings: Settings,
    project: Project,
    run_dir: Path,
    policy: TwinPolicy | None,
    progress: ProgressFn | None,
) -> Ledger:
    if policy is None:
        return live_control(warm, config.days, project.decisions()[1], progress)
    return live_policy(warm, policy, config.days, settings, project, run_dir, config, progress)


#: what forked workers run: set by the parent just before the pool forks (never pickled)
_FORKED: dict[str, Any] = {}


def _forked_task(index: int) -> Ledger:
    queue = _FORKED["queue"]

    def say(what: str, done: int, total: int) -> None:
        queue.put((what, done, total))

    return _FORKED["run"](_FORKED["tasks"][index], say)


def _in_processes(
    run: Callable[..., Ledger], tasks: list[Any], workers: int, progress: ProgressFn | None
) -> list[Ledger]:
    """Every task in `workers` forked processes (they inherit the warm state: nothing is pickled but the ledgers);
    their progress comes back through a queue."""
    from concurrent.futures import ProcessPoolExecutor, wait

    context = mp.get_context("fork")
    queue = context.SimpleQueue()
    _FORKED.update(run=run, tasks=tasks, queue=queue)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_forked_task, i) for i in range(len(tasks))]
            pending = set(futures)
            while pending:
                _done, pending = wait(pending, timeout=0.25)
                while not queue.empty():
                    message = queue.get()
                    if progress is not None:
                        progress(*message)
            return [f.result() for f in futures]
    finally:
        _FORKED.clear()
