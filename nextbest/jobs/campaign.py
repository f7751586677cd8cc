"""The campaign job: a campaign spec through the project's one decision engine, for a segment or the whole base.

`run_campaign` runs the steps of `nextbest.campaigns` against the project's `serving.engine.DecisionEngine` (the
real-time path's engine and policy); each request carries the campaign's actions (`RecommendRequest.actions`: the
engine rejects every other candidate with the logged rule `campaign.action_filter`, and a replay of the logged
request applies it again):

1. `audience_of`: the audience's features in one vectorized read of the offline tables (the latest row per entity
   as of the date, what materialization loads into the online store), the segment evaluated on them, erased
   customers left out, the universal holdout and the campaign's control drawn (`nextbest.assignment`);
2. `propose`: every candidate (channel, send slot) of a chunk of customers in one `decide_batch(..., dry_run=True)`:
   each customer's best allowed action and its priority per candidate, nothing delivered or logged;
3. `nextbest.campaigns.allocate`: the candidate of highest net priority per customer under the channels' limits;
4. `decide`: the chosen (customer, channel, send time) decided for real, `decide_batch(..., campaign_id=...,
   controls=...)`: the caps are checked again against the decision log the real-time path shares (a customer
   pushed since the proposal is not mailed beyond the cap), the control group is decided and logged and sent
   nothing; the audience's holdout customers are decided and logged too (the policy withholds every marketing
   action from them), so the scorecard sees them;
5. the contact list and a summary, recorded under `<project home>/campaigns/<id>/`.

With `workers` > 1, steps 2 and 4 decide their chunks in spawned worker processes (`Workers`), each with its own
engine and writer to the project's decision log, as the service's workers; steps 1, 3 and 5 stay here, so the result
does not depend on the number of workers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.batch_gc import gc_paused
from nextbest.campaigns import (
    Allocation,
    CampaignSpec,
    Candidate,
    Proposals,
    ViewRead,
    allocate,
    campaigns_dir,
    candidates,
    contact_frame,
    limits_of,
    newest_row,
    read_audience,
    send_date,
    spec_yaml,
    view_reads,
    write_table,
)
from nextbest.decision_log import DecisionLog, DecisionRecord

if TYPE_CHECKING:
    import pyarrow as pa

    from nextbest.project import Project
    from nextbest.settings import Settings
    from serving.engine import DecisionEngine

logger = logging.getLogger(__name__)

#: (stage, done, total): the command draws progress bars from it
ProgressFn = Callable[[str, int, int], None]
#: customers per `decide_batch` call (bounds the memory of one batch's feature rows)
CHUNK = 10_000


@dataclass
class Audience:
    """Who the campaign is for, with their features (`table`, sorted by key) and their assignment."""

    table: pa.Table
    keys: list[Any]
    as_of: datetime
    base: int  # entities known as of the date
    erased: int
    holdout: np.ndarray
    control: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class CampaignResult:
    """What a run did: sizes, per-channel volume and cost, where the contact list went, seconds per stage."""

    spec: CampaignSpec
    project: str
    audience: Audience
    send_date: date
    candidates: list[Candidate]
    allocation: Allocation
    summary: dict[str, Any]
    contacts: Path | None = None
    contacts_csv: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


# -------------------------------------------------------------------- the engine


class TallyingLog(DecisionLog):
    """The project's decision log, counting by rule the logged decisions in which a rule rejected one of the
    campaign's actions (what the summary's "rejected by rule" shows); it logs exactly what `DecisionLog` logs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from serving.engine import ACTION_FILTER_RULE

        super().__init__(*args, **kwargs)
        self.rejected: dict[str, int] = {}
        self._outside = ACTION_FILTER_RULE

    def log_decisions(self, records: Sequence[DecisionRecord]) -> None:
        for record in records:
            wanted = (record.request or {}).get("actions")
            rules = {
                r["rule"]
                for r in record.rejected
                if r["rule"] != self._outside and (wanted is None or r["action_id"] in wanted)
            }
            for rule in rules:
                self.rejected[rule] = self.rejected.get(rule, 0) + 1
        super().log_decisions(records)


def open_engine(project: Project, settings: Settings, chunk: int = CHUNK) -> DecisionEngine:
    """The project's decision engine for a campaign: its own writer to the project's decision log (the real-time
    path's: same database, journal folder and decision-id secret, so feedback on a campaign decision is accepted
    by the service), a queue that holds a few batches, no model reloads during the run."""
    from serving.engine import DecisionEngine, decision_id_secret

    home = project.home(settings)
    home.mkdir(parents=True, exist_ok=True)
    log = TallyingLog(
        project.decision_log_uri(settings),
        spool_path=home / "decision_log_spool.jsonl",
        journal_dir=home / "journal",
        key_type=project.served.key_type,
        id_secret=decision_id_secret(settings),
        queue_size=max(10_000, 4 * chunk),
        batch_size=2_000,
    )
    quiet = settings.model_copy(update={"serving": settings.serving.model_copy(update={"reload_interval_s": 0})})
    engine = DecisionEngine(quiet, project=project, decision_log=log)
    engine.load()
    return engine


# -------------------------------------------------------------------- 1. the audience


def audience_reads(engine: DecisionEngine, spec: CampaignSpec) -> list[ViewRead]:
    """The views one online read of the served entity covers (as the engine's reader), plus what the segment reads."""
    project, features = engine.project, engine.features
    entity = engine.serving.entity
    services = [m.feature_service for m in project.models if m.entity == entity]
    views = list(features.served_views(entity, services, engine.serving.feature_views))
    fields = {v: list(features.view_fields(v)) for v in views}
    if spec.segment is not None:
        schema = _segments(engine).schema
        for name in _segments(engine).reads(spec.segment):
            view = schema.views[name]
            if view not in fields:
                views.append(view)
                fields[view] = []
            if name not in fields[view]:
                fields[view].append(name)
    return view_reads(features, views, fields)


def _segments(engine: DecisionEngine) -> Any:
    from nextbest.segments import project_segments

    if getattr(engine, "_campaign_segments", None) is None:
        engine._campaign_segments = project_segments(engine.project, engine.features)  # type: ignore[attr-defined]
    return engine._campaign_segments  # type: ignore[attr-defined]


def audience_of(engine: DecisionEngine, spec: CampaignSpec, as_of: datetime | None = None) -> Audience:
    """The campaign's audience as of a date (default: the newest feature rows), see the module docstring."""
    import pyarrow.compute as pc

    key = engine.project.served.key
    reads = audience_reads(engine, spec)
    as_of = as_of or newest_row(reads)
    table = read_audience(reads, key, as_of)
    base = table.num_rows
    if spec.segment is not None and base:
        segments = _segments(engine)
        frame = table.select(list(segments.reads(spec.segment))).to_pandas()
        table = table.filter(np.asarray(segments.evaluate(spec.segment, frame), dtype=bool))
    erased = engine.features.tombstones
    dropped = 0
    if erased and table.num_rows:
        gone = erased.matching(key, table.column(key).to_pylist())
        if gone:
            keep = pc.invert(pc.is_in(table.column(key), value_set=_array(sorted(gone))))
            dropped = table.num_rows - int(pc.sum(keep).as_py())
            table = table.filter(keep)
    keys = table.column(key).to_pylist()
    assigner, share = engine.assigner, spec.control(engine.project)
    holdout = np.asarray(assigner.in_holdout(keys), dtype=bool) if keys else np.zeros(0, bool)
    control = np.asarray(assigner.in_control(spec.id, keys, share), dtype=bool) if keys else np.zeros(0, bool)
    logger.info("campaign %s: %d of %d entities in the audience as of %s", spec.id, len(keys), base, as_of)
    return Audience(table, keys, as_of, base, dropped, holdout, control)


def _array(values: Sequence[Any]) -> Any:
    import pyarrow as pa

    return pa.array(values)


# -------------------------------------------------------------------- 2. proposals


def _requests(keys: Sequence[Any], channels: Sequence[str], actions: Sequence[str]) -> list[Any]:
    """One request per customer: one action at most, among the campaign's."""
    from serving.schemas import RecommendContext, RecommendRequest

    wanted = list(actions)
    context = RecommendContext()  # one (immutable) empty context for all: no copy of the default per request
    return [
        RecommendRequest(customer_id=k, channel=c, context=context, max_actions=1, actions=wanted)
        for k, c in zip(keys, channels, strict=True)
    ]


def _wait_for_log(engine: DecisionEngine, timeout_s: float = 600.0) -> None:
    """Let the decision log's writer catch up before the next batch (it refuses batches while backlogged)."""
    deadline = time.monotonic() + timeout_s
    while engine.decision_log.backlogged and time.monotonic() < deadline:
        time.sleep(0.05)


def _propose_part(
    engine: DecisionEngine, actions: Sequence[str], rows: pa.Table, keys: Sequence[Any], cands: Sequence[Candidate]
) -> tuple[np.ndarray, ...]:
    """One chunk's proposals: per customer and candidate the best action's priority, index, propensity, price and
    band. Every candidate's dry runs go in one batch, so each customer's facts and contact history are read once."""
    shape = (len(keys), len(cands))
    priority, action, propensity, price, band = (
        np.full(shape, np.nan),
        np.full(shape, -1, np.int16),
        np.full(shape, np.nan, np.float32),
        np.full(shape, np.nan),
        np.full(shape, "", dtype=object),
    )
    index = {a: i for i, a in enumerate(actions)}
    n = len(keys)
    with gc_paused():
        features = rows.to_pylist()
        requests = _requests(list(keys) * len(cands), [c.channel for c in cands for _ in range(n)], actions)
        now = [c.at for c in cands for _ in range(n)]
        answers = engine.decide_batch(requests, features=features * len(cands), now=now, dry_run=True)
        for m, answer in enumerate(answers):
            if answer.actions:
                i, j = m % n, m // n
                best = answer.actions[0]
                priority[i, j] = best.priority
                action[i, j] = index[best.action_id]
                propensity[i, j] = best.propensity
                if best.price is not None:
                    price[i, j], band[i, j] = best.price, best.band
    return priority, action, propensity, price, band


def propose(
    engine: DecisionEngine,
    spec: CampaignSpec,
    audience: Audience,
    cands: Sequence[Candidate],
    chunk: int = CHUNK,
    progress: ProgressFn | None = None,
    pool: Workers | None = None,
) -> Proposals:
    """Each customer's best allowed action per candidate, from dry runs (nothing delivered or logged); the
    holdout is not asked (the policy gives it no marketing). `pool`: worker processes deciding the chunks."""
    actions = spec.action_ids(engine.project)
    out = Proposals.empty(len(audience), len(cands), actions)
    todo = np.flatnonzero(~audience.holdout)
    parts = [todo[start : start + chunk] for start in range(0, len(todo), chunk)]

    def task(part: np.ndarray) -> tuple[Any, ...]:
        return (actions, audience.table.take(part), [audience.keys[i] for i in part], list(cands))

    done = 0
    for part, (priority, action, propensity, price, band) in _run_parts(engine, pool, _propose_part, parts, task):
        out.priority[part], out.action[part], out.propensity[part] = priority, action, propensity
        out.price[part], out.band[part] = price, band
        done += len(part)
        if progress is not None:
            progress("propose", done, len(todo))
    return out


# -------------------------------------------------------------------- 4. the decisions


@dataclass
class Decided:
    """What the real decisions did."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    logged: int = 0
    controls: int = 0
    holdout: int = 0
    withheld: int = 0  # selected and treated, but the decision delivered nothing (e.g. a cap since the proposal)
    marketing_to_holdout: int = 0
    # logged decisions in which a rule rejected one of the campaign's actions, by rule
    rejected: dict[str, int] = field(default_factory=dict)

    def add(self, other: Decided) -> None:
        self.contacts.extend(other.contacts)
        self.logged += other.logged
        self.controls += other.controls
        self.holdout += other.holdout
        self.withheld += other.withheld
        self.marketing_to_holdout += other.marketing_to_holdout
        for rule, n in other.rejected.items():
            self.rejected[rule] = self.rejected.get(rule, 0) + n


def _decide_part(
    engine: DecisionEngine,
    campaign_id: str,
    actions: Sequence[str],
    rows: pa.Table,
    keys: Sequence[Any],
    picked: Sequence[Candidate],
    controls: Sequence[bool],
    holdout: Sequence[bool],
) -> Decided:
    """One chunk of real decisions, logged; what they did (the log written before this returns)."""
    from nextbest.catalogue import MARKETING_KINDS

    log = engine.decision_log
    before = dict(getattr(log, "rejected", {}))
    _wait_for_log(engine)
    with gc_paused():
        answers = engine.decide_batch(
            _requests(keys, [c.channel for c in picked], actions),
            features=rows.to_pylist(),
            now=[c.at for c in picked],
            campaign_id=campaign_id,
            controls=controls,
        )
    out = Decided()
    for cand, is_control, held, answer in zip(picked, controls, holdout, answers, strict=True):
        out.logged += 1
        if held:
            out.holdout += 1
            out.marketing_to_holdout += any(a.kind in MARKETING_KINDS for a in answer.actions)
        elif is_control:
            out.controls += 1
        elif not answer.actions:
            out.withheld += 1
        else:
            out.contacts.append(_contact(answer, cand))
    after = getattr(log, "rejected", {})
    out.rejected = {rule: n - before.get(rule, 0) for rule, n in after.items() if n > before.get(rule, 0)}
    return out


def decide(
    engine: DecisionEngine,
    spec: CampaignSpec,
    audience: Audience,
    cands: Sequence[Candidate],
    allocation: Allocation,
    chunk: int = CHUNK,
    progress: ProgressFn | None = None,
    pool: Workers | None = None,
) -> Decided:
    """Decide the chosen (customer, candidate) pairs for real, and the audience's holdout on the first candidate."""
    choice = allocation.choice.copy()
    choice[audience.holdout] = 0
    todo = np.flatnonzero(choice >= 0)
    actions = spec.action_ids(engine.project)
    parts = [todo[start : start + chunk] for start in range(0, len(todo), chunk)]

    def task(part: np.ndarray) -> tuple[Any, ...]:
        held = [bool(audience.holdout[i]) for i in part]
        controls = [bool(audience.control[i]) and not h for i, h in zip(part, held, strict=True)]
        picked = [cands[choice[i]] for i in part]
        return (spec.id, actions, audience.table.take(part), [audience.keys[i] for i in part], picked, controls, held)

    out, done = Decided(), 0
    for part, decided in _run_parts(engine, pool, _decide_part, parts, task):
        out.add(decided)
        done += len(part)
        if progress is not None:
            progress("decide", done, len(todo))
    return out


# -------------------------------------------------------------------- worker processes

_WORKER: DecisionEngine | None = None


def _start_worker(project: Project, settings: Settings, chunk: int) -> None:
    """A worker process's engine (its own writer to the project's decision log, as a service worker has)."""
    from multiprocessing.util import Finalize

    from nextbest.console import quiet_if_parent_was

    quiet_if_parent_was()
    global _WORKER
    _WORKER = open_engine(project, settings, chunk)
    Finalize(_WORKER, _close_worker, args=(_WORKER,), exitpriority=10)


def _close_worker(engine: DecisionEngine) -> None:
    """At the worker's exit (the pool's shutdown waits for it): every queued record written, then closed."""
    engine.decision_log.flush(timeout=3600.0)
    engine.close()


def _in_worker(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """One chunk on this worker's engine. The records of a chunk of real decisions are journalled when it returns
    (its contacts written through, so caps see them) and written by the log's writer while the next chunk is
    decided; the pool's shutdown waits for the last of them (`_close_worker`)."""
    assert _WORKER is not None, "worker engine not started"
    return fn(_WORKER, *args)


class Workers:
    """Worker processes, each with the project's engine, that decide a campaign's chunks (spawned: no forked
    threads or locks); at most two chunks in flight per worker, so the parent's memory stays bounded."""

    def __init__(self, project: Project, settings: Settings, workers: int, chunk: int = CHUNK) -> None:
        import concurrent.futures as cf
        import multiprocessing as mp

        self.size = workers
        self._pool = cf.ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_start_worker, initargs=(project, settings, chunk)
        )

    def map(self, fn: Callable[..., Any], tasks: Iterator[tuple[Any, ...]]) -> Iterator[Any]:
        """fn(engine, *task) of every task, results in task order."""
        from collections import deque

        pending: deque[Any] = deque()
        for args in tasks:
            pending.append(self._pool.submit(_in_worker, fn, args))
            if len(pending) >= 2 * self.size:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _run_parts(
    engine: DecisionEngine,
    pool: Workers | None,
    fn: Callable[..., Any],
    parts: Sequence[np.ndarray],
    task: Callable[[np.ndarray], tuple[Any, ...]],
) -> Iterator[tuple[np.ndarray, Any]]:
    """(part, fn(engine, *task(part))) for every part, in this process or on the workers."""
    if pool is None:
        for part in parts:
            yield part, fn(engine, *task(part))
        return
    yield from zip(parts, pool.map(fn, (task(part) for part in parts)), strict=True)


def _contact(answer: Any, cand: Candidate) -> dict[str, Any]:
    best = answer.actions[0]
    return {
        "customer_id": answer.customer_id, "action_id": best.action_id, "channel": cand.channel,
        "send_time": cand.at, "template_id": best.template_id, "priority": best.priority,
        "propensity": best.propensity, "cost": cand.cost, "price": best.price, "band": best.band or None,
        "band_version": best.band_version or None, "decision_id": answer.decision_id,
    }  # fmt: skip


def _proposed_price(engine: DecisionEngine, proposals: Proposals, action_id: str, i: int, j: int) -> dict[str, Any]:
    """A proposal's price, its band and the catalogue's band version (None when unpriced)."""
    price = float(proposals.price[i, j])
    if price != price:
        return {"price": None, "band": None, "band_version": None}
    spec = engine.catalogue.pricing.get(action_id)
    return {"price": price, "band": str(proposals.band[i, j]), "band_version": spec.version if spec else None}


def proposed_contacts(
    engine: DecisionEngine, audience: Audience, cands: Sequence[Candidate], proposals: Proposals, alloc: Allocation
) -> list[dict[str, Any]]:
    """A dry run's contact list: the proposed action of every selected treated customer (no decision id)."""
    out = []
    for i in np.flatnonzero(alloc.choice >= 0):
        j = int(alloc.choice[i])
        if audience.control[i]:
            continue
        action = engine.catalogue.action(proposals.actions[proposals.action[i, j]])
        cand = cands[j]
        out.append({
            "customer_id": audience.keys[i], "action_id": action.id, "channel": cand.channel, "send_time": cand.at,
            "template_id": action.templates[cand.channel], "priority": float(proposals.priority[i, j]),
            "propensity": float(proposals.propensity[i, j]), "cost": cand.cost, **_proposed_price(engine, proposals,
            action.id, i, j), "decision_id": None,
        })  # fmt: skip
    return out


# -------------------------------------------------------------------- 5. the run


def summarize(
    spec: CampaignSpec,
    audience: Audience,
    cands: Sequence[Candidate],
    proposals: Proposals,
    alloc: Allocation,
    decided: Decided | None,
) -> dict[str, Any]:
    """The run in numbers (what the command prints and `summary.json` keeps)."""
    proposed = ~np.isnan(proposals.priority)
    sent: dict[str, int] = dict.fromkeys(alloc.sent, 0)
    cost: dict[str, float] = dict.fromkeys(alloc.sent, 0.0)
    rows = decided.contacts if decided is not None else []
    for c in rows:
        sent[c["channel"]] += 1
        cost[c["channel"]] += c["cost"]
    channels = {}
    for limit in spec.channels:
        ch = limit.channel
        cols = [j for j, cand in enumerate(cands) if cand.channel == ch]
        channels[ch] = {
            "volume_limit": limit.volume, "budget_limit": limit.budget,
            "proposals": int(proposed[:, cols].any(1).sum()),
            "allocated": alloc.sent[ch], "allocated_cost": round(alloc.cost[ch], 4), "controls": alloc.controls[ch],
            "sent": sent[ch] if decided is not None else alloc.sent[ch],
            "cost": round(cost[ch] if decided is not None else alloc.cost[ch], 4), "full": alloc.full[ch],
        }  # fmt: skip
    selected = alloc.choice >= 0
    out: dict[str, Any] = {
        "campaign": spec.id, "as_of": audience.as_of.isoformat(), "base": audience.base, "audience": len(audience),
        "erased": audience.erased, "holdout": int(audience.holdout.sum()), "proposed": int(proposed.any(1).sum()),
        "selected": int(selected.sum()), "controls": int((selected & audience.control).sum()),
        "treated": int((selected & ~audience.control).sum()), "channels": channels, "dry_run": decided is None,
    }  # fmt: skip
    if decided is not None:
        out.update(
            sent=len(decided.contacts), cost=round(sum(c["cost"] for c in decided.contacts), 4),
            decisions_logged=decided.logged, controls_logged=decided.controls, holdout_logged=decided.holdout,
            withheld_at_decision=decided.withheld, marketing_to_holdout=decided.marketing_to_holdout,
        )  # fmt: skip
    return out


def _record(result: CampaignResult, project: Project, settings: Settings, stamp: datetime) -> None:
    """The spec (the desk reads it) and one line per run under `<project home>/campaigns/<id>/`."""
    folder = campaigns_dir(project, settings) / result.spec.id
    folder.mkdir(parents=True, exist_ok=True)
    if not result.summary["dry_run"]:
        (folder / "spec.yaml").write_text(spec_yaml(result.spec))
    line = {"run": stamp.isoformat(), **result.summary, "contacts": str(result.contacts or ""), **result.seconds}
    with (folder / "runs.jsonl").open("a") as f:
        f.write(json.dumps(line, default=str) + "\n")


def run_campaign(
    spec: CampaignSpec,
    project: Project,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    output: Path | None = None,
    engine: DecisionEngine | None = None,
    chunk: int = CHUNK,
    progress: ProgressFn | None = None,
    workers: int = 1,
) -> CampaignResult:
    """Run a campaign end to end (the module docstring's steps); `engine`: an open one (else opened and closed
    here). `dry_run`: proposals and allocation only, nothing decided or logged; the contact list holds the
    proposed actions. The contact list goes to `output` (a folder; default `<project home>/campaigns/<id>/<run>/`)
    as `contacts.parquet` and `contacts.csv`. `workers` > 1: the decisions in that many worker processes, each with
    its own engine on the same decision log (as a service's workers), the audience and allocation here."""
    spec.check_against(project)
    owned = engine is None
    # The workers start (and load their engines) while this process reads the audience; compute: dask -> the
    # Dask cluster's workers decide the chunks instead of `workers` processes (nextbest/jobs/campaign_dask.py).
    from nextbest.jobs.campaign_dask import workers_for

    pool: Any = workers_for(project, settings, chunk)
    if pool is None and workers > 1:
        pool = Workers(project, settings, workers, chunk)
    engine = engine or open_engine(project, settings, chunk)
    stamp = datetime.now(UTC)
    seconds: dict[str, float] = {}
    try:
        t = time.perf_counter()
        audience = audience_of(engine, spec, as_of)
        day = send_date(spec, as_of, stamp)
        cands = candidates(spec, project, day)
        seconds["features_s"] = time.perf_counter() - t
        if progress is not None:
            progress("features", 1, 1)
        t = time.perf_counter()
        proposals = propose(engine, spec, audience, cands, chunk, progress, pool)
        seconds["propose_s"] = time.perf_counter() - t
        t = time.perf_counter()
        eligible = ~audience.holdout
        alloc = allocate(proposals, cands, limits_of(spec), audience.control, spec.min_net_value, eligible)
        seconds["allocate_s"] = time.perf_counter() - t
        t = time.perf_counter()
        decided = None if dry_run else decide(engine, spec, audience, cands, alloc, chunk, progress, pool)
        if decided is not None:
            engine.decision_log.flush(timeout=600.0)
            if pool is not None:
                pool.close()  # the workers write their last records before they exit
            seconds["decide_s"] = time.perf_counter() - t
    finally:
        if pool is not None:
            pool.close()
        if owned:
            engine.close()
    rows = decided.contacts if decided is not None else proposed_contacts(engine, audience, cands, proposals, alloc)
    run = f"{stamp:%Y%m%dT%H%M%S_%fZ}{'_dry' if dry_run else ''}"
    folder = output or campaigns_dir(project, settings) / spec.id / run
    frame = contact_frame(rows)
    result = CampaignResult(spec, project.name, audience, day, cands, alloc, {})
    result.contacts = write_table(frame, folder / "contacts.parquet")
    result.contacts_csv = write_table(frame, folder / "contacts.csv")
    result.summary = summarize(spec, audience, cands, proposals, alloc, decided)
    result.summary["send_date"] = day.isoformat()
    if decided is not None:
        result.summary["rejected_by_rule"] = dict(sorted(decided.rejected.items(), key=lambda kv: -kv[1]))
    result.seconds = {k: round(v, 3) for k, v in seconds.items()}
    _record(result, project, settings, stamp)
    logger.debug("campaign %s: %s", spec.id, json.dumps(result.summary, default=str))
    return result
