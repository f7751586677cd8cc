"""`nextbest experiment run` for real: the shipped NBA context spec trains both variants into one MLflow experiment."""

from __future__ import annotations

import pytest

from nextbest.settings import Settings
from tests.evaluation_fixtures import trained_world  # noqa: F401  (fixture)
from training.experiments import load_spec, run_experiment

pytestmark = pytest.mark.slow


def test_context_experiment_trains_both_variants_into_one_experiment_without_registering(
    trained_world: Settings,  # noqa: F811
) -> None:
    spec = load_spec("nba_realtime_context").model_copy(update={"trials": 1})
    from nextbest.models.registry import mlflow_client

    client = mlflow_client(trained_world)  # this home's tracking and registry stores (not the process-wide URI)
    versions_before = len(client.search_model_versions("name='nba'"))
    assert versions_before >= 1  # the count below is of this world's registry

    result = run_experiment(spec, trained_world)

    table = result.table().set_index("variant")
    assert list(table.index) == ["with_context", "without_context"]
    assert table.loc["with_context", "excluded"] == 0
    assert table.loc["without_context", "excluded"] >= 20  # recency, strength, intent, location, hour features
    assert table["roc_auc"].between(0.5, 1.0).all()
    runs = [client.get_run(v.run_id) for v in result.variants]
    assert {client.get_experiment(r.info.experiment_id).name for r in runs} == {
        "nextbest-experiment-nba_realtime_context"
    }
    n_features = {r.data.tags["nextbest.variant"]: int(r.data.params["n_features"]) for r in runs}
    assert n_features["without_context"] == n_features["with_context"] - table.loc["without_context", "excluded"]
    assert len(client.search_model_versions("name='nba'")) == versions_before  # experiments never register
    assert result.ui_command() == f"mlflow ui --backend-store-uri {trained_world.mlflow_tracking_uri}"
