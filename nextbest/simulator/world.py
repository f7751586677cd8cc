"""Simulate a whole world: chunks of customers in sequence, each written as soon as it is done, then world.json.

Memory is bounded by one chunk per worker (default 25,000 customers). Each chunk draws from its own stream
`SeedSequence(seed).spawn(...)[chunk]`, so a world depends only on its config. Tables are written into a staging
folder and swapped into place at the end, so readers of an existing world never see a half-written one.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from nextbest.catalogue import Catalogue, load_catalogue
from nextbest.simulator import params as P
from nextbest.simulator.config import GENERATOR_VERSION, SimulationConfig
from nextbest.simulator.engine import ChunkResult, simulate_chunk
from nextbest.simulator.metrics import StreamingAUC
from nextbest.simulator.policy import LoggingPolicy
from nextbest.simulator.population import Population, generate_population
from nextbest.simulator.propensity import ActionTable
from nextbest.simulator.writer import chunk_tables, write_chunk

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass
class WorldSummary:
    """What a simulation produced: where, how many rows, and the Bayes-optimal AUCs."""

    out_dir: Path
    rows: dict[str, int] = field(default_factory=dict)
    bayes_auc: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0
    monthly_churn_rate: float = 0.0
    acceptance_rate: float = 0.0
    contact_complaint_rate: float = 0.0  # complaints about a contact, per contact
    expected_opt_out_rate: float = 0.0  # the truth's P(opt-out) per contact, averaged


def chunk_plan(config: SimulationConfig) -> list[tuple[int, int, int, int]]:
    """(first base id, n base, first cohort id, n cohort) per chunk."""
    plan = []
    cohort_next = config.customers + 1
    for c in range(config.n_chunks):
        first = c * config.chunk_size + 1
        n_base = min(config.chunk_size, config.customers - c * config.chunk_size)
        n_coh = int(round(P.DIGITAL_COHORT_SHARE * n_base)) if config.scenario == "digital_cohort" else 0
        plan.append((first, n_base, cohort_next, n_coh))
        cohort_next += n_coh
    return plan


@dataclass
class _ChunkOutput:
    """What one chunk sends back: rows written, AUC histograms and the counts behind the rates."""

    index: int
    rows: dict[str, int]
    churn_hist: dict[int, tuple[np.ndarray, np.ndarray]]
    accept_hist: tuple[np.ndarray, np.ndarray]
    n_contacts: int
    n_accepted: int
    n_closed: int
    customer_days: float
    n_contact_complaints: int = 0
    expected_opt_outs: float = 0.0


def chunk_population(
    config: SimulationConfig, catalogue: Catalogue, c: int, plan: tuple[int, int, int, int]
) -> tuple[Population, np.random.Generator]:
    """Chunk c's customers (and the scenario's joiners) and its generator, which then draws the starting balances.

    SeedSequence children are keyed by index, so chunk c's stream does not depend on how many chunks there are.
    """
    first, n_base, coh_first, n_coh = plan
    rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(c + 1)[c])
    ids = np.arange(first, first + n_base, dtype=np.int64)
    pop = generate_population(rng, ids, config.start_date.year, catalogue.channels)
    if n_coh:
        k = config.scenario_start_day or 0
        span = max(1, min(P.DIGITAL_COHORT_JOIN_DAYS, config.days - k - 1))
        join_day = k + rng.integers(0, span, n_coh)
        signup = join_day * P.SECONDS_PER_DAY + rng.integers(8 * 3600, 20 * 3600, n_coh)
        cohort = generate_population(
            rng,
            np.arange(coh_first, coh_first + n_coh, dtype=np.int64),
            config.start_date.year,
            catalogue.channels,
            signup_s=signup.astype(np.int64),
            digital_cohort=True,
        )
        pop = _concat(pop, cohort)
    return pop, rng


def chunk_output(
    config: SimulationConfig, table: ActionTable, c: int, pop: Population, result: ChunkResult, staging: Path
) -> _ChunkOutput:
    """Write one chunk's tables into `staging` and return its rows and the ingredients of the world's measures."""
    tables = chunk_tables(result, pop, config, table)
    rows = write_chunk(tables, staging, c)
    churn_hist = {}
    for h, (p, y) in result.churn_scores.items():
        a = StreamingAUC()
        a.add(p, y)
        churn_hist[h] = (a.pos, a.neg)
    acc = StreamingAUC()
    acc.add(*result.accept_scores)
    joined = np.maximum(pop.signup_s, 0) / P.SECONDS_PER_DAY
    return _ChunkOutput(
        index=c,
        rows=rows,
        churn_hist=churn_hist,
        accept_hist=(acc.pos, acc.neg),
        n_contacts=len(result.accept_scores[1]),
        n_accepted=int(result.accept_scores[1].sum()),
        n_closed=tables["closures"].num_rows,
        customer_days=float(np.clip(config.days - joined, 0, None).sum()),
        n_contact_complaints=int((result.tables["complaints"]["cause"] == 1).sum()),
        expected_opt_outs=float(result.tables["contact_truth"]["p_opt_out"].sum()),
    )


def _run_chunk(
    config: SimulationConfig,
    catalogue: Catalogue,
    c: int,
    plan: tuple[int, int, int, int],
    staging: Path,
    on_progress: ProgressCallback | None = None,
) -> _ChunkOutput:
    """Simulate and write one chunk under the logging policy (in a worker process when there are several chunks)."""
    table = ActionTable.from_catalogue(catalogue)
    pop, rng = chunk_population(config, catalogue, c, plan)
    result = simulate_chunk(
        config,
        table,
        pop,
        rng,
        c,
        LoggingPolicy(table, seed=config.seed),
        on_day=(lambda d: on_progress(1)) if on_progress else None,
    )
    return chunk_output(config, table, c, pop, result, staging)


def _run_planned_chunk(
    item: tuple[int, tuple[int, int, int, int]], config: SimulationConfig, catalogue: Catalogue, staging: Path
) -> _ChunkOutput:
    """`_run_chunk` of one (index, plan row) pair (a Dask worker's task)."""
    return _run_chunk(config, catalogue, item[0], item[1], staging)


def _run_chunks(
    config: SimulationConfig,
    catalogue: Catalogue,
    plan: list[tuple[int, int, int, int]],
    staging: Path,
    workers: int,
    on_progress: ProgressCallback | None,
    dask: Any = None,
) -> list[_ChunkOutput]:
    """Every chunk's output, in chunk order: in this process, in `workers` forked processes, or on the workers of
    the Dask client `dask` (each writes its chunk into `staging`, a folder they share)."""
    outputs: list[_ChunkOutput] = []
    if dask is not None:
        from nextbest.distributed import map_partitions

        done = (lambda _i, _out: on_progress(config.days)) if on_progress else None
        return map_partitions(dask, _run_planned_chunk, list(enumerate(plan)), config, catalogue, staging, on_done=done)
    if workers <= 1 or len(plan) == 1:
        for c, row in enumerate(plan):
            outputs.append(_run_chunk(config, catalogue, c, row, staging, on_progress))
    else:
        # fork keeps start-up cheap (numpy/pyarrow already imported); each worker holds one chunk at a time
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_run_chunk, config, catalogue, c, row, staging) for c, row in enumerate(plan)]
            for fut in as_completed(futures):
                outputs.append(fut.result())
                if on_progress:
                    on_progress(config.days)
    return sorted(outputs, key=lambda o: o.index)


def simulate_world(
    config: SimulationConfig,
    out_dir: str | Path,
    catalogue: Catalogue | None = None,
    on_progress: ProgressCallback | None = None,
    workers: int | None = None,
    dask: Any = None,
) -> WorldSummary:
    """Simulate `config` into `out_dir/sources` and `out_dir/truth`.

    `on_progress(k)` reports k more simulated chunk-days (total `n_chunks * days`). `workers` processes simulate
    chunks in parallel (default: one per core, at most 2, when there are several chunks); `dask`: a Dask client
    whose workers simulate the chunks instead (`nextbest.distributed`; `out_dir` on a filesystem they share). The
    output depends on neither.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    catalogue = catalogue or load_catalogue()
    staging = fresh_staging(out)
    plan = chunk_plan(config)
    if workers is None:
        workers = min(2, os.cpu_count() or 1, len(plan))
    try:
        outputs = _run_chunks(config, catalogue, plan, staging, workers, on_progress, dask)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # never leave a half-written world behind
        raise
    summary = summarise(outputs, config, out)
    publish(staging, out, world_json(config, catalogue, plan, summary))
    summary.seconds = time.perf_counter() - started
    logger.debug(
        "simulated %s customers x %s days into %s in %.1fs", config.customers, config.days, out, summary.seconds
    )
    return summary


def fresh_staging(out: Path) -> Path:
    """An empty staging folder `out/.staging` (a leftover of an interrupted run is removed)."""
    staging = out / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def summarise(outputs: list[_ChunkOutput], config: SimulationConfig, out: Path) -> WorldSummary:
    """Add up the chunks: rows per table, the Bayes-optimal AUCs, monthly churn and acceptance rates."""
    churn_auc = {h: StreamingAUC() for h in config.churn_horizons}
    accept_auc = StreamingAUC()
    rows: dict[str, int] = {}
    customer_days = 0.0
    n_closed = n_contacts = n_accepted = n_complaints = 0
    opt_outs = 0.0
    for o in outputs:
        for name, n in o.rows.items():
            rows[name] = rows.get(name, 0) + n
        for h, (pos, neg) in o.churn_hist.items():
            churn_auc[h].pos += pos
            churn_auc[h].neg += neg
        accept_auc.pos += o.accept_hist[0]
        accept_auc.neg += o.accept_hist[1]
        n_contacts += o.n_contacts
        n_accepted += o.n_accepted
        n_closed += o.n_closed
        customer_days += o.customer_days
        n_complaints += o.n_contact_complaints
        opt_outs += o.expected_opt_outs

    summary = WorldSummary(out_dir=out)
    summary.rows = {k.removeprefix("truth/"): v for k, v in rows.items()}
    summary.bayes_auc = {f"churn_{h}d": a.value() for h, a in churn_auc.items()}
    summary.bayes_auc["offer_acceptance"] = accept_auc.value()
    summary.monthly_churn_rate = n_closed / max(customer_days, 1.0) * 30.0
    summary.acceptance_rate = n_accepted / max(n_contacts, 1)
    summary.contact_complaint_rate = n_complaints / max(n_contacts, 1)
    summary.expected_opt_out_rate = opt_outs / max(n_contacts, 1)
    return summary


def world_json(
    config: SimulationConfig, catalogue: Catalogue, plan: list[tuple[int, int, int, int]], summary: WorldSummary
) -> dict[str, object]:
    """The content of truth/world.json: the config, the layout and the world's truth measures."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "customers": config.customers,
        "customers_total": sum(n_base + n_coh for _, n_base, _, n_coh in plan),
        "days": config.days,
        "start_date": config.start_date.isoformat(),
        "end_ts": _end_iso(config),
        "scenario": config.scenario,
        "scenario_start_day": config.scenario_start_day,
        "chunk_size": config.chunk_size,
        "statement_cadence_days": config.statement_cadence_days,
        "churn_hazard_cadence_days": config.effective_hazard_cadence,
        "churn_hazard_note": "hazard rows every churn_hazard_cadence_days days; each is that day's true daily hazard",
        "bayes_auc": summary.bayes_auc,
        "churn_auc_method": "weekly snapshots; score 1-(1-h)^H from the true daily hazard h that day; label: closed "
        "within H days",
        "monthly_churn_rate": summary.monthly_churn_rate,
        "acceptance_rate": summary.acceptance_rate,
        "contact_complaint_rate": summary.contact_complaint_rate,
        "expected_opt_out_rate": summary.expected_opt_out_rate,
        "rows": summary.rows,
        "catalogue_actions": list(catalogue.action_ids),
        "catalogue_channels": list(catalogue.channels),
        "layout": "every table is a folder of parquet parts, one per customer chunk: <table>/part-NNNNN.parquet",
    }


def publish(staging: Path, out: Path, world: dict[str, object]) -> None:
    """Write world.json into staging, then swap `sources` and `truth` into place and drop the staging folder."""
    (staging / "truth").mkdir(exist_ok=True)
    (staging / "truth" / "world.json").write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    for sub in ("sources", "truth"):
        target = out / sub
        if target.exists():
            shutil.rmtree(target)
        (staging / sub).rename(target)
    shutil.rmtree(staging)


def _end_iso(config: SimulationConfig) -> str:
    import datetime as dt

    end = dt.datetime.combine(config.start_date, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=config.days)
    return end.isoformat()


def _concat(a: Population, b: Population) -> Population:
    """Stack two populations (base customers and joiners) into one chunk."""
    kw = {
        f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)])
        for f in fields(Population)
        if f.name != "start_holdings"
    }
    sh = {
        k: np.concatenate([a.start_holdings[k], b.start_holdings[k] + (a.n if k == "row" else 0)])
        for k in a.start_holdings
    }
    return Population(**kw, start_holdings=sh)
