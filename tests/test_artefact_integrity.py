"""Model artefact integrity: the digest recorded at registration, refused tampered or corrupt versions at load, a hot
reload that keeps the served version, bounded registry calls, and input examples without customer rows.

Two versions of one model are trained on synthetic sets into a temporary MLflow; version 2's stored calibrator is
then rewritten in the artefact store (as the incident did: a propensity of 0.11 became 0.94).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nextbest.errors import ArtefactCorruptError, ArtefactError, ArtefactIntegrityError, DataError, NotReadyError
from nextbest.models.artefact import LoadedModel, download_version, load_model
from nextbest.models.integrity import DIGEST_TAG, MANIFEST_TAG, SOURCE_TAG, artefact_digest
from nextbest.models.registry import REGISTRY_CALL_BOUNDS, mlflow_client
from nextbest.settings import MlflowSettings, ServingSettings, Settings
from serving.lifecycle import ChampionLifecycle
from tests.training_fixtures import quiet_mlflow  # noqa: F401  (autouse fixture)
from training.synthetic import synthetic_training_set

NAME = "integrity_model"


def _stored_folder(settings: Settings, version: str) -> Path:
    """The folder the artefact store holds for a version (file store under the tmp MLflow artifact root)."""
    mv = mlflow_client(settings).get_model_version(NAME, version)
    model_id = mv.source.removeprefix("models:/")
    (folder,) = [p for p in (settings.mlflow_dir / "artifacts").rglob(f"models/{model_id}/artifacts") if p.is_dir()]
    return folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1: honest champion; v2: a challenger whose stored calibrator.json was rewritten after registration."""
    from training.pipeline import FitOptions, fit_and_log
    from training.tune import TuningConfig

    settings = Settings(home=tmp_path_factory.mktemp("integrity-home"), serving=ServingSettings(reload_interval_s=0))
    config = TuningConfig(max_rounds=30, early_stopping_rounds=5, warmup_rounds=5)
    first_set = synthetic_training_set(rows=2_000, features=6, seed=31)
    first = fit_and_log(settings, first_set, FitOptions(trials=1, registered_name=NAME, config=config, seed=1))
    second_set = synthetic_training_set(rows=2_000, features=6, seed=32)
    options = FitOptions(trials=1, registered_name=NAME, config=config, seed=2, promote=False)
    second = fit_and_log(settings, second_set, options)
    calibrator = _stored_folder(settings, second.version) / "extra_files" / "calibrator.json"
    calibrator.write_text(json.dumps({"method": "platt", "a": 1.0, "b": 4.0}))  # every propensity pushed up
    return {"settings": settings, "first": first, "second": second, "first_set": first_set}


class ModelsOnly(ChampionLifecycle):
    """The lifecycle around nothing but champion models (no feature store, no log): what every engine shares."""

    engine_label = "test engine"

    def __init__(self, settings: Settings, names: Sequence[str]) -> None:
        self.settings = settings
        self._store = None
        self._names = tuple(names)
        self.models: dict[str, LoadedModel] = {}
        self.loads = 0
        self._init_lifecycle()

    def load(self) -> None:
        self.models = {n: load_model(n, settings=self.settings) for n in self._names}
        self._ready.set()
        self.load_error = None

    @property
    def model_names(self) -> Sequence[str]:
        return self._names

    def current_versions(self) -> dict[str, str]:
        return {n: str(m.version) for n, m in self.models.items()}

    def _swap_models(self, versions: Mapping[str, str]) -> dict[str, str]:
        self.loads += 1
        self.models = {n: load_model(n, settings=self.settings, version=v) for n, v in versions.items()}
        return self.current_versions()


def _champion(settings: Settings, version: str) -> None:
    mlflow_client(settings).set_registered_model_alias(NAME, "champion", version)


@pytest.fixture
def champion_v1(registry: dict[str, Any]) -> Iterator[Settings]:
    """Champion at version 1 before and after the test (tests move it)."""
    settings = registry["settings"]
    _champion(settings, registry["first"].version)
    yield settings
    _champion(settings, registry["first"].version)


# ---------------------------------------------------------------------------------------------------------------
# Registration records the digest; load verifies it


def test_registration_records_the_digest_of_the_stored_files_on_the_version_and_the_run(
    registry: dict[str, Any],
) -> None:
    settings, first = registry["settings"], registry["first"]
    client = mlflow_client(settings)
    mv = client.get_model_version(NAME, first.version)
    stored = artefact_digest(_stored_folder(settings, first.version))
    assert mv.tags[DIGEST_TAG] == stored.sha256
    manifest = json.loads(mv.tags[MANIFEST_TAG])
    assert manifest == stored.files
    for name in ("MLmodel", "model.ubj", "extra_files/calibrator.json", "extra_files/model_info.json"):
        assert name in manifest
    assert "input_example.json" in manifest and "registered_model_meta" not in manifest
    run_tags = client.get_run(first.run_id).data.tags
    assert run_tags[DIGEST_TAG] == stored.sha256 and run_tags[SOURCE_TAG] == mv.source


def test_honest_version_loads_and_scores(registry: dict[str, Any]) -> None:
    settings, first_set = registry["settings"], registry["first_set"]
    model = load_model(NAME, settings=settings, version=registry["first"].version)
    p = model.predict_frame(first_set.frame.head(50))
    assert p.shape == (50,) and ((p > 0) & (p < 1)).all()


def test_tampered_calibrator_is_refused_naming_model_version_and_file(registry: dict[str, Any]) -> None:
    settings, version = registry["settings"], registry["second"].version
    with pytest.raises(ArtefactIntegrityError, match=r"extra_files/calibrator\.json") as caught:
        load_model(NAME, settings=settings, version=version)
    assert isinstance(caught.value, NotReadyError)
    assert caught.value.model == NAME and caught.value.version == version
    assert f"version {version}" in str(caught.value) and NAME in str(caught.value)


def test_a_version_without_a_recorded_digest_is_refused_until_someone_vouches_for_it(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    from training.registry import record_artefact_digest

    settings, first = registry["settings"], registry["first"]
    client = mlflow_client(settings)
    # Registered by hand from a folder of its own: no tags, and no run that vouches for that folder.
    folder = download_version(settings, NAME, first.version, tmp_path / "copy")
    (folder / "registered_model_meta").unlink()
    bare = client.create_model_version(NAME, source=folder.as_uri())
    with pytest.raises(ArtefactIntegrityError, match="no recorded artefact digest"):
        load_model(NAME, settings=settings, version=bare.version)
    with pytest.raises(DataError, match="reason"):
        record_artefact_digest(settings, NAME, bare.version, reason=" ")
    record_artefact_digest(settings, NAME, bare.version, reason="copied v1 by hand")
    assert load_model(NAME, settings=settings, version=bare.version).version == str(bare.version)
    # A version registered by hand from the same logged model is vouched for by its run's digest.
    source = client.get_model_version(NAME, first.version).source
    copy = client.create_model_version(NAME, source=source, run_id=first.run_id)
    assert DIGEST_TAG not in (copy.tags or {})
    assert load_model(NAME, settings=settings, version=copy.version).version == str(copy.version)


def test_a_corrupt_booster_or_calibrator_raises_a_clear_error_of_the_same_family(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    settings, version = registry["settings"], registry["first"].version
    folder = download_version(settings, NAME, version, tmp_path / "dl")
    booster_copy, calibrator_copy = tmp_path / "booster", tmp_path / "calibrator"
    shutil.copytree(folder, booster_copy)
    shutil.copytree(folder, calibrator_copy)
    (booster_copy / "model.ubj").write_bytes(b"\x00not a booster")
    with pytest.raises(ArtefactCorruptError, match=f"{NAME}.*version {version}.*does not load"):
        LoadedModel.from_dir(booster_copy, name=NAME, version=version)
    (calibrator_copy / "extra_files" / "calibrator.json").write_text("{not json")
    with pytest.raises(ArtefactCorruptError, match="does not load") as caught:
        LoadedModel.from_dir(calibrator_copy, name=NAME, version=version)
    assert isinstance(caught.value, ArtefactError) and caught.value.model == NAME


def test_the_gate_and_a_manual_promotion_refuse_a_tampered_version(
    registry: dict[str, Any], champion_v1: Settings
) -> None:
    from training.datasets import time_split
    from training.registry import promote, promote_if_better

    holdout = time_split(registry["first_set"].frame).test
    with pytest.raises(ArtefactIntegrityError):
        promote_if_better(champion_v1, NAME, "2", holdout)
    with pytest.raises(ArtefactIntegrityError):
        promote(champion_v1, NAME, "2", reason="try the tampered one")
    assert str(mlflow_client(champion_v1).get_model_version_by_alias(NAME, "champion").version) == "1"


# ---------------------------------------------------------------------------------------------------------------
# Serving: the reload keeps the old version; a refused champion at startup leaves the engine not ready


def test_hot_reload_keeps_the_served_version_reports_failed_versions_and_clears_them_later(
    registry: dict[str, Any], champion_v1: Settings
) -> None:
    settings, first, second = champion_v1, registry["first"], registry["second"]
    engine = ModelsOnly(settings, [NAME])
    engine.load()
    assert engine.current_versions() == {NAME: first.version}
    before = engine.models[NAME].predict_frame(registry["first_set"].frame.head(5))

    _champion(settings, second.version)
    out = engine.reload_models()
    assert not out.reloaded and out.model_versions == {NAME: first.version}
    assert "refused" in out.detail and "calibrator.json" in out.detail
    assert engine.failed_versions[NAME].startswith(f"version {second.version}: ")
    assert "integrity" in engine.failed_versions[NAME]
    np.testing.assert_array_equal(engine.models[NAME].predict_frame(registry["first_set"].frame.head(5)), before)

    # The refused version is not downloaded again on every poll; a forced reload tries again.
    loads = engine.loads
    again = engine.reload_models()
    assert not again.reloaded and engine.loads == loads and "refused" in again.detail
    assert not engine.reload_models(force=True).reloaded and engine.loads == loads + 1

    # A new champion that loads clears the entry.
    copy = mlflow_client(settings).create_model_version(
        NAME, source=mlflow_client(settings).get_model_version(NAME, first.version).source, run_id=first.run_id
    )
    _champion(settings, copy.version)
    moved = engine.reload_models()
    assert moved.reloaded and moved.model_versions == {NAME: str(copy.version)}
    assert engine.failed_versions == {}


def test_rollback_to_the_served_version_clears_the_refusal(registry: dict[str, Any], champion_v1: Settings) -> None:
    engine = ModelsOnly(champion_v1, [NAME])
    engine.load()
    _champion(champion_v1, registry["second"].version)
    engine.reload_models()
    assert NAME in engine.failed_versions
    _champion(champion_v1, registry["first"].version)
    out = engine.reload_models()
    assert not out.reloaded and out.detail == "champions unchanged" and engine.failed_versions == {}


def _wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_refused_champion_at_startup_leaves_the_engine_not_ready_with_the_reason(
    registry: dict[str, Any], champion_v1: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("serving.lifecycle.freeze_heap", lambda: 0)  # not in the test process
    _champion(champion_v1, registry["second"].version)
    engine = ModelsOnly(champion_v1, [NAME])
    try:
        engine.load_in_background(retry_s=0.2)
        assert _wait_for(lambda: engine.load_error is not None)
        assert not engine.ready
        assert "ArtefactIntegrityError" in (engine.load_error or "") and "calibrator.json" in (engine.load_error or "")
        assert engine.failed_versions[NAME].startswith(f"version {registry['second'].version}: ")
        with pytest.raises(NotReadyError, match="not loaded yet"):
            engine.reload_models()
        # Promote an honest version: the retrying load picks it up and the refusal is gone.
        _champion(champion_v1, registry["first"].version)
        assert _wait_for(lambda: engine.ready)
        assert engine.failed_versions == {} and engine.load_error is None
    finally:
        engine._stop_background()


def test_decision_engine_keeps_its_champion_when_a_tampered_copy_is_promoted(served_world: Any, tmp_path: Path) -> None:
    """The real engine on the session's served world: a tampered copy of `nba` is refused at hot reload."""
    from serving.engine import DecisionEngine
    from serving.schemas import RecommendRequest

    settings = served_world.settings
    settings = settings.model_copy(
        update={
            "serving": settings.serving.model_copy(
                update={"reload_interval_s": 0, "decision_log_uri": f"sqlite:///{tmp_path / 'd.db'}"}
            )
        }
    )
    client = mlflow_client(settings)
    current = client.get_model_version_by_alias("nba", "champion")
    # Copy the champion's files elsewhere, tamper the copy, and register it claiming the honest digest.
    honest = download_version(settings, "nba", str(current.version), tmp_path / "honest")
    tampered = tmp_path / "tampered"
    shutil.copytree(honest, tampered)
    (tampered / "registered_model_meta").unlink(missing_ok=True)
    (tampered / "extra_files" / "calibrator.json").write_text(json.dumps({"method": "platt", "a": 1.0, "b": 4.0}))
    claimed = {k: v for k, v in current.tags.items() if k in (DIGEST_TAG, MANIFEST_TAG)}
    bad = client.create_model_version("nba", source=tampered.as_uri(), tags=claimed)
    engine = DecisionEngine(settings)
    try:
        engine.load()
        client.set_registered_model_alias("nba", "champion", bad.version)
        out = engine.reload_models()
        assert not out.reloaded and out.model_versions["nba"] == str(current.version)
        status = engine.status()
        assert status.ready and status.model_versions["nba"] == str(current.version)
        assert status.failed_versions["nba"].startswith(f"version {bad.version}: ")
        assert engine.recommend(RecommendRequest(customer_id=7, channel="app")).model_versions["nba"] == str(
            current.version
        )
    finally:
        client.set_registered_model_alias("nba", "champion", current.version)
        client.delete_model_version("nba", bad.version)  # the session's served world is shared: leave it as found
        engine.close()


# ---------------------------------------------------------------------------------------------------------------
# A registry that is unreachable or hangs: bounded calls, probes answer at once


def _blackhole() -> socket.socket:
    """A TCP port that accepts connections (kernel backlog) but never answers: a hung tracking server."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def test_a_hung_registry_fails_a_load_in_seconds_and_never_blocks_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    hole = _blackhole()
    try:
        uri = f"http://127.0.0.1:{hole.getsockname()[1]}"
        settings = Settings(home=tmp_path, mlflow=MlflowSettings(tracking_uri=uri), serving=ServingSettings())
        with pytest.raises(NotReadyError, match="did not answer"):
            load_model(NAME, settings=settings)  # the first call also pays MLflow's one-time imports (seconds)
        t0 = time.perf_counter()
        with pytest.raises(NotReadyError, match="did not answer"):
            load_model(NAME, settings=settings)
        assert time.perf_counter() - t0 < 5  # 1 s timeout, no retry (MLflow's defaults: 120 s and 7 retries)
        engine = ModelsOnly(settings, [NAME])
        t0 = time.perf_counter()
        thread = engine.load_in_background(retry_s=60)
        assert time.perf_counter() - t0 < 0.5 and not engine.ready  # a probe answers at once: not ready
        assert engine.load_in_background() is thread  # one loader at a time
        assert _wait_for(lambda: engine.load_error is not None, timeout=15)
        assert "did not answer" in (engine.load_error or "") and not engine.ready
        engine._stop_background()
    finally:
        hole.close()
        from nextbest.models.registry import use_tracking

        use_tracking(Settings(home=tmp_path))  # the fluent API away from the closed port


def test_the_service_environment_bounds_registry_calls_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.runner import service_env

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    env = service_env(Settings(home=tmp_path), workers=1)
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == REGISTRY_CALL_BOUNDS["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"  # an operator's value wins
    assert set(REGISTRY_CALL_BOUNDS) <= set(env) and "PGCONNECT_TIMEOUT" in env
    assert Path(env["NEXTBEST_CONFIG"]).stat().st_mode & 0o777 == 0o600  # the settings can hold secrets


# ---------------------------------------------------------------------------------------------------------------
# Input examples hold no customer row (erasure)


def test_the_logged_input_example_holds_no_row_of_the_training_frame(registry: dict[str, Any], tmp_path: Path) -> None:
    import mlflow

    settings, first, first_set = registry["settings"], registry["first"], registry["first_set"]
    folder = download_version(settings, NAME, first.version, tmp_path / "dl")
    raw = json.loads((folder / "input_example.json").read_text())
    example = pd.DataFrame(raw["data"], columns=raw["columns"], dtype="float64")
    features = first_set.feature_names
    assert list(example.columns) == features and len(example) == 1
    frame = first_set.frame[features].to_numpy(dtype=np.float64)
    assert not np.isclose(frame, example.to_numpy()[0], rtol=0, atol=1e-9).all(axis=1).any()
    signature = mlflow.models.get_model_info(first.model_uri).signature
    assert signature is not None and signature.inputs.input_names() == features
    assert {t.name for t in signature.inputs.input_types()} == {"double"}


def test_the_aggregate_example_is_column_medians_with_nan_for_an_all_missing_column() -> None:
    from training.tracking import aggregate_example

    frame = pd.DataFrame({"a": [1.0, 2.0, 10.0, np.nan], "b": [np.nan] * 4, "c": [True, False, True, True]})
    example = aggregate_example(frame, ["a", "b", "c"])
    assert example.shape == (1, 3) and (example.dtypes == "float64").all()
    assert example["a"].iloc[0] == 2.0 and np.isnan(example["b"].iloc[0]) and example["c"].iloc[0] == 1.0
