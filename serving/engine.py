"""The decision engine: one online read, two models, the policy, the log -- independent of any HTTP framework.

The BentoML service (`serving.service`) and the bare ASGI app of the benchmark both call this class, so the
benchmark compares frameworks on exactly the same logic. One `/recommend` is:

1. one Feast online read of the `nba_v1` feature service (customer features + request-context on-demand
   features) in a small thread pool with a timeout and a circuit breaker: a slow or dead online store yields
   the degraded answer (safe service actions or nothing) within `feature_timeout_ms`, never an error;
2. the churn model scores the same feature row (its features are a subset: no second read);
3. the policy screens the catalogue (eligibility, consent, suitability, contact caps read from the decision
   log) and the NBA model scores the surviving actions in ONE `inplace_predict` over a numpy matrix (customer
   row broadcast, action attributes from `nextbest.features.action_features`);
4. arbitration and top-k; approximate contributions only for the chosen rows give the reason codes;
5. the delivered actions are committed write-through (caps need them at once), the full record goes to the
   write-behind queue.

Models are swapped atomically: a request takes one reference to an immutable `ModelBundle` at its start, and
the reload thread replaces that reference when the registry's `champion` alias moves.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.catalogue import Catalogue, load_catalogue
from nextbest.decision_log import DecisionLog, DecisionRecord, EventRecord, new_decision_id
from nextbest.errors import ConfigError, NotReadyError
from nextbest.features.store import online_number
from nextbest.policy import (
    CustomerView,
    DecisionContext,
    DecisionPolicy,
    PolicyConfig,
    RankedAction,
    Rejection,
    customer_view,
    load_policy,
)
from nextbest.settings import Settings, load_settings
from serving.lifecycle import ChampionLifecycle
from serving.schemas import (
    EventRequest,
    EventResponse,
    FeedbackRequest,
    FeedbackResponse,
    RecommendedAction,
    RecommendRequest,
    RecommendResponse,
    StatusResponse,
)

if TYPE_CHECKING:
    import feast

    from nextbest.models.artefact import LoadedModel

logger = logging.getLogger(__name__)

# Digital events of the data contract (`digital_events.event_type`); context signals come from the feature repo.
DIGITAL_EVENTS: frozenset[str] = frozenset({"login", "page_view"})
CHURN_MODEL = "churn"
NBA_MODEL = "nba"


class FeatureStoreUnavailable(Exception):
    """The online read failed or timed out (the caller answers degraded)."""


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelLayout:
    """Where each model input comes from: positions filled from the feature row or from action attributes."""

    customer_pos: np.ndarray  # column positions in the model matrix
    customer_names: tuple[str, ...]  # the feature row names for those positions
    action_pos: np.ndarray
    action_matrix: np.ndarray  # (n catalogue actions, len(action_pos)) in catalogue order


@dataclass(frozen=True)
class ModelBundle:
    """The champion models in use; replaced as a whole, never mutated."""

    churn: LoadedModel
    nba: LoadedModel
    churn_layout: ModelLayout
    nba_layout: ModelLayout

    @property
    def versions(self) -> dict[str, str]:
        return {CHURN_MODEL: str(self.churn.version), NBA_MODEL: str(self.nba.version)}


def build_layout(feature_names: Sequence[str], catalogue: Catalogue, action_table: Any | None) -> ModelLayout:
    """Split a model's inputs into customer features and action attributes (`action_table`: one row per action)."""
    action_cols: set[str] = set(action_table.columns) if action_table is not None else set()
    action_cols.discard("action_id")
    c_pos, c_names, a_pos, a_names = [], [], [], []
    for i, name in enumerate(feature_names):
        if name in action_cols:
            a_pos.append(i)
            a_names.append(name)
        else:
            c_pos.append(i)
            c_names.append(name)
    if a_names:
        table = action_table.set_index("action_id") if "action_id" in action_table.columns else action_table
        missing = [a for a in catalogue.action_ids if a not in table.index]
        if missing:
            raise ConfigError(f"action features lack catalogue action(s) {missing}")
        matrix = table.loc[list(catalogue.action_ids), a_names].to_numpy(dtype=np.float32)
    else:
        matrix = np.zeros((len(catalogue.actions), 0), dtype=np.float32)
    return ModelLayout(
        customer_pos=np.asarray(c_pos, dtype=np.intp),
        customer_names=tuple(c_names),
        action_pos=np.asarray(a_pos, dtype=np.intp),
        action_matrix=matrix,
    )


def customer_row(features: Mapping[str, object], layout: ModelLayout) -> np.ndarray:
    return np.fromiter(
        (online_number(features.get(n)) for n in layout.customer_names),
        dtype=np.float32,
        count=len(layout.customer_names),
    )


def action_rows(model_width: int, layout: ModelLayout, customer: np.ndarray, action_index: Sequence[int]) -> np.ndarray:
    """The (actions x features) matrix: the customer row broadcast, each action's attributes filled in."""
    X = np.empty((len(action_index), model_width), dtype=np.float32)
    X[:, layout.customer_pos] = customer
    if layout.action_pos.size:
        X[:, layout.action_pos] = layout.action_matrix[np.asarray(action_index, dtype=np.intp)]
    return X


def approx_contributions(model: LoadedModel, X: np.ndarray) -> np.ndarray:
    """Approximate (Saabas) per-feature contributions + bias column, single-threaded.

    Same numbers as `LoadedModel.contributions(X, approx=True)`, but the DMatrix is built with one thread: with
    the default (all cores) its construction took ~20 ms per call on this busy 2-core machine, for 1-3 rows.
    """
    import xgboost as xgb

    # No feature names on the DMatrix: setting them validates every name (~0.5 ms); columns are already in order.
    dm = xgb.DMatrix(np.ascontiguousarray(X, dtype=np.float32), nthread=1)
    return np.asarray(model.booster.predict(dm, pred_contribs=True, approx_contribs=True, validate_features=False))


# ---------------------------------------------------------------- online reads with a timeout


class OnlineFeatureReader:
    """One online read per request, bounded by a timeout, behind a circuit breaker.

    The read returns exactly what `store.get_online_features(features=<nba_v1>, ...)` returns -- the feature
    views' values and the on-demand `request_context` view -- but takes the lean path through Feast: the
    provider's `online_read` of each view (the same online store, keys and value conversion) and then the feature
    repo's own `context_features`, the very function the on-demand view runs. On this machine that cost 1-2 ms
    where `get_online_features` with the on-demand view cost 5-8 ms (its response building and pandas-free ODFV
    machinery, not the store). `tests/test_serving_service.py` checks both paths agree value for value.
    """

    def __init__(self, store: feast.FeatureStore, service_name: str, settings: Settings) -> None:
        from feast.type_map import feast_value_type_to_python_type

        from feature_repo import specs
        from feature_repo.context import context_features

        self.store = store
        self.service = store.get_feature_service(service_name)
        self.service_name = service_name
        self.timeout_s = settings.serving.feature_timeout_ms / 1000.0
        self._failures_to_open = settings.serving.breaker_failures
        self._reset_s = settings.serving.breaker_reset_s
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()
        # A few threads: a hung store ties up at most these, and later reads then time out fast.
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="feature-read")
        self._provider = store._get_provider()
        self._to_python = feast_value_type_to_python_type
        self._context_features = context_features
        self._join_key = specs.JOIN_KEY
        self._realtime_fields = tuple(specs.REALTIME_FIELDS)
        self._views = [
            (store.get_feature_view(name), tuple(specs.VIEW_FIELDS[name])) for name in specs.MATERIALIZED_VIEWS
        ]
        # The lean path is only valid while nba_v1 is exactly "the materialized views + request_context".
        served = {p.name for p in self.service.feature_view_projections}
        expected = set(specs.SERVICE_VIEWS[service_name])
        self._lean = served == expected and specs.CONTEXT_VIEW in served
        if not self._lean:
            logger.warning(
                "feature service %s is %s, not %s: using get_online_features", service_name, served, expected
            )
        self._one_trip = self._one_trip_reader() if self._lean else None

    # ------------------------------------------------------------ one round trip for all views
    def _one_trip_reader(self) -> Callable[[Any], dict[str, Any]] | None:
        """All materialized views of one customer in ONE store round trip, through Feast's own storage layout.

        The provider reads view by view: four SQLite queries (each parsing every row's timestamp, which serving
        does not use) or four Redis round trips. Here the same tables/hashes, keys and value protos are read at
        once: one `UNION ALL` statement on Feast's SQLite connection, or one pipelined `HMGET` per view on Feast's
        Redis client. Values are decoded exactly as the provider path does; the test against
        `get_online_features` covers both. Any other online store keeps the provider path (returns None).
        """
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.Value_pb2 import Value

        config = self.store.config
        online = self._provider.online_store
        kind = str(config.online_store.type)
        version = config.entity_key_serialization_version
        parse = Value.FromString
        to_python = self._to_python
        views = self._views
        if kind == "sqlite" or kind.endswith("SqliteOnlineStore"):
            from feast.infra.online_stores.sqlite import _quote_id, _table_id

            versioned = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
            sql = " UNION ALL ".join(
                f"SELECT {i}, feature_name, value FROM {_quote_id(_table_id(config.project, view, versioned))} "
                "WHERE entity_key = ?"
                for i, (view, _names) in enumerate(views)
            )
            wanted = [frozenset(names) for _view, names in views]
            nulls = {name: None for _view, names in views for name in names}

            def read_sqlite(key: Any) -> dict[str, Any]:
                blob = serialize_entity_key(key, entity_key_serialization_version=version)
                rows = online._get_conn(config).execute(sql, [blob] * len(views)).fetchall()
                out = dict(nulls)
                for i, name, value in rows:
                    if name in wanted[i]:
                        out[name] = to_python(parse(value)) if value is not None else None
                return out

            return read_sqlite
        if kind == "redis" or kind.endswith("RedisOnlineStore"):
            from feast.infra.online_stores.redis import _versioned_fv_name

            fields = []
            for view, names in views:
                _requested, hset_keys = online._generate_hset_keys_for_features(
                    view, list(names), fv_name_override=_versioned_fv_name(view, config)
                )
                fields.append((names, hset_keys[: len(names)]))  # the last field is the view's timestamp

            def read_redis(key: Any) -> dict[str, Any]:
                redis_key = online._generate_redis_keys_for_entities(config, [key])[0]
                with online._get_client(config.online_store).pipeline(transaction=False) as pipe:
                    for _names, hset_keys in fields:
                        pipe.hmget(redis_key, hset_keys)
                    replies = pipe.execute()
                out: dict[str, Any] = {}
                for (names, _keys), reply in zip(fields, replies, strict=True):
                    for name, value in zip(names, reply, strict=True):
                        out[name] = to_python(parse(value)) if value else None
                return out

            return read_redis
        return None

    @property
    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    def _read(self, entity_row: dict[str, Any]) -> dict[str, Any]:
        if not self._lean:
            return self.read_with_sdk(entity_row)
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        key = EntityKey(join_keys=[self._join_key], entity_values=[Value(int64_val=int(entity_row[self._join_key]))])
        out: dict[str, Any] = {self._join_key: entity_row[self._join_key]}
        if self._one_trip is not None:
            out.update(self._one_trip(key))
        else:
            for view, names in self._views:
                # A fresh list per call: Feast's Redis store appends "_ts:<view>" to the list it is given; passing
                # ours grew it by one field per request (thousands of HMGET fields, reads of 17+ ms after a while).
                _ts, values = self._provider.online_read(
                    config=self.store.config, table=view, entity_keys=[key], requested_features=list(names)
                )[0]
                for name in names:
                    v = values.get(name) if values else None
                    out[name] = self._to_python(v) if v is not None else None
        inputs = {c: [out.get(c)] for c in self._realtime_fields}
        inputs.update({k: [v] for k, v in entity_row.items() if k != self._join_key})
        for name, column in self._context_features(inputs).items():
            out[name] = column[0]
        return out

    def read_with_sdk(self, entity_row: dict[str, Any]) -> dict[str, Any]:
        """The same values through `FeatureStore.get_online_features` (reference path, slower)."""
        resp = self.store.get_online_features(features=self.service, entity_rows=[entity_row])
        return {k: v[0] for k, v in resp.to_dict().items()}

    def warm_up(self, entity_row: dict[str, Any]) -> None:
        """First reads load the registry, on-demand views and connections: do them before taking traffic."""
        try:
            for _ in range(3):
                # generous but bounded: a hung store must not hang startup either
                self._pool.submit(self._read, entity_row).result(timeout=2.0)
        except Exception as exc:  # a store that is down at startup must not stop the service: it answers degraded
            logger.warning("online store warm-up failed (%s: %s); answers will be degraded", type(exc).__name__, exc)

    def _check_breaker(self) -> None:
        if self.breaker_open:
            raise FeatureStoreUnavailable("circuit open after repeated online-store failures")

    def _record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= self._failures_to_open:
                self._open_until = time.monotonic() + self._reset_s
                self._failures = 0
                logger.warning("online store failing: circuit open for %.1f s", self._reset_s)

    def read(self, entity_row: dict[str, Any]) -> dict[str, Any]:
        self._check_breaker()
        fut = self._pool.submit(self._read, entity_row)
        try:
            out = fut.result(timeout=self.timeout_s)
        except cf.TimeoutError as exc:
            self._record(False)
            raise FeatureStoreUnavailable(f"online read exceeded {self.timeout_s * 1000:.0f} ms") from exc
        except Exception as exc:  # any store error -> degraded answer, never a 500
            self._record(False)
            raise FeatureStoreUnavailable(f"online read failed: {exc.__class__.__name__}: {exc}") from exc
        self._record(True)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- the engine


@dataclass
class _Decision:
    """Intermediate result of one recommend, before logging."""

    features: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False
    notes: list[str] = field(default_factory=list)


class DecisionEngine(ChampionLifecycle):
    """Everything a decision needs, loaded once; thread-safe; `load()` before use, `close()` after."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        catalogue: Catalogue | None = None,
        policy: PolicyConfig | None = None,
        store: feast.FeatureStore | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.catalogue = catalogue or load_catalogue()
        policy_cfg = policy or load_policy(self.settings.serving.policy_path)
        self.policy = DecisionPolicy(self.catalogue, policy_cfg)
        self.policy_version = _policy_digest(policy_cfg)
        self._store = store
        self._log = decision_log
        self._reader: OnlineFeatureReader | None = None
        self._bundle: ModelBundle | None = None
        self._request_context: Callable[..., dict[str, Any]] | None = None
        self._action_table: Any = None
        self._push_event: Callable[..., Any] | None = None
        self._action_index = {a: i for i, a in enumerate(self.catalogue.action_ids)}
        self._init_lifecycle()

    # ---------------------------------------------------------------- lifecycle
    @property
    def decision_log(self) -> DecisionLog:
        if self._log is None:
            raise NotReadyError("decision log not opened yet")
        return self._log

    @property
    def bundle(self) -> ModelBundle:
        b = self._bundle
        if b is None:
            raise NotReadyError("models not loaded yet")
        return b

    def load(self) -> None:
        """Open the log, the feature store and the champion models (raises NotReadyError if none registered)."""
        from nextbest import features as nbf

        if self._log is None:
            self._log = DecisionLog(
                self.settings.decision_log_uri, spool_path=self.settings.home / "decision_log_spool.jsonl"
            )
        self._log.start()
        self._request_context = nbf.request_context
        self._action_table = nbf.action_features(self.catalogue)
        self._push_event = nbf.push_event
        if self._store is None:
            self._store = nbf.get_store(self.settings)
        # A registry cache that expires makes some request pay a synchronous refresh (tens of ms): never expire
        # on the hot path; the poller thread refreshes it in the background instead.
        self._store.registry.cached_registry_proto_ttl = timedelta(0)
        self._reader = OnlineFeatureReader(self._store, nbf.NBA_SERVICE, self.settings)
        self._bundle = self._load_bundle()
        warm = RecommendRequest(customer_id=0, channel=self.catalogue.channels[0])
        self._reader.warm_up(self._entity_row(warm, DecisionContext(), datetime.now(UTC)))
        self._ready.set()
        self.load_error = None
        logger.info("decision engine ready: models %s, online store %s", self._bundle.versions, self.online_store)

    def close(self) -> None:
        """Stop background threads and drain the decision log (nothing accepted is lost)."""
        self._stop_background()
        if self._reader is not None:
            self._reader.close()
        if self._log is not None:
            self._log.close()

    @property
    def online_store(self) -> str:
        return self.settings.features.online_store

    # ---------------------------------------------------------------- models
    def _load_bundle(self, versions: Mapping[str, str] | None = None) -> ModelBundle:
        from nextbest.models.artefact import load_model

        def get(name: str) -> LoadedModel:
            v = versions.get(name) if versions else None
            # One scoring thread per model: requests are parallel across workers, not inside a request.
            return load_model(name, settings=self.settings, version=v, nthread=1)

        churn, nba = get(CHURN_MODEL), get(NBA_MODEL)
        for model in (churn, nba):  # first calls allocate; pay that before traffic
            x = np.zeros((2, len(model.feature_names)), dtype=np.float32)
            model.predict_proba(x)
            approx_contributions(model, x[:1])
        return ModelBundle(
            churn=churn,
            nba=nba,
            churn_layout=build_layout(churn.feature_names, self.catalogue, None),
            nba_layout=build_layout(nba.feature_names, self.catalogue, self._action_table),
        )

    @property
    def model_names(self) -> tuple[str, str]:
        return (CHURN_MODEL, NBA_MODEL)

    def current_versions(self) -> dict[str, str]:
        return self._bundle.versions if self._bundle is not None else {}

    def _swap_models(self, versions: Mapping[str, str]) -> dict[str, str]:
        bundle = self._load_bundle(versions)
        self._bundle = bundle  # a single reference assignment: atomic for readers
        return bundle.versions

    def status(self) -> StatusResponse:
        return StatusResponse(
            ready=self.ready,
            model_versions=self._bundle.versions if self._bundle is not None else {},
            online_store=self.online_store,
            breaker_open=bool(self._reader and self._reader.breaker_open),
            detail=self.load_error or "",
        )

    # ---------------------------------------------------------------- recommend
    def _entity_row(self, req: RecommendRequest, ctx: DecisionContext, now: datetime) -> dict[str, Any]:
        # The request fields of the nba_v1 on-demand view, built by the feature repo (one definition).
        assert self._request_context is not None
        request = self._request_context(req.channel, now, location_type=ctx.location_type)
        return {"customer_id": req.customer_id, **request}

    def read_features(self, req: RecommendRequest, ctx: DecisionContext, now: datetime) -> dict[str, Any]:
        """ONE online read (nba_v1: customer + request-context features) serves both models."""
        assert self._reader is not None
        return self._reader.read(self._entity_row(req, ctx, now))

    def recommend(
        self, req: RecommendRequest, now: datetime | None = None, timings: dict[str, float] | None = None
    ) -> RecommendResponse:
        """One decision, synchronously (the feature read still has its timeout).

        `timings`, if given, receives seconds per stage (for profiling; see benchmarks/bench_serving.py).
        """
        t0 = time.perf_counter()
        now = now or self.decision_time(req)
        ctx = _context(req)
        if self._reader is None or self._bundle is None:
            raise NotReadyError("decision engine not loaded")
        try:
            got = _Decision(features=self.read_features(req, ctx, now))
        except FeatureStoreUnavailable as exc:
            got = _Decision(degraded=True, notes=[f"degraded: {exc}"])
        if timings is not None:
            timings["feature_read"] = time.perf_counter() - t0
        return self._decide(req, ctx, now, got, t0, timings)

    def decision_time(self, req: RecommendRequest) -> datetime:
        return decision_time(self.settings, req)

    async def recommend_async(self, req: RecommendRequest, now: datetime | None = None) -> RecommendResponse:
        """One decision from an event loop, computed on the loop thread.

        Measured here: awaiting the read through `asyncio.wrap_future` + `wait_for` added ~2 ms p50 per request
        (task, timer and self-pipe wake-up), while blocking on the pool future costs ~0 -- the read is ~0.6 ms
        and the whole decision is CPU-bound under the GIL, so yielding the loop buys no concurrency. The read
        keeps its timeout (the pool future), so a dead store still costs at most `feature_timeout_ms`, then the
        circuit breaker opens and requests skip the store.
        """
        return self.recommend(req, now)

    def score_actions(self, bundle: ModelBundle, X: np.ndarray) -> np.ndarray:
        """Calibrated propensity of every candidate row in one `inplace_predict` call."""
        return bundle.nba.predict_proba(X)

    def explain(self, bundle: ModelBundle, X: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """Per-feature contributions (+ bias) of the chosen rows only, approximate (Saabas)."""
        return approx_contributions(bundle.nba, X[list(rows)])

    def score_churn(self, bundle: ModelBundle, features: Mapping[str, object]) -> float:
        return float(bundle.churn.predict_proba(customer_row(features, bundle.churn_layout).reshape(1, -1))[0])

    def _decide(
        self,
        req: RecommendRequest,
        ctx: DecisionContext,
        now: datetime,
        got: _Decision,
        t0: float,
        timings: dict[str, float] | None = None,
    ) -> RecommendResponse:
        mark = _Stopwatch(timings)
        bundle = self.bundle  # one reference for the whole request: a reload never mixes versions
        policy = self.policy
        log = self.decision_log
        decision_id = new_decision_id()
        features = got.features
        notes = got.notes
        churn_risk: float | None = None

        if got.degraded:
            customer = CustomerView(customer_id=req.customer_id, known=False)
            history = []
            only: Sequence[str] | None = policy.config.degraded_actions
        else:
            customer = customer_view(req.customer_id, features, policy.config)
            only = None
            try:
                history = log.contact_history(req.customer_id, now - timedelta(days=_history_days(policy.config)))
            except Exception as exc:  # without contact history, caps cannot be honoured: service actions only
                logger.warning("contact history unavailable (%s): service actions only", exc.__class__.__name__)
                history = []
                only = [a.id for a in self.catalogue.actions if a.kind == "service"]
                got.degraded = True
                notes.append("degraded: contact history unavailable")
            mark("contact_history")
            if customer.known:
                churn_risk = self.score_churn(bundle, features)
            else:
                notes.append("cold_start: unknown customer, profile-free defaults")
            mark("churn_score")

        screening = policy.screen(customer, req.channel, history, now, only=only)
        mark("policy_screen")
        candidates = screening.candidates
        rejected: list[Rejection] = list(screening.rejected)
        scores: dict[str, float] = {}
        X: np.ndarray | None = None
        if candidates and not got.degraded:
            idx = [self._action_index[a.id] for a in candidates]
            cust = customer_row(features, bundle.nba_layout)
            X = action_rows(len(bundle.nba.feature_names), bundle.nba_layout, cust, idx)
            props = self.score_actions(bundle, X)
        else:
            props = np.zeros(len(candidates))
        mark("nba_score")
        for a, p in zip(candidates, props, strict=True):
            scores[a.id] = float(p)
        ranked, below = policy.arbitrate(candidates, props, customer, req.channel, ctx, features, churn_risk)
        rejected.extend(below)
        chosen, outranked = policy.top_k(ranked, req.max_actions)
        rejected.extend(outranked)
        mark("policy_arbitrate")

        if chosen and X is not None:
            # Approximate contributions for the chosen rows only (~0.5 ms a row; exact SHAP is ~8x dearer).
            pos = {a.id: i for i, a in enumerate(candidates)}
            contrib = self.explain(bundle, X, [pos[r.action.id] for r in chosen])
            for r, row in zip(chosen, contrib, strict=True):
                r.reasons.extend(c for c in policy.reason_codes(bundle.nba.feature_names, row) if c not in r.reasons)
        mark("reason_codes")

        if chosen:
            try:
                log.record_contacts(
                    decision_id, req.customer_id, req.channel, now, [(r.action.id, r.action.kind) for r in chosen]
                )
            except Exception:
                # Not recorded means caps could not see it: deliver nothing rather than break the contact policy.
                logger.exception("decision log write-through failed; answering without actions")
                rejected.extend(Rejection(r.action.id, "decision_log.unavailable") for r in chosen)
                chosen = []
                got.degraded = True
                notes.append("degraded: decision log unavailable")

        mark("log_write_through")
        actions = [_action_out(rank, r) for rank, r in enumerate(chosen, 1)]
        latency_ms = (time.perf_counter() - t0) * 1000.0
        versions = bundle.versions
        log.log_decision(
            DecisionRecord(
                decision_id=decision_id,
                ts=now,
                customer_id=req.customer_id,
                channel=req.channel,
                context=req.context.model_dump(),
                features={k: v for k, v in features.items() if k != "customer_id"},
                feature_service=self._reader.service_name if self._reader else None,
                model_versions=versions,
                policy_version=self.policy_version,
                churn_risk=churn_risk,
                scores=scores,
                chosen=[a.model_dump() for a in actions],
                rejected=[{"action_id": r.action_id, "rule": r.rule, "detail": r.detail} for r in rejected],
                degraded=got.degraded,
                cold_start=not customer.known and not got.degraded,
                latency_ms=latency_ms,
            )
        )
        mark("log_enqueue")
        return RecommendResponse(
            decision_id=decision_id,
            customer_id=req.customer_id,
            channel=req.channel,
            actions=actions,
            churn_risk=churn_risk,
            model_versions=versions,
            degraded=got.degraded,
            cold_start=not customer.known and not got.degraded,
            notes=notes,
        )

    # ---------------------------------------------------------------- events and feedback
    def record_event(self, ev: EventRequest) -> EventResponse:
        """Push a real-time event to the online store and record it durably for training (both, always).

        Context signals (airport check-in, card lost, ...) and app/web page views move the customer's real-time
        state; other events (a login, a card payment) are recorded for training but change no online feature.
        """
        ts = ev.ts or datetime.now(UTC)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        payload = ev.model_dump(exclude_none=True, mode="json")
        payload["ts"] = ts.isoformat()
        event = feature_event(ev, ts)
        pushed, detail = False, ""
        if event is None:
            detail = "recorded; this event type moves no real-time feature"
        elif self._push_event is None or self._store is None:
            detail = "recorded; online store not loaded"
        else:
            try:
                pushed = self._push_event(self._store, event) is not None
                detail = "" if pushed else "recorded; this event moves no real-time feature"
            except Exception as exc:  # the store is down: the event is still kept durably, say it was not pushed
                logger.warning("push to online store failed: %s: %s", type(exc).__name__, exc)
                detail = f"recorded; push to online store failed ({type(exc).__name__})"
        self.decision_log.log_event(
            EventRecord(customer_id=ev.customer_id, ts=ts, event_type=ev.event_type, payload=payload, pushed=pushed)
        )
        return EventResponse(
            accepted=True, pushed=pushed, event_type=ev.event_type, customer_id=ev.customer_id, detail=detail
        )

    def record_feedback(self, fb: FeedbackRequest) -> FeedbackResponse:
        out = self.decision_log.record_feedback(fb.decision_id, fb.outcome, action_id=fb.action_id, ts=fb.ts)
        return FeedbackResponse(**out)


# ---------------------------------------------------------------- helpers


def decision_time(settings: Settings, req: RecommendRequest) -> datetime:
    """Now, or the request's `ts` when the settings allow simulated time (closed-loop simulation only).

    The decision log's `ts` is what contact caps and monitoring windows use, so a simulation replaying past
    days must stamp decisions with simulated time; a real channel must never move the clock (ValueError -> 400).
    Shared by every engine type, so an onboarded project treats `ts` exactly like the simulated bank.
    """
    ts = getattr(req, "ts", None)
    if ts is None:
        return datetime.now(UTC)
    if not settings.serving.simulated_time:
        raise ValueError("ts: a decision time is accepted only when serving.simulated_time is on (simulations)")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def feature_event(ev: EventRequest, ts: datetime) -> dict[str, Any] | None:
    """The event in the source-table shape `push_event` folds (context signal or digital event), or None."""
    from feature_repo.specs import SIGNAL_COLUMNS

    if ev.event_type in SIGNAL_COLUMNS:
        return {"customer_id": ev.customer_id, "ts": ts, "signal": ev.event_type, "location_type": ev.location_type}
    if ev.event_type in DIGITAL_EVENTS:
        return {
            "customer_id": ev.customer_id,
            "ts": ts,
            "event_type": ev.event_type,
            "page": ev.page,
            "channel": ev.channel or "app",
        }
    return None


class _Stopwatch:
    """Per-stage durations into a dict (no-op without one: the hot path pays a single `if`)."""

    __slots__ = ("_out", "_last")

    def __init__(self, out: dict[str, float] | None) -> None:
        self._out = out
        self._last = time.perf_counter() if out is not None else 0.0

    def __call__(self, stage: str) -> None:
        if self._out is not None:
            now = time.perf_counter()
            self._out[stage] = self._out.get(stage, 0.0) + now - self._last
            self._last = now


def _context(req: RecommendRequest) -> DecisionContext:
    c = req.context
    return DecisionContext(location_type=c.location_type, event=c.event, page=c.page)


def _history_days(cfg: PolicyConfig) -> int:
    return max(cfg.caps.window_days, cfg.caps.dismissal_cooldown_days, 1)


def _action_out(rank: int, r: RankedAction) -> RecommendedAction:
    return RecommendedAction(
        rank=rank,
        action_id=r.action.id,
        kind=r.action.kind,
        propensity=round(r.propensity, 6),
        value=r.action.value,
        priority=round(r.priority, 4),
        template_id=r.template_id,
        reason_codes=list(r.reasons),
    )


def _policy_digest(cfg: PolicyConfig) -> str:
    return "policy-" + hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]
