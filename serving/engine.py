"""The decision engine: one online read, the project's models, the policy, the log -- for every project.

One engine serves the simulated bank, Berka and any onboarded bank: everything that differs between them comes from
the project (`nextbest.project`): its entity and key type, its feature project (views, request-time context, push),
its models (which scores actions, which is the churn model, which a suitability rule needs), its catalogue and its
decision policy (`nextbest.policy`, the one policy the evaluation, campaigns and the twin also use). The BentoML
service (`serving.service`) and the benchmark's bare ASGI app call this class, so the benchmark compares frameworks
on exactly the same logic. One `/recommend` is:

1. ONE online read of the served entity (`nextbest.features.online`): the views of its models plus the project's
   extra views, and request-time context when the project has it, in a small pool with a timeout and a circuit
   breaker: a slow or dead store yields the degraded answer (safe service actions or nothing), never an error;
2. the profile facts, the contact history (decision log), the churn model's risk when the project has one;
3. the policy screens the catalogue (eligibility, consent, suitability, caps, cool-downs); the model rules that
   could still withhold a candidate are scored (a rule keyed by another entity, e.g. a loan, takes a second read);
4. each model scores its candidates in ONE `inplace_predict`: an action model over (action x feature) rows (the
   customer row broadcast, action attributes from the catalogue), an entity model over the customer row once;
5. arbitration and top-k; approximate contributions of the chosen rows give the reason codes;
6. delivered actions are committed write-through (caps need them at once), the full record goes write-behind.

Models and the policy are swapped atomically: a request takes one reference to each at its start; the reload
thread replaces them when the registry's `champion` alias moves or the policy file changes (validated first).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from feature_repo.actions import RELEVANCE_FEATURES, relevance_all, relevance_inputs, relevance_weights
from nextbest.assignment import ArmSpec, Assigner
from nextbest.batch_gc import gc_paused
from nextbest.catalogue import Catalogue
from nextbest.decision_log import ALL_CHANNELS, DecisionLog, DecisionRecord, EventRecord, installation_secret
from nextbest.errors import ConfigError, NotReadyError, OverloadedError
from nextbest.features.online import FeatureStoreUnavailable, OnlineAccess, OnlineReader
from nextbest.features.project import FeatureProject, feature_project
from nextbest.features.store import online_number
from nextbest.models.artefact import LoadedModel, load_model
from nextbest.policy import (
    ContactRecord,
    CustomerView,
    DecisionContext,
    DecisionPolicy,
    ModelRule,
    PolicyConfig,
    RankedAction,
    Rejection,
    RuleScore,
    Screening,
    load_policy,
)
from nextbest.pricing import check_requested_prices, load_price_response
from nextbest.project import Project, load_project, project_of
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
    ReloadResponse,
    StatusResponse,
)

if TYPE_CHECKING:
    import feast

logger = logging.getLogger(__name__)

#: the rule a candidate outside a request's `actions` (an outbound campaign's list) is rejected by
ACTION_FILTER_RULE = "campaign.action_filter"

__all__ = ["DecisionEngine", "FeatureStoreUnavailable", "ModelBundle", "decision_time"]


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelLayout:
    """Where each model input comes from: positions filled from the feature row or from action attributes."""

    customer_pos: np.ndarray  # column positions in the model matrix
    customer_names: tuple[str, ...]  # the feature row names for those positions
    action_pos: np.ndarray
    action_matrix: np.ndarray  # (n catalogue actions, len(action_pos)) in catalogue order
    # (customer, action) relevance inputs (`feature_repo.actions`): positions, the features they sum, the weights
    relevance_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    relevance_names: tuple[str, ...] = ()
    relevance_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))


@dataclass(frozen=True)
class ModelBundle:
    """The champion models in use, by registered name, with their input layouts; replaced whole, never mutated."""

    models: Mapping[str, LoadedModel]
    layouts: Mapping[str, ModelLayout]

    @property
    def versions(self) -> dict[str, str]:
        return {name: str(m.version) for name, m in self.models.items()}


def build_layout(feature_names: Sequence[str], catalogue: Catalogue, action_table: Any | None) -> ModelLayout:
    """Split a model's inputs into customer features, action attributes (`action_table`: one row per action) and,
    for an action model, the (customer, action) relevance features."""
    action_cols: set[str] = set(action_table.columns) if action_table is not None else set()
    action_cols.discard("action_id")
    relevance = set(RELEVANCE_FEATURES) if action_table is not None else set()
    c_pos, c_names, a_pos, a_names, r_pos, r_of = [], [], [], [], [], []
    for i, name in enumerate(feature_names):
        if name in action_cols:
            a_pos.append(i)
            a_names.append(name)
        elif name in relevance:
            r_pos.append(i)
            r_of.append(RELEVANCE_FEATURES.index(name))
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
    r_names = tuple(relevance_inputs(catalogue)) if r_pos else ()
    return ModelLayout(
        customer_pos=np.asarray(c_pos, dtype=np.intp),
        customer_names=tuple(c_names),
        action_pos=np.asarray(a_pos, dtype=np.intp),
        action_matrix=matrix,
        relevance_pos=np.asarray(r_pos, dtype=np.intp),
        relevance_names=r_names,
        relevance_weights=relevance_weights(catalogue, r_names)[r_of] if r_pos else np.zeros((0, 0, 0)),
    )


def customer_row(features: Mapping[str, object], layout: ModelLayout) -> np.ndarray:
    return feature_row(features, layout.customer_names)


def feature_row(features: Mapping[str, object], names: Sequence[str]) -> np.ndarray:
    return np.fromiter((online_number(features.get(n)) for n in names), dtype=np.float32, count=len(names))


#: value types `np.array(..., dtype=float)` converts exactly as `online_number` does (None: NaN)
_PLAIN = frozenset({float, int, bool, type(None), np.float64, np.float32, np.int64, np.int32, np.bool_})


def customer_matrix(rows: Sequence[Mapping[str, object]], layout: ModelLayout) -> np.ndarray:
    """`customer_row` of many feature rows, one (rows x customer features) float32 matrix: one conversion when
    every value is a number or None (the usual case), row by row otherwise (text and odd values become NaN)."""
    return feature_matrix(rows, layout.customer_names)


def feature_matrix(rows: Sequence[Mapping[str, object]], names: Sequence[str]) -> np.ndarray:
    """`feature_row` of many feature rows (see `customer_matrix`)."""
    if not rows:
        return np.zeros((0, len(names)), dtype=np.float32)
    values: list[Any] | None = None
    if len(names) > 1:  # every name in every row (the usual case): one C call per row, ~27% faster than a `get` each
        with suppress(KeyError):
            values = list(map(itemgetter(*names), rows))
    if values is None:
        values = [tuple(map(f.get, names)) for f in rows]
    if set(map(type, chain.from_iterable(values))) <= _PLAIN:
        return np.array(values, dtype=np.float64).reshape(len(rows), len(names)).astype(np.float32)
    return np.stack([feature_row(f, names) for f in rows])


def action_rows(
    model_width: int,
    layout: ModelLayout,
    customer: np.ndarray,
    action_index: Sequence[int],
    relevance_inputs: np.ndarray | None = None,
) -> np.ndarray:
    """The (actions x features) matrix: the customer row broadcast, each action's attributes filled in, and its
    relevance for this customer (`relevance_inputs`: the customer's values of `layout.relevance_names`)."""
    index = np.asarray(action_index, dtype=np.intp)
    inputs = None if relevance_inputs is None else relevance_inputs.reshape(1, -1)
    return action_rows_many(model_width, layout, customer.reshape(1, -1), np.zeros(len(index), np.intp), index, inputs)


def action_rows_many(
    model_width: int,
    layout: ModelLayout,
    customers: np.ndarray,
    customer_index: np.ndarray,
    action_index: np.ndarray,
    relevance_inputs: np.ndarray | None = None,
) -> np.ndarray:
    """`action_rows` of many customers in one matrix: row m is customer `customer_index[m]` (a row of `customers`,
    and of `relevance_inputs`: their values of `layout.relevance_names`) against action `action_index[m]`."""
    X = np.empty((len(action_index), model_width), dtype=np.float32)
    X[:, layout.customer_pos] = customers[customer_index]
    if layout.action_pos.size:
        X[:, layout.action_pos] = layout.action_matrix[action_index]
    if layout.relevance_pos.size:
        if relevance_inputs is None:
            raise ValueError("this model scores relevance features: pass the customer's relevance inputs")
        every = relevance_all(relevance_inputs, layout.relevance_weights)  # (relevance, customers, actions)
        X[:, layout.relevance_pos] = every[:, customer_index, action_index].T
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


# ---------------------------------------------------------------- one decision's working state


@dataclass
class DecisionInputs:
    """What one recommend has gathered so far, before logging."""

    features: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False
    notes: list[str] = field(default_factory=list)
    customer: CustomerView | None = None
    history: list[ContactRecord] = field(default_factory=list)
    only: Sequence[str] | None = None
    churn_risk: float | None = None
    model_scores: dict[str, float] = field(default_factory=dict)
    # Features of other entities a model rule read (e.g. the account's loan), by the rule's model.
    related: dict[str, dict[str, Any]] = field(default_factory=dict)
    request_id: str | None = None
    decided_at: datetime | None = None  # wall clock at the start (the decision's `ts` may be simulated)


@dataclass
class _Scored:
    """The candidates' propensities, and each model's matrix (rows in candidate order) for the reason codes."""

    propensities: np.ndarray
    matrices: dict[str, tuple[np.ndarray, dict[str, int]]] = field(default_factory=dict)


@dataclass
class _Pending:
    """One decision of a batch on its way through the steps."""

    req: RecommendRequest
    ctx: DecisionContext
    now: datetime
    got: DecisionInputs
    t0: float
    decision_id: str = ""
    # Experiments: the universal holdout, the arm of the served split, the campaign and its control group.
    holdout: bool = False
    arm: str | None = None
    campaign_id: str | None = None
    campaign_control: bool = False
    screening: Screening = field(default_factory=lambda: Screening([], []))
    # the feature row a batch brought (its `got.features` is a copy, plus the customer's key and the names the
    # request's context set: `context`, None when unknown), else None
    source: object | None = None
    context: frozenset[str] | None = None
    chosen: list[RankedAction] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class _Recording(Mapping[str, Any]):
    """A feature row that notes which names were looked up (all of them once it is iterated)."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row
        self.names: set[str] = set()
        self.everything = False

    def __getitem__(self, name: str) -> Any:
        self.names.add(name)
        return self.row[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.names.add(name)
        return self.row.get(name, default)

    def __contains__(self, name: object) -> bool:
        self.names.add(name)  # type: ignore[arg-type]
        return name in self.row

    def __iter__(self) -> Any:
        self.everything = True
        return iter(self.row)

    def __len__(self) -> int:
        self.everything = True
        return len(self.row)


class _SharedViews:
    """The customer views of one batch, each customer's built once when it is asked for more than once (a
    campaign's proposals: one dry run per channel and send time, the same features but for the request context).

    Exact by construction: the first view of a repeated customer is built on a `_Recording` of its row, and a later
    request of that customer reuses it only when every feature the view read has the same value in its own row
    (else its view is built anew); the reused view carries the later request's own row (`CustomerView.features`,
    which eligibility conditions read). A batch without repeats builds every view as before, nothing recorded.
    """

    def __init__(self, items: Sequence[_Pending]) -> None:
        counts = Counter(it.req.customer_id for it in items)
        self._repeated = {k for k, n in counts.items() if n > 1}
        self._built: dict[Any, tuple[CustomerView, _Recording, _Pending]] = {}

    def view(self, policy: DecisionPolicy, it: _Pending) -> CustomerView:
        """The view of `it`'s customer. Two requests that copy one row the batch brought (`_Pending.source`) differ
        at most in the names the request's context set (`_Pending.context`), so only those the view read are
        compared."""
        customer_id, features = it.req.customer_id, it.got.features
        if customer_id not in self._repeated:
            return policy.view(customer_id, features)
        built = self._built.get(customer_id)
        if built is not None:
            first, read, by = built
            row = read.row
            names = read.names
            if it.source is not None and it.source is by.source and it.context is not None and by.context is not None:
                names = names & (it.context | by.context)
            if not read.everything and all(
                (a := row.get(n, _ABSENT)) is (b := features.get(n, _ABSENT)) or a == b for n in names
            ):
                return replace(first, features=features)
        read = _Recording(features)
        view = policy.view(customer_id, read)
        view = replace(view, features=features)
        self._built[customer_id] = (view, read, it)
        return view


_ABSENT = object()


@dataclass(frozen=True)
class _Arm:
    """What one arm of the served split serves (None: the project's own policy / champions)."""

    spec: ArmSpec
    policy: DecisionPolicy | None
    policy_version: str | None
    bundle: ModelBundle | None


@dataclass(frozen=True)
class _RuleReader:
    """How a model rule keyed by another entity reads that entity (its reader and the key feature)."""

    rule: ModelRule
    reader: OnlineReader


class DecisionEngine(ChampionLifecycle):
    """Everything a decision needs, loaded once; thread-safe; `load()` before use, `close()` after."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        project: Project | None = None,
        policy: PolicyConfig | None = None,
        store: feast.FeatureStore | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.project = project or project_of(self.settings)
        self.serving, self.catalogue, project_policy = self.project.decisions()
        self.engine_label = f"decision engine ({self.project.name})"
        self.features: FeatureProject = feature_project(self.project, self.settings)
        if store is not None:
            self.features._store = store
        self._segments: Any = None
        self._set_policy(policy or project_policy)
        self.assigner = Assigner(self.project.name, self.serving.assignment)
        # The live traffic split the service serves by (the first declared); its arms' policies and models.
        splits = self.serving.assignment.splits
        self._split = splits[0] if splits else None
        self._arms: dict[str, _Arm] = {}
        self._policy_fixed = policy is not None
        self._store: feast.FeatureStore | None = None
        self._log = decision_log
        self._access: OnlineAccess | None = None
        self._push_access: OnlineAccess | None = None
        self._reader: OnlineReader | None = None
        self._rule_readers: dict[str, _RuleReader] = {}
        self._bundle: ModelBundle | None = None
        self._action_index = {a: i for i, a in enumerate(self.catalogue.action_ids)}
        self._action_model = self.project.action_models
        # Entity-level models scoring actions (one probability per customer), scored on every known customer.
        self._entity_scores = tuple(
            n for n in dict.fromkeys(self._action_model.values()) if self.project.model(n).scores == "entity"
        )
        self._action_table: Any = None
        self._init_lifecycle()

    def _set_policy(self, config: PolicyConfig) -> None:
        stamp = self._estimate_stamp(config)  # before reading it: an estimate written meanwhile is read next time
        policy = self._policy_of(config)  # validates against the catalogue first
        self.policy = policy  # one reference assignment: a request keeps the policy it started with
        self.policy_version = _policy_digest(config)
        self._estimate_seen = stamp

    def _policy_of(self, config: PolicyConfig) -> DecisionPolicy:
        """The decision policy of a config, with the project's segments bound when it refers to any."""
        segments = None
        if config.segment_names:
            from nextbest.segments import project_segments

            if self._segments is None:
                self._segments = project_segments(self.project, self.features)
            segments = self._segments
        return DecisionPolicy(self.catalogue, config, segments=segments, price_response=self._price_response(config))

    def _price_response(self, config: PolicyConfig) -> Any:
        """The price-response estimate the policy prices with (`nextbest.pricing`; None: list prices)."""
        if not self.catalogue.pricing or not config.pricing.personalise:
            return None
        from nextbest.pricing import price_response_path

        return load_price_response(price_response_path(self.project.home(self.settings), config.pricing))

    def _estimate_stamp(self, config: PolicyConfig) -> tuple[str, int, int] | None:
        """The price-response estimate file the policy prices with: (path, mtime, size); None when none is read."""
        if not self.catalogue.pricing or not config.pricing.personalise:
            return None
        from nextbest.pricing import price_response_path

        path = price_response_path(self.project.home(self.settings), config.pricing)
        try:
            st = path.stat()
        except OSError:
            return None
        return (str(path), st.st_mtime_ns, st.st_size)

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
        self._open_log()
        self._store = self.features.store()
        # A registry cache that expires makes some request pay a synchronous refresh (tens of ms): never expire
        # on the hot path; the poller thread refreshes it in the background instead.
        self._store.registry.cached_registry_proto_ttl = timedelta(0)
        self._open_readers()
        if self.project.kind == "genome":
            from nextbest.features import action_features

            self._action_table = action_features(self.catalogue)
        self._bundle = self._load_bundle()
        self._load_arms()
        self._check_feature_names()
        assert self._reader is not None
        self._reader.warm_up(self._warm_key(), self.features.request_row(self.catalogue.channels[0], datetime.now(UTC)))
        self._ready.set()
        self.load_error = None
        logger.info("%s ready: models %s, online store %s", self.engine_label, self._bundle.versions, self.online_store)

    def _open_log(self) -> None:
        if self._log is None:
            home = self.project.home(self.settings)
            home.mkdir(parents=True, exist_ok=True)
            self._log = DecisionLog(
                self.project.decision_log_uri(self.settings),
                spool_path=home / "decision_log_spool.jsonl",
                journal_dir=home / "journal",
                key_type=self.project.served.key_type,
                id_secret=decision_id_secret(self.settings),
            )
        self._log.start()
        self._log.remember_policy(self.policy_version, self.policy.config.model_dump(mode="json"))

    def _open_readers(self) -> None:
        timeout_ms = self.serving.feature_timeout_ms or self.settings.serving.feature_timeout_ms
        serving = self.settings.serving
        self._access = OnlineAccess(timeout_ms / 1000.0, serving.breaker_failures, serving.breaker_reset_s)
        # Pushes in their own small pool, bounded by a timeout: a hung store cannot take the reads' threads.
        push_s = max(self.settings.features.redis_timeout_s, timeout_ms / 1000.0)
        self._push_access = OnlineAccess(push_s, serving.breaker_failures, serving.breaker_reset_s, threads=2)
        entity = self.serving.entity
        services = [m.feature_service for m in self.project.models if m.entity == entity]
        views = self.features.served_views(entity, services, self.serving.feature_views)
        self._reader = self._reader_for(entity, views, context=self.features.context)
        for rule in self.policy.config.model_rules:
            spec = self.project.model(rule.model)
            if spec.entity != entity:
                rule_views = self.features.served_views(spec.entity, [spec.feature_service])
                self._rule_readers[rule.name] = _RuleReader(rule, self._reader_for(spec.entity, rule_views, None))

    def _reader_for(self, entity: str, views: Sequence[str], context: Any) -> OnlineReader:
        assert self._access is not None and self._store is not None
        ent = self.project.entities[entity]
        return OnlineReader(
            self._store,
            ent.key,
            ent.key_type,
            [(v, self.features.view_fields(v)) for v in views],
            self._access,
            context=context,
        )

    def _warm_key(self) -> int | str:
        return 0 if self.project.served.key_type == "int" else "warm-up"

    def _check_feature_names(self) -> None:
        """Fail at load, not per request, when a policy or model names a feature the online read does not return."""
        assert self._reader is not None and self._bundle is not None
        read = set(self._reader.fields) | set(self._context_names())
        cfg = self.policy.config
        named = {c.feature for a in self.catalogue.actions for c in a.eligibility.conditions}
        named |= {r.key_feature for r in cfg.model_rules if r.key_feature}
        named |= set(cfg.profile.identity_features)
        missing = sorted(named - read)
        if missing:
            raise ConfigError(f"project {self.project.name!r}: the policy names feature(s) {missing} the read lacks")
        for name in self._entity_models():
            layout = self._bundle.layouts[name]
            absent = sorted({*layout.customer_names, *layout.relevance_names} - read)
            if absent:
                raise ConfigError(f"model {name!r} needs feature(s) {absent[:10]} the served read does not return")

    def _context_names(self) -> tuple[str, ...]:
        if self.features.context is None:
            return ()
        from feature_repo.specs import CONTEXT_FIELDS

        return tuple(CONTEXT_FIELDS)

    def close(self) -> None:
        """Stop background threads and drain the decision log (nothing accepted is lost)."""
        self._stop_background()
        for access in (self._access, self._push_access):
            if access is not None:
                access.close()
        if self._log is not None:
            self._log.close()

    @property
    def online_store(self) -> str:
        return self.settings.features.online_store

    @property
    def breaker_open(self) -> bool:
        return bool(self._access and self._access.breaker_open)

    # ---------------------------------------------------------------- models and policy
    def _entity_models(self) -> list[str]:
        """The served models keyed by the served entity (scored on its feature row)."""
        entity = self.serving.entity
        return [n for n in self.project.served_models if self.project.model(n).entity == entity]

    def _load_bundle(self, versions: Mapping[str, str] | None = None) -> ModelBundle:
        models: dict[str, LoadedModel] = {}
        layouts: dict[str, ModelLayout] = {}
        for name in self.project.served_models:
            v = versions.get(name) if versions else None
            # One scoring thread per model: requests are parallel across workers, not inside a request.
            model = load_model(name, settings=self.settings, version=v, nthread=1)
            x = np.zeros((2, len(model.feature_names)), dtype=np.float32)
            model.predict_proba(x)  # first calls allocate; pay that before traffic
            approx_contributions(model, x[:1])
            scores_actions = self.project.model(name).scores == "action"
            layouts[name] = build_layout(
                model.feature_names, self.catalogue, self._action_table if scores_actions else None
            )
            models[name] = model
        return ModelBundle(models=models, layouts=layouts)

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.project.served_models

    def current_versions(self) -> dict[str, str]:
        return self._bundle.versions if self._bundle is not None else {}

    def _swap_models(self, versions: Mapping[str, str]) -> dict[str, str]:
        bundle = self._load_bundle(versions)
        self._bundle = bundle  # a single reference assignment: atomic for readers
        return bundle.versions

    def reload(self, force: bool = False) -> ReloadResponse:
        """Admin reload: the policy file first (validated: a bad file is refused, the old policy kept), then the
        registry's champions. ConfigError when the edited policy is invalid."""
        changed = self.reload_policy()
        out = self.reload_models(force=force)
        detail = "; ".join(d for d in (f"policy now {self.policy_version}" if changed else "", out.detail) if d)
        return out.model_copy(update={"policy_version": self.policy_version, "detail": detail})

    def reload_policy(self) -> bool:
        """Re-read the project's policy (its file, or `serving.policy_path`); True if it changed. Invalid: the old
        policy stays and ConfigError says why."""
        if self._policy_fixed:
            return False
        if self.settings.serving.policy_path is not None:
            config = load_policy(self.settings.serving.policy_path)
        else:
            config = load_project(self.project.source).decisions()[2]
        if _policy_digest(config) == self.policy_version:
            if self._estimate_stamp(config) == self._estimate_seen:
                return False
            try:  # a new price-response estimate (`nextbest pricing fit`), the same policy file
                self._set_policy(config)
            except (ValueError, KeyError, TypeError) as exc:  # an unreadable estimate: the old policy stays
                raise ConfigError(f"price-response estimate {self._estimate_stamp(config)}: {exc}") from None
            logger.info("%s: price-response estimate reloaded: %s", self.engine_label, self._estimate_seen)
            return True
        before = self.policy_version
        self._set_policy(config)
        if self._log is not None:
            self._log.remember_policy(self.policy_version, config.model_dump(mode="json"))
        logger.info("%s: decision policy reloaded: %s -> %s", self.engine_label, before, self.policy_version)
        return True

    def _poll_once(self) -> None:
        """The poller's step: the policy file (an edit reaches every worker) and the champions."""
        try:
            self.reload_policy()
        except ConfigError as exc:
            logger.error("edited decision policy refused, keeping %s: %s", self.policy_version, exc)
        self.reload_models()
        try:
            self._load_arms(only_if_changed=True)
        except (ConfigError, NotReadyError) as exc:
            logger.error("%s: the split's arms not refreshed, keeping them: %s", self.engine_label, exc)

    # ---------------------------------------------------------------- the live split's arms
    def _load_arms(self, only_if_changed: bool = False) -> None:
        """Each arm's policy (its file) and models (versions or aliases over the champions) of the served split.

        An arm that names neither serves the project's own; an arm's model not named follows the champion. With
        `only_if_changed` (the poller) an arm is rebuilt only when the versions it resolves to moved.
        """
        if self._split is None:
            return
        arms = dict(self._arms)
        for spec in self._split.arms:
            versions = {**self.bundle.versions, **self._resolve(spec.models)} if spec.models else None
            old = arms.get(spec.name)
            if only_if_changed and old is not None and (old.bundle.versions if old.bundle else None) == versions:
                continue
            policy, version = (old.policy, old.policy_version) if old is not None else (None, None)
            if spec.policy is not None and old is None:
                config = load_policy(self._arm_path(spec.policy))
                policy, version = self._policy_of(config), _policy_digest(config)
                self.decision_log.remember_policy(version, config.model_dump(mode="json"))
            bundle = self._load_bundle(versions) if versions is not None else None
            arms[spec.name] = _Arm(spec, policy, version, bundle)
        self._arms = arms  # one reference assignment

    def _arm_path(self, path: str) -> Path:
        p = Path(path)
        if not p.is_absolute() and self.project.source is not None:
            p = self.project.source.parent / p
        if not p.is_file():
            raise ConfigError(f"split {self._split.name if self._split else '?'}: arm policy file {p} not found")
        return p

    def _resolve(self, models: Mapping[str, str]) -> dict[str, str]:
        """Model name -> version for an arm's versions and registry aliases (e.g. `challenger`)."""
        from mlflow.exceptions import MlflowException

        from nextbest.models.registry import mlflow_client

        out: dict[str, str] = {}
        for name, ref in models.items():
            if name not in self.project.served_models:
                raise ConfigError(f"split arm names model {name!r}; served: {', '.join(self.project.served_models)}")
            if ref.isdigit():
                out[name] = ref
                continue
            try:
                out[name] = str(mlflow_client(self.settings).get_model_version_by_alias(name, ref).version)
            except MlflowException as exc:
                raise NotReadyError(f"model {name!r} has no version with alias {ref!r}") from exc
        return out

    def status(self) -> StatusResponse:
        return StatusResponse(
            ready=self.ready,
            project=self.project.name,
            model_versions=self._bundle.versions if self._bundle is not None else {},
            policy_version=self.policy_version,
            failed_versions=dict(self.failed_versions),
            online_store=self.online_store,
            breaker_open=self.breaker_open,
            detail=self.load_error or "",
        )

    # ---------------------------------------------------------------- recommend
    def decision_time(self, req: RecommendRequest) -> datetime:
        return decision_time(self.settings, req)

    def read_features(self, req: RecommendRequest, ctx: DecisionContext, now: datetime) -> dict[str, Any]:
        """ONE online read of the served entity serves every model keyed by it (and the policy)."""
        assert self._reader is not None
        request = self.features.request_row(req.channel, now, location_type=ctx.location_type)
        return self._reader.read(req.customer_id, request)

    def recommend(
        self,
        req: RecommendRequest,
        now: datetime | None = None,
        timings: dict[str, float] | None = None,
        request_id: str | None = None,
    ) -> RecommendResponse:
        """One decision, synchronously (the feature read still has its timeout).

        `timings`, if given, receives seconds per stage (for profiling; see benchmarks/bench_serving.py).
        ValueError (-> HTTP 400) for a key of the wrong type, an unknown channel or a refused `ts`;
        OverloadedError (-> 429) when the decision log is backlogged (answering would outrun what it can keep).
        """
        t0 = time.perf_counter()
        decided_at = datetime.now(UTC)
        self.project.parse_key(req.customer_id)
        if self._erased(req.customer_id):
            return self._forgotten(req)
        self._check_backlog()
        if req.channel not in self.catalogue.channels:
            raise ValueError(f"channel: unknown channel {req.channel!r}; known: {', '.join(self.catalogue.channels)}")
        self._check_actions(req)
        now = now or self.decision_time(req)
        ctx = decision_context(req)
        if self._reader is None or self._bundle is None:
            raise NotReadyError("decision engine not loaded")
        try:
            got = DecisionInputs(features=self.read_features(req, ctx, now))
        except FeatureStoreUnavailable as exc:
            got = DecisionInputs(degraded=True, notes=[f"degraded: {exc}"])
        if timings is not None:
            timings["feature_read"] = time.perf_counter() - t0
        got.request_id = request_id
        got.decided_at = decided_at
        return self._decide(req, ctx, now, got, t0, timings)

    def decide_batch(
        self,
        requests: Sequence[RecommendRequest],
        features: Sequence[Mapping[str, Any]] | None = None,
        now: Sequence[datetime] | None = None,
        timings: dict[str, float] | None = None,
        dry_run: bool = False,
        campaign_id: str | None = None,
        controls: Sequence[bool] | None = None,
    ) -> list[RecommendResponse]:
        """Many decisions through the steps of `recommend`, batched: what campaigns and the policy twin call.

        `features`: each request's feature row (the online read's names; e.g. the genome of a simulated day or the
        latest offline values), else one online read per request. `now`: each decision's time (default as
        `recommend`). A customer asked for more than once is decided in order, each decision seeing the contacts of
        the earlier ones (caps hold within a batch). Erased customers get the forgotten answer. ValueError names
        the first bad request (key type, channel, time); OverloadedError when the decision log is backlogged.
        `dry_run`: decide but deliver and log nothing (a campaign's proposal, re-decided for real once chosen; the
        decisions of one customer in a dry run do not see each other's contacts, so they go in one batch and the
        customer's facts and contact history are read once; the answers carry no reason codes
        from the models' contributions, only the policy's own, e.g. churn risk). `campaign_id` is logged with each
        decision; `controls` marks the customers of the campaign's control group: decided and logged, sent nothing.
        """
        if features is not None and len(features) != len(requests):
            raise ValueError(f"features: {len(features)} rows for {len(requests)} requests")
        if now is not None and len(now) != len(requests):
            raise ValueError(f"now: {len(now)} times for {len(requests)} requests")
        if controls is not None and (campaign_id is None or len(controls) != len(requests)):
            raise ValueError("controls: one flag per request, and only with a campaign_id")
        if self._reader is None or self._bundle is None:
            raise NotReadyError("decision engine not loaded")
        self._check_backlog()
        with gc_paused():
            return self._decide_many(requests, features, now, timings, dry_run, campaign_id, controls)

    def _decide_many(
        self,
        requests: Sequence[RecommendRequest],
        features: Sequence[Mapping[str, Any]] | None,
        now: Sequence[datetime] | None,
        timings: dict[str, float] | None,
        dry_run: bool,
        campaign_id: str | None,
        controls: Sequence[bool] | None,
    ) -> list[RecommendResponse]:
        """`decide_batch` once its arguments are checked."""
        out: list[RecommendResponse | None] = [None] * len(requests)
        waves: list[list[tuple[int, _Pending]]] = []
        seen: dict[str, int] = {}
        key = self.project.served.key
        erased = self._erased_among(requests)
        brought: list[tuple[_Pending, dict[str, Any]]] = []  # rows a batch brought, and their request fields
        for n, req in enumerate(requests):
            try:
                pending = self._pending(
                    req, None if now is None else now[n], None if features is None else features[n], erased, brought
                )
            except ValueError as exc:
                raise ValueError(f"request {n}: {exc}") from exc
            if pending is None:
                out[n] = self._forgotten(req)
                continue
            pending.got.features.setdefault(key, req.customer_id)
            pending.campaign_id = campaign_id
            pending.campaign_control = bool(controls[n]) if controls is not None else False
            self._assigned(pending)
            # A customer asked twice waits for the first answer's contacts; in a dry run nothing is delivered, so
            # every request goes in the first wave (and a customer's facts are read once, `_profiles`).
            wave = seen[str(req.customer_id)] = 0 if dry_run else seen.get(str(req.customer_id), -1) + 1
            if wave == len(waves):
                waves.append([])
            waves[wave].append((n, pending))
        if brought:
            assert self._reader is not None
            names = self._reader.with_context_many([p.got.features for p, _r in brought], [r for _p, r in brought])
            for p, _r in brought:
                p.context = names
        for wave in waves:
            decided = self._decide_arms([p for _n, p in wave], timings, commit=not dry_run)
            for (n, _pending), response in zip(wave, decided, strict=True):
                out[n] = response
        return [r for r in out if r is not None]

    def _pending(
        self,
        req: RecommendRequest,
        now: datetime | None,
        features: Mapping[str, Any] | None,
        erased: set[Any],
        brought: list[tuple[_Pending, dict[str, Any]]],
    ) -> _Pending | None:
        """A batch request checked and its inputs gathered (None: an erased customer, one of `erased`). A row the
        batch brings goes to `brought` with its request fields: its context is added for the whole batch at once."""
        t0 = time.perf_counter()
        self.project.parse_key(req.customer_id)
        if erased and req.customer_id in erased:
            return None
        if req.channel not in self.catalogue.channels:
            raise ValueError(f"channel: unknown channel {req.channel!r}; known: {', '.join(self.catalogue.channels)}")
        self._check_actions(req)
        now = now or self.decision_time(req)
        ctx = decision_context(req)
        if features is not None:
            request = self.features.request_row(req.channel, now, location_type=ctx.location_type)
            pending = _Pending(req, ctx, now, DecisionInputs(features=dict(features)), t0, source=features)
            pending.got.decided_at = datetime.now(UTC)
            brought.append((pending, request))
            return pending
        try:
            got = DecisionInputs(features=self.read_features(req, ctx, now))
        except FeatureStoreUnavailable as exc:
            got = DecisionInputs(degraded=True, notes=[f"degraded: {exc}"])
        got.decided_at = datetime.now(UTC)
        return _Pending(req, ctx, now, got, t0)

    def _erased_among(self, requests: Sequence[RecommendRequest]) -> set[Any]:
        """The batch's customers who asked to be forgotten (one look at the tombstones for the whole batch)."""
        tombstones = self.features.tombstones
        return tombstones.matching(self.project.served.key, [r.customer_id for r in requests]) if requests else set()

    def _check_actions(self, req: RecommendRequest) -> None:
        if req.prices:
            check_requested_prices(req.prices, self.catalogue)
        if req.actions is None:
            return
        unknown = sorted(set(req.actions or ()) - set(self.catalogue.action_ids))
        if unknown:
            raise ValueError(f"actions: unknown action(s) {unknown}; known: {', '.join(self.catalogue.action_ids)}")

    def _erased(self, customer_id: int | str) -> bool:
        """Whether the customer asked to be forgotten (the project's tombstones; re-read when they change)."""
        return self.features.tombstones.contains(self.project.served.key, customer_id)

    def _forgotten(self, req: RecommendRequest) -> RecommendResponse:
        """The answer for an erased customer: nothing decided, nothing logged (a new decision would log them)."""
        return RecommendResponse(
            decision_id=self.decision_log.new_decision_id(),
            customer_id=req.customer_id,
            channel=req.channel,
            actions=[],
            churn_risk=None,
            model_versions=self.current_versions(),
            degraded=False,
            cold_start=True,
            notes=["erased: this customer was forgotten at their request; nothing is decided or logged"],
        )

    def erase(self, customer_id: int | str) -> dict[str, Any]:
        """Forget a customer everywhere (`nextbest.forget.erase_customer`) after the log wrote what it holds."""
        from nextbest.forget import erase_customer

        self.project.parse_key(customer_id)
        self.decision_log.flush()
        return erase_customer(self.project, self.settings, customer_id).to_dict()

    def _check_backlog(self) -> None:
        if self._log is not None and self._log.backlogged:
            raise OverloadedError("the decision log is behind (its database is slow or down): retry shortly")

    async def recommend_async(
        self, req: RecommendRequest, now: datetime | None = None, request_id: str | None = None
    ) -> RecommendResponse:
        """One decision from an event loop, computed on the loop thread.

        Measured here: awaiting the read through `asyncio.wrap_future` + `wait_for` added ~2 ms p50 per request
        (task, timer and self-pipe wake-up), while blocking on the pool future costs ~0 -- the read is ~0.6 ms
        and the whole decision is CPU-bound under the GIL, so yielding the loop buys no concurrency. The read
        keeps its timeout (the pool future), so a dead store still costs at most `feature_timeout_ms`, then the
        circuit breaker opens and requests skip the store.
        """
        return self.recommend(req, now, request_id=request_id)

    def _decide(
        self,
        req: RecommendRequest,
        ctx: DecisionContext,
        now: datetime,
        got: DecisionInputs,
        t0: float,
        timings: dict[str, float] | None = None,
    ) -> RecommendResponse:
        """One decision: a batch of one through the same steps as `decide_batch`."""
        return self._decide_arms([self._assigned(_Pending(req, ctx, now, got, t0))], timings)[0]

    def _assigned(self, it: _Pending) -> _Pending:
        """The customer's experiment assignment: the universal holdout and the arm of the served split."""
        key = it.req.customer_id
        it.holdout = bool(self.assigner.in_holdout(key))
        if self._split is not None:
            it.arm = str(self.assigner.arm(self._split.name, key))
        return it

    def _decide_arms(
        self, items: Sequence[_Pending], timings: dict[str, float] | None = None, commit: bool = True
    ) -> list[RecommendResponse]:
        """Each arm's customers through `_decide_all` with that arm's policy and models, answers in order."""
        arms = dict.fromkeys(it.arm for it in items)
        if len(arms) == 1:
            return self._decide_all(items, timings, commit, next(iter(arms)))
        out: list[RecommendResponse | None] = [None] * len(items)
        for arm in arms:
            index = [n for n, it in enumerate(items) if it.arm == arm]
            for n, r in zip(index, self._decide_all([items[n] for n in index], timings, commit, arm), strict=True):
                out[n] = r
        return [r for r in out if r is not None]

    def _served_by(self, arm: str | None) -> tuple[ModelBundle, DecisionPolicy, str]:
        """The models, policy and policy version an arm serves (the project's own for none)."""
        served = self._arms.get(arm) if arm is not None else None
        if served is None:
            return self.bundle, self.policy, self.policy_version
        return served.bundle or self.bundle, served.policy or self.policy, served.policy_version or self.policy_version

    def _decide_all(
        self,
        items: Sequence[_Pending],
        timings: dict[str, float] | None = None,
        commit: bool = True,
        arm: str | None = None,
    ) -> list[RecommendResponse]:
        """The decisions of distinct customers, each step batched over them (I/O and model calls once per batch);
        the policy decides each customer alone, so a decision is the same in a batch of one or of a million.
        Without `commit` nothing is delivered or logged (a dry run)."""
        mark = _Stopwatch(timings)
        # One reference each for the whole batch: no mixed versions.
        bundle, policy, policy_version = self._served_by(arm)
        for it in items:
            it.decision_id = self._new_decision_id()
        self._profiles(items, bundle, policy, mark)
        for it in items:
            got = it.got
            assert got.customer is not None
            screening = policy.screen(got.customer, it.req.channel, got.history, it.now, only=got.only)
            if it.req.actions is not None:
                screening = action_filter(screening, it.req.actions)
            it.screening = self._model_rules(screening, got, bundle, policy)
        mark("policy_screen")
        scored = self._score_all(items, bundle)
        mark("nba_score")
        for it, sc in zip(items, scored, strict=True):
            got, candidates = it.got, it.screening.candidates
            ranked, below = policy.arbitrate(
                candidates,
                sc.propensities,
                got.customer,
                it.req.channel,
                it.ctx,
                got.features,
                got.churn_risk,
                prices=it.req.prices,
            )
            it.chosen, outranked = policy.top_k(ranked, it.req.max_actions, seed=it.decision_id)
            it.rejected = [*it.screening.rejected, *below, *outranked]
        mark("policy_arbitrate")
        if commit:  # a dry run's answers carry no reason codes (a campaign's proposals are re-decided if chosen)
            self._explain_all(items, scored, bundle, policy)
        mark("reason_codes")
        if commit:
            self._deliver_all(items)
        mark("log_write_through")
        logged = policy_version if commit else None
        out, records = [], []
        for it, sc in zip(items, scored, strict=True):
            response, record = self._finish(it, sc, bundle, logged)
            out.append(response)
            if record is not None:
                records.append(record)
        if records:
            self._emit_all(records)
        mark("log_enqueue")
        return out

    def _finish(
        self, it: _Pending, scored: _Scored, bundle: ModelBundle, policy_version: str | None
    ) -> tuple[RecommendResponse, DecisionRecord | None]:
        """The decision's answer and its record with the version of the policy that made it, to log write-behind
        (no record in a dry run: no `policy_version`)."""
        got = it.got
        assert got.customer is not None
        actions = [_action_out(rank, r) for rank, r in enumerate(it.chosen, 1)]
        record = None
        if policy_version is not None:
            scores = {a.id: float(p) for a, p in zip(it.screening.candidates, scored.propensities, strict=True)}
            record = self._log_decision(it, bundle, scores, actions, policy_version)
        response = RecommendResponse(
            decision_id=it.decision_id,
            customer_id=it.req.customer_id,
            channel=it.req.channel,
            actions=actions,
            churn_risk=got.churn_risk,
            model_versions=bundle.versions,
            degraded=got.degraded,
            cold_start=not got.customer.known and not got.degraded,
            notes=got.notes,
        )
        return response, record

    def _profiles(
        self, items: Sequence[_Pending], bundle: ModelBundle, policy: DecisionPolicy, mark: _Stopwatch
    ) -> None:
        """The customers' facts, contact histories and entity scores (or the degraded / cold-start defaults)."""
        live = []
        views = _SharedViews(items)
        for it in items:
            got = it.got
            if got.degraded:
                got.customer = CustomerView(customer_id=it.req.customer_id, known=False)
                got.only = policy.config.degraded_actions
            else:
                got.customer = views.view(policy, it)
                live.append(it)
            if it.holdout or it.campaign_control:
                got.customer = replace(got.customer, holdout=it.holdout, campaign_control=it.campaign_control)
        self._histories(live, policy)
        mark("contact_history")
        known = [it for it in live if it.got.customer is not None and it.got.customer.known]
        # Every entity-level score of the customer, whatever the screening keeps: monitoring compares these with
        # the model's training rows, so they must not be a policy-filtered subset.
        churn = policy.config.churn_model
        names = list(self._entity_scores)
        if churn is not None and churn not in names:
            names.append(churn)
        for name in names:
            probabilities = self._score_entities(bundle, name, [it.got.features for it in known])
            for it, p in zip(known, probabilities, strict=True):
                it.got.model_scores[name] = float(p)
        known_ids = {id(it) for it in known}
        for it in live:
            if id(it) in known_ids:
                if churn is not None:
                    it.got.churn_risk = it.got.model_scores[churn]
            else:
                it.got.notes.append("cold_start: unknown customer, profile-free defaults")
        mark("churn_score")

    def _histories(self, items: Sequence[_Pending], policy: DecisionPolicy) -> None:
        """Each customer's contact history and consent changes, read in one go; without them caps cannot be
        honoured, so those customers get service actions only."""
        if not items:
            return
        try:
            states = self._contact_states([(it.req.customer_id, it.now) for it in items], policy)
        except Exception as exc:
            logger.warning("contact history unavailable (%s): service actions only", exc.__class__.__name__)
            service = [a.id for a in self.catalogue.actions if a.kind == "service"]
            for it in items:
                it.got.only = service
                it.got.degraded = True
                it.got.notes.append("degraded: contact history unavailable")
            return
        for it, (history, changes) in zip(items, states, strict=True):
            assert it.got.customer is not None
            it.got.history = history
            it.got.customer = policy.with_consent_changes(it.got.customer, changes)

    def _contact_states(
        self, keys: Sequence[tuple[int | str, datetime]], policy: DecisionPolicy
    ) -> list[tuple[list[ContactRecord], list[tuple[str, bool]]]]:
        """Per (customer, decision time): the contact history the caps need and the consent changes since the
        features were built, in one read of the log (a replay reads them as they stood at the decision)."""
        if len(keys) == 1:
            key, now = keys[0]
            return [self._contact_state(key, now, policy)]
        window = timedelta(days=policy.history_days)
        states = self.decision_log.contact_states([k for k, _now in keys], min(now for _k, now in keys) - window)
        out = []
        for key, now in keys:
            history, changes = states[str(key)]
            since = now - window
            out.append(([h for h in history if h.ts >= since], changes))
        return out

    def _contact_state(
        self, customer_id: int | str, now: datetime, policy: DecisionPolicy
    ) -> tuple[list[ContactRecord], list[tuple[str, bool]]]:
        return self.decision_log.contact_state(customer_id, now - timedelta(days=policy.history_days))

    def _read_subject(self, rule: ModelRule, key: int | str) -> dict[str, Any]:
        """The features of another entity a model rule assesses (a replay reads the ones the decision logged)."""
        return self._rule_readers[rule.name].reader.read(key)

    def _score_entity(self, bundle: ModelBundle, name: str, features: Mapping[str, object]) -> float:
        return float(self._score_entities(bundle, name, [features])[0])

    def _score_entities(self, bundle: ModelBundle, name: str, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        """An entity model's probabilities of many feature rows in one call."""
        if not rows:
            return np.zeros(0)
        return self._predict(bundle.models[name], customer_matrix(rows, bundle.layouts[name]))

    def _predict(self, model: LoadedModel, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the rows of X in one `inplace_predict` (the benchmark's naive variant
        overrides it)."""
        return model.predict_proba(X)

    def _contributions(self, model: LoadedModel, X: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """Per-feature contributions (+ bias) of the chosen rows only, approximate (Saabas)."""
        return approx_contributions(model, X[list(rows)])

    # ---------------------------------------------------------------- model rules
    def _model_rules(
        self, screening: Screening, got: DecisionInputs, bundle: ModelBundle, policy: DecisionPolicy
    ) -> Screening:
        """Score the model rules that could still withhold a candidate, and withhold what they rule out."""
        rules = policy.rules_needed(screening.candidates)
        if not rules or got.degraded:
            return screening
        scores = []
        for rule in rules:
            score = self._rule_score(rule, got, bundle)
            if score.probability is not None:
                got.model_scores[rule.model] = score.probability
            got.degraded = got.degraded or score.status == "unavailable"
            scores.append(score)
        screening, notes = policy.apply_model_rules(screening, scores)
        got.notes.extend(notes)
        return screening

    def _rule_score(self, rule: ModelRule, got: DecisionInputs, bundle: ModelBundle) -> RuleScore:
        if rule.key_feature is None:
            p = self._score_entity(bundle, rule.model, got.features)
            key = self.project.served.key
            return RuleScore(rule.name, "scored", p, f"{key} {got.features.get(key)}")
        raw = got.features.get(rule.key_feature)
        key = online_number(raw)
        if key != key:  # nothing of that entity to assess (e.g. the account holds no loan)
            return RuleScore(rule.name, "no_subject")
        entity = self.project.entities[self.project.model(rule.model).entity]
        subject_key: int | str = int(key) if entity.key_type == "int" else str(raw)
        subject = f"{entity.key} {subject_key}"
        try:
            features = self._read_subject(rule, subject_key)
        except FeatureStoreUnavailable:
            return RuleScore(rule.name, "unavailable", subject=subject)
        layout = bundle.layouts[rule.model]
        got.related[rule.model] = {
            "key": subject_key,
            "features": {k: v for k, v in features.items() if k != entity.key},
        }
        if not any(online_number(features.get(n)) == online_number(features.get(n)) for n in layout.customer_names):
            return RuleScore(rule.name, "unknown_subject", subject=subject)
        return RuleScore(rule.name, "scored", self._score_entity(bundle, rule.model, features), subject)

    # ---------------------------------------------------------------- scoring and reasons
    def _score_all(self, items: Sequence[_Pending], bundle: ModelBundle) -> list[_Scored]:
        """Each candidate's propensity from its model: ONE prediction per model over every customer's rows (an
        action model's (action x feature) rows, an entity model's score of the profile); none when degraded."""
        out = [_Scored(propensities=np.zeros(len(it.screening.candidates))) for it in items]
        wanted: dict[str, list[tuple[int, list[int]]]] = {}  # model -> (item, candidate positions)
        for n, it in enumerate(items):
            if it.got.degraded:
                continue
            by_model: dict[str, list[int]] = {}
            for i, a in enumerate(it.screening.candidates):
                by_model.setdefault(self._action_model[a.id], []).append(i)
            for name, rows in by_model.items():
                wanted.setdefault(name, []).append((n, rows))
        for name, parts in wanted.items():
            if self.project.model(name).scores == "action":
                self._score_actions(name, bundle, items, parts, out)
            else:
                self._score_profiles(name, bundle, items, parts, out)
        return out

    def _score_actions(
        self,
        name: str,
        bundle: ModelBundle,
        items: Sequence[_Pending],
        parts: Sequence[tuple[int, list[int]]],
        out: list[_Scored],
    ) -> None:
        model, layout = bundle.models[name], bundle.layouts[name]
        rows_of = [items[n].got.features for n, _rows in parts]
        customers = customer_matrix(rows_of, layout)
        relevance = feature_matrix(rows_of, layout.relevance_names) if layout.relevance_pos.size else None
        # One matrix for the batch (customer k's candidates are its rows), one prediction, each customer's slice.
        sizes = np.fromiter((len(rows) for _n, rows in parts), dtype=np.intp, count=len(parts))
        action_index = np.fromiter(
            (self._action_index[items[n].screening.candidates[i].id] for n, rows in parts for i in rows),
            dtype=np.intp,
            count=int(sizes.sum()),
        )
        customer_index = np.repeat(np.arange(len(parts)), sizes)
        X = action_rows_many(len(model.feature_names), layout, customers, customer_index, action_index, relevance)
        p = self._predict(model, X)
        start = 0
        for n, rows in parts:
            candidates = items[n].screening.candidates
            out[n].propensities[rows] = p[start : start + len(rows)]
            out[n].matrices[name] = (X[start : start + len(rows)], {candidates[i].id: j for j, i in enumerate(rows)})
            start += len(rows)

    def _score_profiles(
        self,
        name: str,
        bundle: ModelBundle,
        items: Sequence[_Pending],
        parts: Sequence[tuple[int, list[int]]],
        out: list[_Scored],
    ) -> None:
        layout = bundle.layouts[name]
        # A cold-start customer has no entity score yet: its profile-free row is scored for its cold-start actions.
        cold = [n for n, _rows in parts if name not in items[n].got.model_scores]
        for n, p in zip(cold, self._score_entities(bundle, name, [items[n].got.features for n in cold]), strict=True):
            items[n].got.model_scores[name] = float(p)
        for n, rows in parts:
            candidates = items[n].screening.candidates
            out[n].propensities[rows] = items[n].got.model_scores[name]
            X = customer_row(items[n].got.features, layout).reshape(1, -1)
            out[n].matrices[name] = (X, {candidates[i].id: 0 for i in rows})

    def _explain_all(
        self, items: Sequence[_Pending], scored: Sequence[_Scored], bundle: ModelBundle, policy: DecisionPolicy
    ) -> None:
        """Reason codes of the chosen actions from their model's approximate contributions: one call per model over
        the chosen rows of every customer (~0.5 ms a row; exact SHAP is ~8x dearer)."""
        by_model: dict[str, list[tuple[RankedAction, np.ndarray]]] = {}
        for it, sc in zip(items, scored, strict=True):
            for r in it.chosen:
                name = self._action_model[r.action.id]
                if name in sc.matrices:
                    X, positions = sc.matrices[name]
                    by_model.setdefault(name, []).append((r, X[positions[r.action.id]]))
        for name, picks in by_model.items():
            model = bundle.models[name]
            contrib = self._contributions(model, np.stack([row for _r, row in picks]), range(len(picks)))
            for (r, _row), c in zip(picks, contrib, strict=True):
                r.reasons.extend(code for code in policy.reason_codes(model.feature_names, c) if code not in r.reasons)

    # ---------------------------------------------------------------- the log
    def _deliver_all(self, items: Sequence[_Pending]) -> None:
        """Commit the delivered actions write-through, in one transaction (caps must see them at once); if that
        fails nothing is delivered."""
        delivering = [it for it in items if it.chosen]
        if not delivering:
            return
        try:
            self.decision_log.record_contacts_many(
                [
                    (
                        it.decision_id,
                        it.req.customer_id,
                        it.req.channel,
                        it.now,
                        [(r.action.id, r.action.kind) for r in it.chosen],
                    )
                    for it in delivering
                ]
            )
        except Exception:
            # Not recorded means caps could not see it: deliver nothing rather than break the contact policy.
            logger.exception("decision log write-through failed; answering without actions")
            for it in delivering:
                it.rejected.extend(Rejection(r.action.id, "decision_log.unavailable") for r in it.chosen)
                it.chosen = []
                it.got.degraded = True
                it.got.notes.append("degraded: decision log unavailable")

    def _log_decision(
        self,
        it: _Pending,
        bundle: ModelBundle,
        scores: dict[str, float],
        actions: list[RecommendedAction],
        policy_version: str,
    ) -> DecisionRecord | None:
        """The decision's full record (None: not logged), journalled and queued by `_emit_all` with its batch's."""
        got, req = it.got, it.req
        assert got.customer is not None
        key = self.project.served.key
        return DecisionRecord(
            decision_id=it.decision_id,
            ts=it.now,
            customer_id=req.customer_id,
            channel=req.channel,
            context=req.context.model_dump(),
            features={k: v for k, v in got.features.items() if k != key},
            feature_service=self._feature_service_label(),
            model_versions=bundle.versions,
            policy_version=policy_version,
            request_id=got.request_id,
            request=req.model_dump(mode="json"),
            decided_at=got.decided_at,
            churn_risk=got.churn_risk,
            model_scores=got.model_scores,
            related_features=got.related,
            scores=scores,
            chosen=[a.model_dump() for a in actions],
            rejected=[{"action_id": r.action_id, "rule": r.rule, "detail": r.detail} for r in it.rejected],
            degraded=got.degraded,
            cold_start=not got.customer.known and not got.degraded,
            latency_ms=(time.perf_counter() - it.t0) * 1000.0,
            holdout=it.holdout,
            split=self._split.name if self._split is not None else None,
            arm=it.arm,
            campaign_id=it.campaign_id,
            campaign_control=it.campaign_control if it.campaign_id is not None else None,
            # Each served action's probability of being served (1.0 for a greedy pick; exploration lowers it).
            choice_probabilities={r.action.id: r.choice_probability for r in it.chosen},
        )

    def _new_decision_id(self) -> str:
        return self.decision_log.new_decision_id()

    def _emit_all(self, records: Sequence[DecisionRecord]) -> None:
        """Journal and queue a batch's decision records in one go (a replay keeps its one instead, to compare with
        the logged one)."""
        self.decision_log.log_decisions(records)

    def _feature_service_label(self) -> str:
        action_services = [m.feature_service for m in self.project.models if m.name in set(self._action_model.values())]
        return ",".join(dict.fromkeys(action_services))

    # ---------------------------------------------------------------- events and feedback
    def record_event(self, ev: EventRequest, idempotency_key: str | None = None) -> EventResponse:
        """Record an event durably and act on it: a consent change at once (write-through), a real-time signal
        pushed to the online store (projects with a push source, within `features.redis_timeout_s`-bounded calls
        and the push pool's timeout).

        Context signals (airport check-in, card lost, ...) and app/web page views move the simulated bank's
        real-time state; other events (a login, a card payment), and every event of a project whose features are
        batch-materialized, are recorded for training but change no online feature. With an idempotency key (the
        `Idempotency-Key` header or `event_id`), a retry of an event already recorded changes nothing.
        """
        self.project.parse_key(ev.customer_id)
        key = _one_key(idempotency_key, ev.event_id, "event_id")
        if self._erased(ev.customer_id):
            return EventResponse(
                accepted=True, pushed=False, event_type=ev.event_type, customer_id=ev.customer_id,
                detail="erased customer: the event was not recorded (the customer was forgotten at their request)",
            )  # fmt: skip
        self._check_backlog()
        ts = self._reported_time(ev.ts)
        payload = ev.model_dump(exclude_none=True, mode="json")
        payload["ts"] = ts.isoformat()
        # The key is claimed before the event acts: a retry changes no consent and pushes nothing again.
        if key is not None and not self.decision_log.reserve_event(key):
            return EventResponse(
                accepted=True, pushed=False, event_type=ev.event_type, customer_id=ev.customer_id, duplicate=True,
                detail="a retry of an event already recorded (same idempotency key): nothing changed",
            )  # fmt: skip
        try:
            consent = self._consent_change(ev, ts)
            pushed, detail = (False, consent) if consent else self._push(ev, ts)
            record = EventRecord(
                customer_id=ev.customer_id, ts=ts, event_type=ev.event_type, payload=payload, pushed=pushed,
                event_id=key,
            )  # fmt: skip
            self.decision_log.log_event(record, reserved=True)
        except BaseException:
            if key is not None:
                self.decision_log.release_event(key)
            raise
        return EventResponse(
            accepted=True, pushed=pushed, event_type=ev.event_type, customer_id=ev.customer_id, detail=detail
        )

    def _reported_time(self, ts: datetime | None) -> datetime:
        """When an event or an outcome happened: now by default; a reported time in the future (past a day of clock
        skew) is refused unless the service runs simulated time."""
        now = datetime.now(UTC)
        if ts is None:
            return now
        if ts > now + timedelta(days=1) and not self.settings.serving.simulated_time:
            raise ValueError(f"ts: {ts.isoformat()} is in the future")
        return ts

    def _consent_change(self, ev: EventRequest, ts: datetime) -> str:
        """A consent event recorded write-through (the next decision honours it); '' for any other event."""
        if ev.event_type not in CONSENT_EVENTS:
            return ""
        channel = ev.channel or ALL_CHANNELS
        if channel != ALL_CHANNELS and channel not in self.catalogue.channels:
            raise ValueError(f"channel: unknown channel {channel!r}; known: {', '.join(self.catalogue.channels)}")
        granted = ev.event_type == "consent_granted"
        self.decision_log.record_consent(ev.customer_id, channel, granted, ts)
        where = "every channel" if channel == ALL_CHANNELS else channel
        return f"recorded; marketing consent {'granted' if granted else 'withdrawn'} on {where}, effective now"

    def _push(self, ev: EventRequest, ts: datetime) -> tuple[bool, str]:
        if not self.features.pushes:
            return False, (
                f"recorded; project {self.project.name!r} has no real-time features (its features are "
                "batch-materialized), so the event moved none"
            )
        if self._store is None or self._push_access is None:
            return False, "recorded; online store not loaded"
        event = {
            "customer": ev.customer_id,
            "event_type": ev.event_type,
            "ts": ts,
            "channel": ev.channel,
            "location_type": ev.location_type,
            "page": ev.page,
        }
        try:
            pushed = self._push_access.call(self.features.push, event)
        except FeatureStoreUnavailable as exc:  # the store is down or slow: the event is still kept durably
            logger.warning("push to online store failed: %s", exc)
            return False, f"recorded; push to online store failed ({exc})"
        return pushed, "" if pushed else "recorded; this event type moves no real-time feature"

    def record_feedback(self, fb: FeedbackRequest, idempotency_key: str | None = None) -> FeedbackResponse:
        """Join an outcome to its decision; with an idempotency key a retry changes nothing (`duplicate`)."""
        key = _one_key(idempotency_key, fb.feedback_id, "feedback_id")
        ts = self._reported_time(fb.ts)
        out = self.decision_log.record_feedback(
            fb.decision_id, fb.outcome, action_id=fb.action_id, ts=ts, value=fb.value, feedback_id=key
        )
        return FeedbackResponse(**out)


# ---------------------------------------------------------------- helpers


#: event types that change marketing consent (with `channel`, or on every channel without one)
CONSENT_EVENTS: frozenset[str] = frozenset({"consent_withdrawn", "consent_granted"})


def _one_key(header: str | None, field_value: str | None, field_name: str) -> str | None:
    """The request's idempotency key: the header or the body field (they must agree when both are sent)."""
    if header is not None and field_value is not None and header != field_value:
        raise ValueError(f"{field_name}: differs from the Idempotency-Key header ({field_value!r} vs {header!r})")
    return header or field_value


def decision_id_secret(settings: Settings) -> bytes:
    """The secret decision ids are signed with: `serving.decision_id_secret`, else this installation's key file."""
    if settings.serving.decision_id_secret:
        return settings.serving.decision_id_secret.encode()
    return installation_secret(settings.home / "secrets")


def decision_time(settings: Settings, req: RecommendRequest) -> datetime:
    """Now, or the request's `ts` when the settings allow simulated time (closed-loop simulation only).

    The decision log's `ts` is what contact caps and monitoring windows use, so a simulation replaying past
    days must stamp decisions with simulated time; a real channel must never move the clock (ValueError -> 400).
    """
    ts = getattr(req, "ts", None)
    if ts is None:
        return datetime.now(UTC)
    if not settings.serving.simulated_time:
        raise ValueError("ts: a decision time is accepted only when serving.simulated_time is on (simulations)")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


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


def action_filter(screening: Screening, actions: Sequence[str]) -> Screening:
    """A request's `actions` restriction (an outbound campaign's list): every other candidate is rejected with the
    rule `campaign.action_filter`, logged like any rule; what the policy already rejected keeps its own rule."""
    allowed = set(actions)
    dropped = [a for a in screening.candidates if a.id not in allowed]
    if not dropped:
        return screening
    return Screening(
        candidates=[a for a in screening.candidates if a.id in allowed],
        rejected=[
            *screening.rejected,
            *(Rejection(a.id, ACTION_FILTER_RULE, "not one of the requested actions") for a in dropped),
        ],
    )


def decision_context(req: RecommendRequest) -> DecisionContext:
    c = req.context
    return DecisionContext(location_type=c.location_type, event=c.event, page=c.page)


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
        price=r.price,
        band=r.band,
        band_version=r.band_version,
    )


def _policy_digest(cfg: PolicyConfig) -> str:
    """The policy's version: a digest of what it sets (defaults left out, so a release that adds a setting with
    a default does not change the version of a policy that does not use it)."""
    return "policy-" + hashlib.sha256(cfg.model_dump_json(exclude_defaults=True).encode()).hexdigest()[:12]
