"""How a decision engine lives: readiness, loading with retry, the registry poll and the champion swap.

`serving.engine.DecisionEngine` starts without blocking the server (`load_in_background`: readiness stays false,
the probes answer at once and loading retries), polls the MLflow registry for new `champion` versions, and swaps
the whole model set in one reference assignment so an in-flight request never mixes versions. Kept apart from the
engine's decision logic: this is the part every serving engine (and the benchmark's variants) shares unchanged.

A champion whose artefact is refused (`ArtefactIntegrityError`: files differ from the digest recorded at
registration; `ArtefactCorruptError`: the folder does not load) never replaces the version being served: the
reload keeps that model's current version, records `failed_versions[model] = "version N: why"` (shown by
`/status`), and does not download the refused version again until the champion moves or a forced reload. At
startup a refused champion leaves the engine not ready, with the reason in `load_error`. Registry calls are
bounded (`nextbest.models.registry.bound_registry_calls`), so an unreachable registry fails a poll, not a worker.
"""

from __future__ import annotations

import gc
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nextbest.errors import ArtefactCorruptError, ArtefactError, ArtefactIntegrityError, NotReadyError
from nextbest.models.registry import bound_registry_calls
from serving.schemas import ReloadResponse

if TYPE_CHECKING:
    import feast

    from nextbest.settings import Settings

logger = logging.getLogger(__name__)


def freeze_heap() -> int:
    """Take everything alive now (modules, models, feature registry, pydantic schemas) out of the cyclic GC.

    A loaded service holds ~420,000 container objects; a full (generation 2) collection walks them all and took
    ~200 ms here, with every request on the worker waiting behind it. Under load, the objects requests leave
    behind trigger such a collection every few thousand requests: at 250 req/s that was the p99 of hundreds of
    ms. After `gc.freeze()` a full collection walks only what was allocated since (well under 1 ms). Frozen
    objects are still freed by reference counting; only cycles among them are never collected, so collect first.
    Call once per process, after loading (the service and the benchmark's floor app do). Returns the frozen count.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class ChampionLifecycle(ABC):
    """Readiness, background load with retry, registry poll and atomic champion reload for a decision engine.

    A subclass sets `settings` and `_store` (its Feast store, or None until loaded), calls `_init_lifecycle()` in
    its constructor, sets `_ready` at the end of `load()`, and implements `model_names`, `current_versions` and
    `_swap_models`.
    """

    #: how logs and errors name this engine
    engine_label = "decision engine"
    settings: Settings
    _store: feast.FeatureStore | None

    def _init_lifecycle(self) -> None:
        bound_registry_calls()  # MLflow's own defaults let one registry call hang for minutes
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._loader: threading.Thread | None = None
        self._ready = threading.Event()
        self.load_error: str | None = None
        # model -> "version N: why it was refused" for champions that could not be loaded (integrity, corruption)
        self.failed_versions: dict[str, str] = {}
        # model -> the version refused for good (integrity, corruption): not downloaded again until the alias moves
        self._refused: dict[str, str] = {}

    # ---------------------------------------------------------------- what a subclass provides
    @abstractmethod
    def load(self) -> None:
        """Open the log, the feature store and the champion models; set `_ready` when done."""

    @property
    @abstractmethod
    def model_names(self) -> Sequence[str]:
        """The registered models this engine serves."""

    @abstractmethod
    def current_versions(self) -> dict[str, str]:
        """The versions being served now ({} before the first load)."""

    @abstractmethod
    def _swap_models(self, versions: Mapping[str, str]) -> dict[str, str]:
        """Load these versions and swap them in with one reference assignment; return the versions now served."""

    # ---------------------------------------------------------------- shared
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def load_in_background(self, retry_s: float = 5.0) -> threading.Thread:
        """Load without blocking startup; retry until it works (readiness stays false meanwhile).

        Returns at once (the server's probes answer while the registry or the store is slow or down); a second
        call while a load is running returns the running thread. A refused champion is recorded in
        `failed_versions` as well as `load_error`.
        """
        if self._loader is not None and self._loader.is_alive():
            return self._loader

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.load()
                except Exception as exc:  # keep the process alive and report through readiness
                    self._record_load_failure(exc, retry_s)
                    self._stop.wait(retry_s)
                    continue
                self.failed_versions.clear()  # every model now serves its champion
                self._refused.clear()
                self.start_polling()
                freeze_heap()  # as the service does after a load at startup
                return

        self._loader = threading.Thread(target=run, name="engine-load", daemon=True)
        self._loader.start()
        return self._loader

    def _record_load_failure(self, exc: Exception, retry_s: float) -> None:
        error = f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, ArtefactError) and exc.model:
            self.failed_versions[exc.model] = f"version {exc.version}: {exc}"
        # The same failure every few seconds is one finding: say it once loudly, then quietly.
        log = logger.warning if error != self.load_error else logger.debug
        self.load_error = error
        log("%s not ready: %s (retrying in %.0f s)", self.engine_label, error, retry_s)

    def start_polling(self) -> None:
        """Every `serving.reload_interval_s`: refresh the Feast registry and reload if a champion moved."""
        interval = self.settings.serving.reload_interval_s
        if interval <= 0 or self._poller is not None:
            return

        def poll() -> None:
            while not self._stop.wait(interval):
                try:
                    if self._store is not None:
                        self._store.refresh_registry()
                    self._poll_once()
                except Exception:
                    logger.exception("registry poll failed; keeping the current models and feature registry")

        self._poller = threading.Thread(target=poll, name="champion-poll", daemon=True)
        self._poller.start()

    def _poll_once(self) -> None:
        """What each poll does after refreshing the feature registry (an engine may also re-read its policy)."""
        self.reload_models()

    def champion_versions(self) -> dict[str, str]:
        """The registry's current champion versions (cheap metadata call, no download).

        NotReadyError when the registry does not answer (bounded by `bound_registry_calls`).
        """
        from mlflow.exceptions import MlflowException

        from nextbest.models.registry import mlflow_client

        client = mlflow_client(self.settings)
        try:
            return {n: str(client.get_model_version_by_alias(n, "champion").version) for n in self.model_names}
        except MlflowException as exc:
            raise NotReadyError(f"model registry did not answer; keeping the models being served: {exc}") from exc

    def reload_models(self, force: bool = False) -> ReloadResponse:
        """Swap in newly promoted champions atomically; in-flight requests keep the models they started with.

        A champion whose artefact is refused keeps that model on its current version (see the module docstring):
        the answer is `reloaded=False` (or True with the refusal in `detail` when other models moved).
        """
        if not self.ready:
            raise NotReadyError(f"{self.engine_label} not loaded yet: {self.load_error or 'loading'}")
        with self._reload_lock:
            current = self.current_versions()
            latest = self.champion_versions()
            self._forget_recovered(latest, current)
            wanted = {n: v if force or self._refused.get(n) != v else current.get(n, v) for n, v in latest.items()}
            if wanted == current and not force:
                return ReloadResponse(reloaded=False, model_versions=current, detail=self._unchanged(latest, current))
            served, refused = self._swap_verified(wanted, current)
            for name in served:
                if served[name] == latest.get(name):
                    self._forget(name)
            if served == current and refused:
                return ReloadResponse(reloaded=False, model_versions=current, detail=_kept(refused))
            logger.info("%s: champion models reloaded: %s -> %s", self.engine_label, current, served)
            detail = "; ".join(d for d in (f"was {current}", _kept(refused) if refused else "") if d)
            return ReloadResponse(reloaded=True, model_versions=served, detail=detail)

    def _swap_verified(
        self, wanted: Mapping[str, str], current: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """`_swap_models(wanted)`, putting back the current version of each model whose new artefact is refused.

        Returns the versions served afterwards and {model: why} for the refused ones. A model that has no current
        version to fall back on (or whose current version is the one refused) aborts the swap: all stay as they are.
        """
        target: dict[str, str] = dict(wanted)
        refused: dict[str, str] = {}
        while True:
            if refused and target == dict(current):
                return dict(current), refused
            try:
                return self._swap_models(target), refused
            except ArtefactError as exc:
                name, version = exc.model, exc.version or (target.get(exc.model) if exc.model else None)
                why = f"version {version}: {exc}"
                logger.error("%s: refused %s %s; keeping the version being served", self.engine_label, name, why)
                if name is None or name not in target:
                    raise
                refused[name] = why
                self.failed_versions[name] = why
                if isinstance(exc, (ArtefactIntegrityError, ArtefactCorruptError)) and version is not None:
                    self._refused[name] = str(version)
                if name not in current or target[name] == current[name]:
                    return dict(current), refused
                target[name] = current[name]

    def _forget_recovered(self, latest: Mapping[str, str], current: Mapping[str, str]) -> None:
        """Champions moved back to the version being served (a rollback) have nothing refused any more."""
        for name in list(self.failed_versions):
            if name in current and latest.get(name) == current[name]:
                self._forget(name)

    def _forget(self, name: str) -> None:
        self.failed_versions.pop(name, None)
        self._refused.pop(name, None)

    def _unchanged(self, latest: Mapping[str, str], current: Mapping[str, str]) -> str:
        skipped = {
            n: self.failed_versions.get(n, f"version {v}: refused") for n, v in latest.items() if v != current.get(n)
        }
        return f"champions unchanged; {_kept(skipped)}" if skipped else "champions unchanged"

    def _stop_background(self) -> None:
        self._stop.set()


def _kept(refused: Mapping[str, str]) -> str:
    return "kept the served version of " + "; ".join(f"{n} (refused {why})" for n, why in sorted(refused.items()))
