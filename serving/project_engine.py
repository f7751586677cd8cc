"""The decision engine of an onboarded project (a bank's own tables), behind the same endpoint contract.

Selected by `settings.serving.project_config` (an onboarding YAML with a `serving:` section; `nextbest serve
--project ...`). It has the interface `serving.service` uses of `serving.engine.DecisionEngine` (load, ready,
recommend, record_event, record_feedback, status, reload_models, close), so the HTTP contract -- request and
response shapes, probes, auth, decision log, degraded and cold-start flags -- is the same for every bank.

One `/recommend` is:
1. ONE Feast online read of the served entity (e.g. a Berka account): the views of the models that score its
   actions plus the config's extra views (eligibility, keys of other entities), under a timeout and a circuit
   breaker -- a slow or dead store gives the degraded answer ("no action"), never an error;
2. screening: the action has a template for the channel, its `eligible_if` conditions hold, it was not delivered
   within `cooldown_days` (read from the decision log), and no suitability rule withholds it. A rule scores
   another registered model (e.g. the default risk of the account's latest loan, read by the key the account's
   features hold) and withholds the actions it lists at or above its threshold;
3. each surviving action's propensity is its model's calibrated probability for that row (one predict per model);
   priority = propensity x value; top-k; reason codes from the model's approximate per-feature contributions;
4. delivered actions are committed write-through (the cool-down needs them), the full record goes to the log.

Unknown entities (no online features) get the config's `cold_start_actions`, scored on the profile-free row.
The project has no push sources, so `/events` records the event durably and says it moved no feature.
Nothing here names a bank: actions, rules, views and models all come from the config.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from nextbest.decision_log import DecisionLog, DecisionRecord, EventRecord, new_decision_id
from nextbest.errors import ConfigError, NotReadyError
from nextbest.features.store import online_number
from nextbest.onboarding.config import (
    OnboardingConfig,
    ProjectServingConfig,
    ServedAction,
    SuitabilityRule,
    feature_names_of,
    load_config,
)
from nextbest.policy import reason_code
from nextbest.settings import Settings, load_settings
from serving.engine import FeatureStoreUnavailable, decision_time
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

    from nextbest.onboarding.scoring import ProjectScorer

logger = logging.getLogger(__name__)

T = TypeVar("T")
REASONS_PER_ACTION = 3


@dataclass(frozen=True)
class ProjectModels:
    """The champion scorers in use, by registered model name; replaced as a whole, never mutated."""

    scorers: Mapping[str, ProjectScorer]

    @property
    def versions(self) -> dict[str, str]:
        return {name: s.version for name, s in self.scorers.items()}


@dataclass
class _Screened:
    candidates: list[ServedAction] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    degraded: bool = False


class ProjectEngine(ChampionLifecycle):
    """Serves an onboarded project's models; thread-safe; `load()` before use, `close()` after."""

    engine_label = "project engine"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config: OnboardingConfig | None = None,
        store: feast.FeatureStore | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        if config is None:
            path = self.settings.serving.project_config
            if path is None:
                raise ConfigError("settings.serving.project_config is not set: which onboarding config to serve?")
            config = load_config(path)
        if config.serving is None:
            raise ConfigError(
                f"project {config.project!r} has no `serving:` section; see docs/onboarding.md (Serving your project)"
            )
        self.config = config
        self.serving: ProjectServingConfig = config.serving
        self._check_channels()
        self.key = config.entities[self.serving.entity].key
        self.policy_version = "project-" + hashlib.sha256(self.serving.model_dump_json().encode()).hexdigest()[:12]
        served_models = list(dict.fromkeys(a.model for a in self.serving.actions))
        self._model_names = tuple(dict.fromkeys([*served_models, *(r.model for r in self.serving.suitability)]))
        views = list(
            dict.fromkeys(
                [*(v for m in served_models for v in config.model(m).feature_views), *self.serving.feature_views]
            )
        )
        # Feature references of the one online read ("view:feature"); names are unique (checked by the config).
        self.feature_refs = [f"{v}:{f}" for v in views for f in feature_names_of(config.view(v))]
        self.feature_views = views
        self.actions = {a.id: a for a in self.serving.actions}
        timeout_ms = self.serving.feature_timeout_ms or self.settings.serving.feature_timeout_ms
        self.timeout_s = timeout_ms / 1000.0
        self._store = store
        self._log = decision_log
        self._models: ProjectModels | None = None
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="project-read")
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()
        self._init_lifecycle()

    def _check_channels(self) -> None:
        # Requests are validated against the catalogue's channels (one schema for every project).
        from nextbest.catalogue import load_catalogue

        known = set(load_catalogue().channels)
        for action in self.serving.actions:
            if bad := sorted(set(action.templates) - known):
                raise ConfigError(
                    f"project {self.config.project!r}: action {action.id!r} has templates for unknown channel(s) "
                    f"{bad}; channels: {sorted(known)}"
                )

    # ---------------------------------------------------------------- lifecycle
    @property
    def decision_log(self) -> DecisionLog:
        if self._log is None:
            raise NotReadyError("decision log not opened yet")
        return self._log

    @property
    def models(self) -> ProjectModels:
        m = self._models
        if m is None:
            raise NotReadyError("models not loaded yet")
        return m

    @property
    def decision_log_uri(self) -> str:
        """The configured log, else a SQLite log of this project (its contact history never mixes with another's)."""
        from nextbest.onboarding.features import project_paths

        if self.settings.serving.decision_log_uri:
            return self.settings.serving.decision_log_uri
        return f"sqlite:///{project_paths(self.config, self.settings).root / 'decisions.db'}"

    def load(self) -> None:
        """Open the log, the project's feature store and its champion models (NotReadyError if not onboarded)."""
        from nextbest.onboarding.feast_repo import get_project_store
        from nextbest.onboarding.features import project_paths

        if self._log is None:
            root = project_paths(self.config, self.settings).root
            root.mkdir(parents=True, exist_ok=True)
            self._log = DecisionLog(self.decision_log_uri, spool_path=Path(root) / "decision_log_spool.jsonl")
        self._log.start()
        if self._store is None:
            self._store = get_project_store(self.config, self.settings, require_applied=True)
        self._store.registry.cached_registry_proto_ttl = timedelta(0)  # the poller refreshes it, not a request
        self._models = self._load_models()
        try:  # first reads load the registry and connections: pay that before traffic
            self._call(self._read_entity, 0, timeout=5.0)
        except Exception as exc:
            logger.warning("project online store warm-up failed (%s); answers will be degraded", exc)
        self._ready.set()
        self.load_error = None
        logger.info(
            "project engine %s ready: models %s, online store %s",
            self.config.project,
            self._models.versions,
            self.online_store,
        )

    def close(self) -> None:
        """Stop background threads and drain the decision log (nothing accepted is lost)."""
        self._stop_background()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._log is not None:
            self._log.close()

    @property
    def online_store(self) -> str:
        return f"{self.settings.features.online_store} (project {self.config.project})"

    # ---------------------------------------------------------------- models
    def _load_models(self, versions: Mapping[str, str] | None = None) -> ProjectModels:
        from nextbest.models.artefact import load_model
        from nextbest.onboarding.scoring import ProjectScorer

        scorers = {}
        for name in self.model_names:
            model = load_model(name, settings=self.settings, version=(versions or {}).get(name), nthread=1)
            scorer = ProjectScorer(self.config, self.settings, name, store=self._store, model=model)
            x = np.zeros((1, len(model.feature_names)), dtype=np.float32)
            scorer.score_matrix(x, [0])  # first calls allocate; pay that before traffic
            scorers[name] = scorer
        return ProjectModels(scorers=scorers)

    @property
    def model_names(self) -> tuple[str, ...]:
        return self._model_names

    def current_versions(self) -> dict[str, str]:
        return self._models.versions if self._models is not None else {}

    def _swap_models(self, versions: Mapping[str, str]) -> dict[str, str]:
        models = self._load_models(versions)
        self._models = models  # a single reference assignment: atomic for readers
        return models.versions

    def status(self) -> StatusResponse:
        return StatusResponse(
            ready=self.ready,
            model_versions=self._models.versions if self._models is not None else {},
            online_store=self.online_store,
            breaker_open=self.breaker_open,
            detail=self.load_error or "",
        )

    # ---------------------------------------------------------------- online reads with a timeout
    @property
    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    def _call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run one store read in the pool under the timeout and the circuit breaker."""
        if self.breaker_open:
            raise FeatureStoreUnavailable("circuit open after repeated online-store failures")
        budget = timeout or self.timeout_s
        fut = self._pool.submit(fn, *args)
        try:
            out = fut.result(timeout=budget)
        except cf.TimeoutError as exc:
            self._record(False)
            raise FeatureStoreUnavailable(f"online read exceeded {budget * 1000:.0f} ms") from exc
        except Exception as exc:  # any store error -> degraded answer, never a 500
            self._record(False)
            raise FeatureStoreUnavailable(f"online read failed: {exc.__class__.__name__}: {exc}") from exc
        self._record(True)
        return out

    def _record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= self.settings.serving.breaker_failures:
                self._open_until = time.monotonic() + self.settings.serving.breaker_reset_s
                self._failures = 0
                logger.warning(
                    "project online store failing: circuit open for %.1f s", self.settings.serving.breaker_reset_s
                )

    def _read_entity(self, entity_id: int) -> dict[str, Any]:
        assert self._store is not None
        # a fresh list: Feast's Redis read appends to the list it is given (reads grew with every request)
        refs = list(self.feature_refs)
        resp = self._store.get_online_features(features=refs, entity_rows=[{self.key: int(entity_id)}])
        return {k: v[0] for k, v in resp.to_dict().items()}

    def read_features(self, entity_id: int) -> dict[str, Any]:
        """ONE online read of the served entity: every view its action models and rules need."""
        return self._call(self._read_entity, entity_id)

    # ---------------------------------------------------------------- recommend
    def recommend(self, req: RecommendRequest, now: datetime | None = None) -> RecommendResponse:
        """One decision for the entity `req.customer_id` on `req.channel` ("no action" is a valid answer)."""
        t0 = time.perf_counter()
        now = now or decision_time(self.settings, req)
        models = self.models  # one reference for the whole request: a reload never mixes versions
        log = self.decision_log
        decision_id = new_decision_id()
        notes: list[str] = []
        features: dict[str, Any] = {}
        degraded = False
        try:
            features = self.read_features(req.customer_id)
        except FeatureStoreUnavailable as exc:
            degraded = True
            notes.append(f"degraded: {exc}")
        known = any(online_number(v) == online_number(v) for k, v in features.items() if k != self.key)
        cold_start = not known and not degraded
        if cold_start:
            notes.append("cold_start: unknown entity, profile-free defaults")

        screened = _Screened(degraded=degraded) if degraded else self._screen(req, features, known, now, models)
        notes.extend(screened.notes)
        degraded = degraded or screened.degraded
        rejected = screened.rejected

        scores: dict[str, float] = {}
        rows: dict[str, np.ndarray] = {}
        for name in dict.fromkeys(a.model for a in screened.candidates):
            scorer = models.scorers[name]
            rows[name] = scorer.matrix([features])
            scores.update(
                {a.id: float(scorer.model.predict_proba(rows[name])[0]) for a in screened.candidates if a.model == name}
            )
        ranked = []
        for a in screened.candidates:
            p = scores[a.id]
            if p < self.serving.min_propensity:
                rejected.append(
                    _rejection(a.id, "propensity.below_minimum", f"{p:.4f} < {self.serving.min_propensity}")
                )
            else:
                ranked.append((p * a.value, p, a))
        ranked.sort(key=lambda r: (-r[0], r[2].id))
        k = min(req.max_actions, self.serving.max_actions)
        chosen, outranked = ranked[:k], ranked[k:]
        rejected.extend(_rejection(a.id, "arbitration.outranked") for _, _, a in outranked)

        actions = [
            RecommendedAction(
                rank=rank,
                action_id=a.id,
                kind=a.kind,
                propensity=round(p, 6),
                value=a.value,
                priority=round(priority, 4),
                template_id=a.templates[req.channel],
                reason_codes=self._reasons(models.scorers[a.model], rows[a.model]),
            )
            for rank, (priority, p, a) in enumerate(chosen, 1)
        ]
        if actions:
            try:
                log.record_contacts(
                    decision_id, req.customer_id, req.channel, now, [(a.action_id, a.kind) for a in actions]
                )
            except Exception:
                # Not recorded means the cool-down could not see it: deliver nothing rather than break the policy.
                logger.exception("decision log write-through failed; answering without actions")
                rejected.extend(_rejection(a.action_id, "decision_log.unavailable") for a in actions)
                actions = []
                degraded = True
                notes.append("degraded: decision log unavailable")
        versions = models.versions
        log.log_decision(
            DecisionRecord(
                decision_id=decision_id,
                ts=now,
                customer_id=req.customer_id,
                channel=req.channel,
                context=req.context.model_dump(),
                features={k: v for k, v in features.items() if k != self.key},
                feature_service=f"{self.config.project}:{','.join(self.feature_views)}",
                model_versions=versions,
                policy_version=self.policy_version,
                churn_risk=None,
                scores=scores,
                chosen=[a.model_dump() for a in actions],
                rejected=rejected,
                degraded=degraded,
                cold_start=cold_start,
                latency_ms=(time.perf_counter() - t0) * 1000.0,
            )
        )
        return RecommendResponse(
            decision_id=decision_id,
            customer_id=req.customer_id,
            channel=req.channel,
            actions=actions,
            churn_risk=None,
            model_versions=versions,
            degraded=degraded,
            cold_start=cold_start,
            notes=notes,
        )

    async def recommend_async(self, req: RecommendRequest, now: datetime | None = None) -> RecommendResponse:
        """Same as `recommend`, from the event loop (CPU-bound; the reads keep their own timeout)."""
        return self.recommend(req, now)

    def _screen(
        self, req: RecommendRequest, features: Mapping[str, Any], known: bool, now: datetime, models: ProjectModels
    ) -> _Screened:
        out = _Screened()
        pool = list(self.serving.actions) if known else [self.actions[a] for a in self.serving.cold_start_actions]
        recent: set[str] = set()
        if self.serving.cooldown_days and pool:
            try:
                since = now - timedelta(days=self.serving.cooldown_days)
                recent = {c.action_id for c in self.decision_log.contact_history(req.customer_id, since)}
            except Exception as exc:  # without contact history the cool-down cannot be honoured: offer nothing
                logger.warning("contact history unavailable (%s): no action", exc.__class__.__name__)
                out.degraded = True
                out.notes.append("degraded: contact history unavailable")
                out.rejected.extend(_rejection(a.id, "contact.history_unavailable") for a in pool)
                return out
        survivors = []
        for a in pool:
            if req.channel not in a.templates:
                out.rejected.append(_rejection(a.id, "channel.not_offered", req.channel))
                continue
            # Unknown entities have no profile to test: cold-start actions are offered on the channel alone.
            failed = next(
                (c for c in a.eligible_if if known and not _holds(c.min, c.max, features.get(c.feature))), None
            )
            if failed is not None:
                out.rejected.append(
                    _rejection(a.id, f"eligibility.{failed.feature}", str(features.get(failed.feature)))
                )
                continue
            if a.id in recent:
                out.rejected.append(
                    _rejection(a.id, "contact.cooldown", f"delivered within {self.serving.cooldown_days} days")
                )
                continue
            survivors.append(a)
        for rule in self.serving.suitability:
            blocked = [a for a in survivors if a.id in rule.blocks]
            if not blocked:
                continue
            withhold, note, degraded = self._assess(rule, features, models)
            out.degraded = out.degraded or degraded
            if note:
                out.notes.append(note)
            if withhold:
                out.rejected.extend(_rejection(a.id, rule.reason, note) for a in blocked)
                survivors = [a for a in survivors if a.id not in rule.blocks]
        out.candidates = survivors
        return out

    def _assess(
        self, rule: SuitabilityRule, features: Mapping[str, Any], models: ProjectModels
    ) -> tuple[bool, str, bool]:
        """(withhold?, note, degraded?) for one suitability rule; a rule that cannot be assessed withholds."""
        scorer = models.scorers[rule.model]
        if rule.key_feature is None:
            p = float(scorer.model.predict_proba(scorer.matrix([features]))[0])
            subject = f"{self.serving.entity} {features.get(self.key)}"
        else:
            key = online_number(features.get(rule.key_feature))
            if key != key:  # nothing of that entity to assess (e.g. the account holds no loan)
                return False, "", False
            try:
                (score,) = self._call(scorer.score, [int(key)], 0)
            except FeatureStoreUnavailable as exc:
                return True, f"degraded: suitability {rule.name} not assessable ({exc}); its actions withheld", True
            if not score.known:
                return (
                    True,
                    f"suitability {rule.name}: {scorer.key} {int(key)} has no features; its actions withheld",
                    False,
                )
            p = score.probability
            subject = f"{scorer.key} {int(key)}"
        if p >= rule.max_probability:
            return True, f"{rule.reason}: {rule.model} {p:.3f} >= {rule.max_probability} for {subject}", False
        return False, "", False

    def _reasons(self, scorer: ProjectScorer, X: np.ndarray) -> list[str]:
        """Reason codes from the top positive approximate contributions of the scored row."""
        contrib = scorer.model.contributions(X, approx=True)[0, :-1]
        codes: list[str] = []
        for j in np.argsort(-contrib, kind="stable"):
            if len(codes) >= REASONS_PER_ACTION or contrib[j] <= 0:
                break
            code = reason_code(scorer.model.feature_names[j], self.serving.reason_codes)
            if code not in codes:
                codes.append(code)
        return codes

    # ---------------------------------------------------------------- events and feedback
    def record_event(self, ev: EventRequest) -> EventResponse:
        """Record the event durably; an onboarded project has no push sources, so no online feature moves."""
        ts = ev.ts or datetime.now(UTC)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        payload = ev.model_dump(exclude_none=True, mode="json")
        payload["ts"] = ts.isoformat()
        self.decision_log.log_event(
            EventRecord(customer_id=ev.customer_id, ts=ts, event_type=ev.event_type, payload=payload, pushed=False)
        )
        return EventResponse(
            accepted=True,
            pushed=False,
            event_type=ev.event_type,
            customer_id=ev.customer_id,
            detail=(
                f"recorded; project {self.config.project!r} has no real-time features (its features are "
                "batch-materialized), so the event moved none"
            ),
        )

    def record_feedback(self, fb: FeedbackRequest) -> FeedbackResponse:
        out = self.decision_log.record_feedback(fb.decision_id, fb.outcome, action_id=fb.action_id, ts=fb.ts)
        return FeedbackResponse(**out)


# ---------------------------------------------------------------- helpers


def _holds(low: float | None, high: float | None, value: object) -> bool:
    x = online_number(value)
    if x != x:  # missing: the condition cannot be shown to hold
        return False
    return (low is None or x >= low) and (high is None or x <= high)


def _rejection(action_id: str, rule: str, detail: str = "") -> dict[str, Any]:
    return {"action_id": action_id, "rule": rule, "detail": detail}
