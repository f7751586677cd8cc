"""The distributed path (`compute: dask`, nextbest/distributed.py) on a real local Dask cluster of two worker
processes, checked against the single-process path: the simulator's chunks give the same tables and the feature
pipeline's chunks the same feature rows; training spreads
its Optuna trials over the workers on one study and fits the recipe with xgboost.dask to the same test metrics
(within a standard error of the test AUC, 0.01 of log-loss) as the single-process fit of the same parameters on the
same rows; the campaign's scoring on the workers gives the same contact list."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed_lib = pytest.importorskip("distributed")

from nextbest import distributed  # noqa: E402
from nextbest.errors import ConfigError  # noqa: E402
from nextbest.settings import Settings, load_settings  # noqa: E402
from tests.training_fixtures import quiet_mlflow  # noqa: E402, F401  (autouse fixture)


@pytest.fixture(scope="module")
def dask_client() -> Iterator[distributed_lib.Client]:
    """One LocalCluster of two single-threaded worker processes for the whole module."""
    with (
        distributed_lib.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c,
        distributed_lib.Client(c, set_as_default=False) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        with distributed.attach(client):
            yield client


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -------------------------------------------------------------------- configuration


def test_the_scheduler_setting_is_an_address_or_local_n_and_a_bad_one_is_one_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert distributed.parse_scheduler("local:3") == distributed.Scheduler(local_workers=3)
    assert distributed.parse_scheduler("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    monkeypatch.setenv("NEXTBEST_COMPUTE", "dask")
    monkeypatch.setenv("NEXTBEST_DASK_SCHEDULER", "tcp://scheduler:8786")
    settings = load_settings()
    assert distributed.enabled(settings) and settings.dask_scheduler == "tcp://scheduler:8786"
    monkeypatch.setenv("NEXTBEST_DASK_SCHEDULER", "scheduler:8786")
    with pytest.raises(ConfigError, match=r"dask_scheduler: .*NEXTBEST_DASK_SCHEDULER"):
        load_settings()
    monkeypatch.setenv("NEXTBEST_COMPUTE", "spark")
    monkeypatch.delenv("NEXTBEST_DASK_SCHEDULER")
    with pytest.raises(ConfigError, match="compute"):
        load_settings()


def test_local_compute_opens_no_client_and_dask_compute_reuses_the_attached_one(dask_client) -> None:  # type: ignore[no-untyped-def]
    with distributed.client(Settings()) as none:
        assert none is None
    with distributed.client(Settings(compute="dask", dask_scheduler="tcp://nowhere:1")) as dask:
        assert dask is dask_client  # a job inside a job (or a test's cluster) is not connected twice
    assert distributed.map_partitions(dask_client, pow, [1, 2, 3], 2) == [1, 4, 9]


# -------------------------------------------------------------------- the simulator's chunks


WORLD = {"customers": 240, "days": 30, "seed": 3, "chunk_size": 80}  # three chunks over two workers


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world simulated in this process (the reference)."""
    from nextbest.simulator import SimulationConfig, simulate_world

    out = tmp_path_factory.mktemp("dask-world") / "local"
    simulate_world(SimulationConfig(**WORLD), out, workers=1)
    return out


def test_the_simulators_chunks_on_the_workers_give_the_same_world(dask_client, world: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from nextbest.simulator import SimulationConfig, simulate_world

    config = SimulationConfig(**WORLD)
    days: list[int] = []
    simulate_world(config, tmp_path / "dask", on_progress=days.append, dask=dask_client)
    local, on_dask = _digest(world), _digest(tmp_path / "dask")
    assert len(local) > 20 and "sources/contacts/part-00002.parquet" in local
    assert on_dask == local
    assert sum(days) == config.n_chunks * config.days


# -------------------------------------------------------------------- the feature pipeline


def test_the_feature_pipelines_chunks_on_the_workers_give_the_same_feature_rows(  # type: ignore[no-untyped-def]
    dask_client, world: Path, tmp_path: Path
) -> None:
    from feature_repo.pipeline import build_feature_tables

    options = {"every_days": 7, "chunk_customers": 80}
    local = build_feature_tables(world / "sources", tmp_path / "local", **options)
    steps: list[str] = []
    on_dask = build_feature_tables(
        world / "sources", tmp_path / "dask", progress=lambda view, done, total: steps.append(view), dask=dask_client,
        **options,
    )  # fmt: skip
    assert set(on_dask) == set(local) and len(local) == 4
    for view, path in local.items():
        expected = pd.read_parquet(path)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(pd.read_parquet(on_dask[view]), expected)
    assert steps[-1] == "done" and len(steps) == 3 * 4 + 1  # every chunk's views, then the tables


# -------------------------------------------------------------------- training


def test_training_spreads_trials_over_the_workers_and_fits_the_same_model(dask_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import optuna

    from training.metrics import binary_metrics
    from training.pipeline import FitOptions, _prepare, fit_and_log
    from training.recipe import fit_recipe
    from training.synthetic import synthetic_training_set
    from training.tune import TuningConfig, booster_params

    training_set = synthetic_training_set(rows=5_000, features=8, seed=5)
    config = TuningConfig(max_rounds=60, early_stopping_rounds=10, warmup_rounds=5)
    settings = Settings(home=tmp_path, compute="dask")
    options = FitOptions(trials=4, config=config, register=False)
    result = fit_and_log(settings, training_set, options)

    study = optuna.load_study(study_name=result.study_name, storage=settings.optuna_storage)
    assert len(study.trials) == 4 and result.trials_run == 4  # one study; every trial logged here as it finished
    workers = set(dask_client.scheduler_info()["workers"])
    assert {t.user_attrs["worker"] for t in study.trials} == workers  # the trials ran on both workers

    # The single-process recipe with the same parameters on the same rows (the same split of the same frame).
    data = _prepare(settings, training_set, options, settings.training.seed)
    params = booster_params(result.best_params, settings.training.seed, config.nthread)
    local = fit_recipe(params, data.train, data.valid, config, feature_names=data.features)
    expected = binary_metrics(data.y_test, local.predict_proba(data.X_test))
    # Within one standard error of the test AUC (DeLong): the two fits cannot be told apart on the test rows.
    assert result.metrics["test_roc_auc"] == pytest.approx(expected["roc_auc"], abs=result.metrics["test_roc_auc_se"])
    assert result.metrics["test_log_loss"] == pytest.approx(expected["log_loss"], abs=0.01)


def test_a_remote_cluster_needs_a_study_its_workers_reach(dask_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from training.dask_train import study_storage

    class Remote:  # a client whose scheduler is not in this process
        cluster = None

    with pytest.raises(ConfigError, match="NEXTBEST_TRAINING__OPTUNA_STORAGE"):
        study_storage(Remote(), f"sqlite:///{tmp_path / 'optuna.db'}")  # type: ignore[arg-type]
    assert study_storage(Remote(), "postgresql://u@db:5432/optuna").startswith("postgresql")  # type: ignore[arg-type]


@pytest.mark.postgres
def test_trials_on_the_workers_share_one_postgresql_study(dask_client) -> None:  # type: ignore[no-untyped-def]
    import optuna

    from tests.test_training_postgres import PG, pg_databases  # noqa: F401  (fixture)
    from training.dask_train import run_study_dask
    from training.recipe import Rows

    rng = np.random.default_rng(1)
    X = rng.normal(size=(1_200, 5)).astype(np.float32)
    y = (rng.random(1_200) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(np.float32)
    train, valid = Rows(X[:900], y[:900]), Rows(X[900:], y[900:])
    database = _postgres_database()
    storage = f"postgresql+psycopg2://{PG}/{database}"
    try:
        from training.tune import TuningConfig

        config = TuningConfig(max_rounds=30, early_stopping_rounds=5, warmup_rounds=5)
        run_study_dask(dask_client, train, valid, [f"x{i}" for i in range(5)], 4, study_name="pg", storage=storage,
                       seed=3, config=config)  # fmt: skip
        trials = optuna.load_study(study_name="pg", storage=storage).trials
        assert len(trials) == 4
        assert {t.user_attrs["worker"] for t in trials} == set(dask_client.scheduler_info()["workers"])
    finally:
        _drop_postgres_database(database)


def _postgres_database() -> str:
    import uuid

    from tests.environment import skip_unless_ci
    from tests.test_training_postgres import _admin

    try:
        conn = _admin()
    except Exception as exc:  # pragma: no cover - only when the server is absent
        skip_unless_ci(f"PostgreSQL not reachable on 127.0.0.1:5432: {exc}")
    name = f"nextbest_dask_test_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


def _drop_postgres_database(name: str) -> None:
    from tests.test_training_postgres import _admin

    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


# -------------------------------------------------------------------- the campaign


def test_the_campaign_scored_on_the_workers_gives_the_same_contact_list(  # type: ignore[no-untyped-def]
    dask_client, served_world, tmp_path: Path
) -> None:
    from nextbest.campaigns import parse_campaign
    from nextbest.jobs.campaign import run_campaign
    from nextbest.project import load_project

    spec = parse_campaign(
        {
            "id": "dask_test",
            "channels": [{"channel": "email", "volume": 40}, {"channel": "sms", "budget": 1.5}],
            "send": {"slots": ["09:00", "18:00"]},
            "control_share": 0.2,
        },
        "dask",
    )
    project = load_project()
    lists, summaries = {}, {}
    for compute in ("local", "dask"):
        home = tmp_path / compute
        ignore = shutil.ignore_patterns("decisions.db*", "journal", "campaigns", "*spool*")
        shutil.copytree(served_world.settings.home, home, ignore=ignore)
        settings = served_world.settings.model_copy(update={"home": home, "compute": compute})
        result = run_campaign(spec, project, settings)
        lists[compute] = pd.read_parquet(result.contacts).drop(columns="decision_id")
        summaries[compute] = {k: v for k, v in result.summary.items() if k != "as_of"}
        assert result.summary["marketing_to_holdout"] == 0
    assert len(lists["local"]) > 0 and summaries["dask"] == summaries["local"]
    pd.testing.assert_frame_equal(lists["dask"], lists["local"])
