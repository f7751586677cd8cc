"""Production paths of training against the real PostgreSQL on 127.0.0.1:5432: the MLflow backend store (runs,
registry, aliases, gate) and one Optuna study shared by two worker processes at once.

Each test creates its own database (`nextbest_train_test_<random>`) and drops it afterwards, so parallel suites
and other engineers' tests never collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nextbest.settings import REPO_ROOT, Settings
from tests.environment import skip_unless_ci
from tests.training_fixtures import quiet_mlflow  # noqa: F401  (autouse fixture)
from training.synthetic import synthetic_training_set

pytestmark = pytest.mark.postgres

PG = "postgres@127.0.0.1:5432"


def _admin():
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=5)
    conn.autocommit = True
    return conn


@pytest.fixture()
def pg_databases() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases; all are dropped (with any open sessions) afterwards."""
    try:
        conn = _admin()
    except Exception as exc:  # pragma: no cover - only when the server is absent
        skip_unless_ci(f"PostgreSQL not reachable on 127.0.0.1:5432: {exc}")
    created: list[str] = []

    def create() -> str:
        name = f"nextbest_train_test_{uuid.uuid4().hex[:10]}"
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    try:
        yield create
    finally:
        with conn.cursor() as cur:
            for name in created:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def test_mlflow_on_postgresql_tracks_registers_gates_and_serves_the_champion(
    pg_databases: Callable[[], str], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from nextbest.models.artefact import load_model
    from training.pipeline import FitOptions, fit_and_log
    from training.registry import CHAMPION, alias_version, promote, read_promotion_log
    from training.tune import TuningConfig

    # Two databases: MLflow and Optuna both keep an alembic `alembic_version` table and cannot share one.
    mlflow_db, optuna_db = pg_databases(), pg_databases()
    settings = Settings(
        home=tmp_path,
        mlflow={"tracking_uri": f"postgresql://{PG}/{mlflow_db}"},  # plain form, as users write it
        training={"optuna_storage": f"postgresql+psycopg2://{PG}/{optuna_db}"},
    )
    data = synthetic_training_set(rows=4_000, features=8, seed=5)
    config = TuningConfig(max_rounds=80, early_stopping_rounds=10)
    options = FitOptions(trials=2, registered_name="pg_churn", config=config)
    first = fit_and_log(settings, data.without_features(["f00"]), options)
    second = fit_and_log(settings, data, options)

    assert first.promoted and second.promoted and second.version == "2"
    assert alias_version(settings, "pg_churn", CHAMPION) == "2"
    # Runs, nested trials and registry rows really live in PostgreSQL (read back with a plain client).
    client = MlflowClient(tracking_uri=f"postgresql+psycopg2://{PG}/{mlflow_db}")
    nested = client.search_runs([second.experiment_id], f"tags.mlflow.parentRunId = '{second.run_id}'")
    assert len(nested) == 2
    assert client.get_model_version_by_alias("pg_churn", CHAMPION).run_id == second.run_id
    loaded = load_model("pg_churn", settings=settings)
    assert loaded.version == "2" and loaded.predict_frame(data.frame.head(10)).shape == (10,)
    assert [r["promoted"] for r in read_promotion_log(settings, "pg_churn")] == [True, True]
    # A manual rollback moves the alias and is audited like the gate's decisions.
    promote(settings, "pg_churn", "1", reason="rollback drill")
    assert alias_version(settings, "pg_churn", CHAMPION) == "1"
    last = read_promotion_log(settings, "pg_churn")[-1]
    assert last["reason"] == "manual: rollback drill" and last["champion_version"] == "2"
    # The Optuna studies went to PostgreSQL too.
    import optuna

    names = {s.study_name for s in optuna.get_all_study_summaries(f"postgresql+psycopg2://{PG}/{optuna_db}")}
    assert {first.study_name, second.study_name} <= names


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from training.datasets import LABEL, time_split
    from nextbest.models.artefact import matrix_from_frame
    from training.synthetic import synthetic_training_set
    from training.tune import TuningConfig, make_tuning_data, run_study

    storage, study_name, seed, trials = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ts = synthetic_training_set(rows=4_000, features=8, seed=0)
    s = time_split(ts.frame)
    data = make_tuning_data(
        matrix_from_frame(s.train, ts.feature_names), s.train[LABEL].to_numpy(),
        matrix_from_frame(s.valid, ts.feature_names), s.valid[LABEL].to_numpy(), ts.feature_names,
    )
    mine = []
    def remember(study, trial):
        mine.append(trial.number)
    start = time.time()
    run_study(data, trials, study_name=study_name, storage=storage, seed=seed,
              config=TuningConfig(max_rounds=60, early_stopping_rounds=10), callbacks=[remember])
    print(json.dumps({"trials": mine, "start": start, "end": time.time()}))
    """
)


def test_two_worker_processes_share_one_optuna_study_on_postgresql(pg_databases: Callable[[], str]) -> None:
    import optuna

    storage = f"postgresql+psycopg2://{PG}/{pg_databases()}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, storage, "shared-study", str(seed), "3"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (101, 202)
    ]
    reports = []
    for proc in workers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))

    study = optuna.load_study(study_name="shared-study", storage=storage)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(6))
    # Both workers contributed, each its own trials, and they ran at the same time.
    assert all(len(r["trials"]) == 3 for r in reports)
    assert set(reports[0]["trials"]).isdisjoint(reports[1]["trials"])
    assert reports[0]["start"] < reports[1]["end"] and reports[1]["start"] < reports[0]["end"]
    assert study.best_trial.state == optuna.trial.TrialState.COMPLETE
