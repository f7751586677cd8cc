"""How a decision engine lives: readiness, loading with retry, the registry poll and the champion swap.

`serving.engine.DecisionEngine` starts without blocking the server (readiness stays false and loading retries),
polls the MLflow registry for new `champion` versions, and swaps the whole model set in one reference assignment so
an in-flight request never mixes versions. Kept apart from the engine's decision logic: this is the part every
serving engine (and the benchmark's variants) shares unchanged.
"""

from __future__ import annotations

import gc
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nextbest.errors import NotReadyError
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
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._ready = threading.Event()
        self.load_error: str | None = None
        # model -> "version N: why it was refused" for champions that could not be loaded (integrity, corruption)
        self.failed_versions: dict[str, str] = {}

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
        """Load without blocking startup; retry until it works (readiness stays false meanwhile)."""

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.load()
                    self.start_polling()
                    freeze_heap()  # as the service does after a load at startup
                    return
                except Exception as exc:  # keep the process alive and report through readiness
                    self.load_error = f"{exc.__class__.__name__}: {exc}"
                    logger.warning("%s not ready: %s (retrying in %.0f s)", self.engine_label, self.load_error, retry_s)
                    self._stop.wait(retry_s)

        t = threading.Thread(target=run, name="engine-load", daemon=True)
        t.start()
        return t

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
        """The registry's current champion versions (cheap metadata call, no download)."""
        from nextbest.models.registry import mlflow_client

        client = mlflow_client(self.settings)
        return {name: str(client.get_model_version_by_alias(name, "champion").version) for name in self.model_names}

    def reload_models(self, force: bool = False) -> ReloadResponse:
        """Swap in newly promoted champions atomically; in-flight requests keep the models they started with."""
        if not self.ready:
            raise NotReadyError(f"{self.engine_label} not loaded yet: {self.load_error or 'loading'}")
        with self._reload_lock:
            current = self.current_versions()
            latest = self.champion_versions()
            if latest == current and not force:
                return ReloadResponse(reloaded=False, model_versions=current, detail="champions unchanged")
            served = self._swap_models(latest)
            logger.info("%s: champion models reloaded: %s -> %s", self.engine_label, current, served)
            return ReloadResponse(reloaded=True, model_versions=served, detail=f"was {current}")

    def _stop_background(self) -> None:
        self._stop.set()
