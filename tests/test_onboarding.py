"""Onboarding by configuration: the config schema, typed loading, point-in-time history features, and the worked
example of a single flat table onboarded end to end (build -> apply -> materialize -> train -> register -> read)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from nextbest.errors import ConfigError, DataError
from nextbest.onboarding.config import OnboardingConfig, load_config
from nextbest.onboarding.features import build_spine, compute_view
from nextbest.onboarding.tables import connect
from nextbest.settings import REPO_ROOT, Settings

FLAT = REPO_ROOT / "configs/examples/flat_contacts.yaml"
SHIPPED = sorted((REPO_ROOT / "configs").rglob("*.yaml"))


def _raw(path: Path = FLAT) -> dict:
    return yaml.safe_load(path.read_text())


def _write(tmp_path: Path, raw: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_onboarding_config_validates(path: Path) -> None:
    config = load_config(path)
    assert config.models and config.feature_views
    for model in config.models:
        assert config.model(model.name).feature_service == model.feature_service


def test_unknown_key_is_rejected_with_its_name(tmp_path: Path) -> None:
    raw = _raw()
    raw["feature_views"][0]["colour"] = "blue"
    raw["data_dir"] = str(FLAT.parent)
    with pytest.raises(ConfigError, match="colour"):
        load_config(_write(tmp_path, raw))


def test_model_on_a_view_of_another_entity_is_rejected() -> None:
    raw = _raw()
    raw["data_dir"] = str(FLAT.parent)
    raw["entities"]["customer"] = {
        "key": "customer_id",
        "table": "contacts",
        "valid_from": None,
        "snapshots": {"kind": "calendar", "start": "2024-01-01"},
    }
    raw["feature_views"][0]["entity"] = "customer"
    with pytest.raises(ValueError, match="keyed by 'customer'"):
        OnboardingConfig.model_validate(raw)


def test_undated_source_may_not_declare_time_windows() -> None:
    raw = _raw()
    raw["data_dir"] = str(FLAT.parent)
    raw["feature_views"][1]["timestamp"] = None
    with pytest.raises(ValueError, match="undated source"):
        OnboardingConfig.model_validate(raw)


def test_duplicate_feature_names_within_one_service_are_rejected() -> None:
    raw = _raw()
    raw["data_dir"] = str(FLAT.parent)
    raw["feature_views"][1]["aggregations"][0]["name"] = "age"
    raw["feature_views"][1]["aggregations"][0]["windows"] = [None]
    raw["feature_views"][0]["attributes"][0]["name"] = "age_all"
    with pytest.raises(ValueError, match="age_all"):
        OnboardingConfig.model_validate(raw)


def test_data_dir_expands_environment_variable_with_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _raw()
    raw["data_dir"] = "${NEXTBEST_TEST_FLAT_DIR:-somewhere}"
    path = _write(tmp_path, raw)
    monkeypatch.delenv("NEXTBEST_TEST_FLAT_DIR", raising=False)
    assert load_config(path).data_dir == (tmp_path / "somewhere").resolve()
    monkeypatch.setenv("NEXTBEST_TEST_FLAT_DIR", str(FLAT.parent))
    assert load_config(path).data_dir == FLAT.parent


def test_malformed_value_names_table_and_file(tmp_path: Path) -> None:
    frame = pd.read_csv(FLAT.parent / "flat_contacts.csv")
    frame["age"] = frame["age"].astype(str)
    frame.loc[3, "age"] = "forty"
    frame.to_csv(tmp_path / "flat_contacts.csv", index=False)
    raw = _raw()
    raw["data_dir"] = str(tmp_path)
    with pytest.raises(DataError, match="contacts.*flat_contacts.csv"):
        connect(load_config(_write(tmp_path, raw)))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    raw = _raw()
    raw["data_dir"] = str(tmp_path)
    with pytest.raises(DataError, match="not found"):
        connect(load_config(_write(tmp_path, raw)))


def test_history_features_of_a_flat_table_use_only_earlier_contacts() -> None:
    config = load_config(FLAT)
    con = connect(config)
    build_spine(con, config, "contact")
    history = compute_view(con, config, config.view("customer_contact_history"))
    source = pd.read_csv(FLAT.parent / "flat_contacts.csv", parse_dates=["contact_date"])
    merged = source.merge(source, on="customer_id", suffixes=("", "_other"))
    earlier = merged[merged.contact_date_other < merged.contact_date]  # strictly earlier days only
    expected = earlier.groupby("contact_id").agg(n=("contact_id_other", "size"), r=("responded_other", "sum"))
    expected = expected.reindex(source.contact_id, fill_value=0)
    got = history.set_index("contact_id").loc[source.contact_id]
    assert (got["previous_contacts_all"].to_numpy() == expected["n"].to_numpy()).all()
    assert (got["previous_responses_all"].to_numpy() == expected["r"].to_numpy()).all()
    # A customer's first contact has no history: recency is missing, not zero.
    first = source.sort_values("contact_date").groupby("customer_id").contact_id.first()
    assert got.loc[first, "days_since_previous_contact_all"].isna().all()


def test_profile_attributes_one_hot_categories_and_keep_numbers() -> None:
    config = load_config(FLAT)
    con = connect(config)
    build_spine(con, config, "contact")
    profile = compute_view(con, config, config.view("contact_profile"))
    one_hot = profile[["channel_email", "channel_sms", "channel_call"]]
    assert (one_hot.sum(axis=1) == 1).all()
    assert profile["age"].between(18, 100).all()
    assert str(profile["event_timestamp"].dtype) == "datetime64[us, UTC]"


def test_materialize_before_apply_says_which_step_is_missing(tmp_path: Path) -> None:
    from nextbest.errors import NotReadyError
    from nextbest.onboarding.feast_repo import materialize

    with pytest.raises(NotReadyError, match="onboard apply"):
        materialize(load_config(FLAT), Settings(home=tmp_path))


@pytest.mark.slow
def test_flat_table_onboards_end_to_end_through_the_cli_and_shared_trainer(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from nextbest.commands import onboard
    from nextbest.models.artefact import load_model
    from nextbest.onboarding import pipeline
    from nextbest.onboarding.feast_repo import get_project_store
    from nextbest.onboarding.features import project_paths

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    settings = Settings(home=tmp_path / "home")
    app = typer.Typer()
    onboard.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps Typer from collapsing the single group
        pass

    runner = CliRunner()
    env = {"NEXTBEST_HOME": str(settings.home)}
    for step in ("build", "apply", "materialize"):
        result = runner.invoke(app, ["onboard", step, "--config", str(FLAT)], env=env)
        assert result.exit_code == 0, result.output
    config = load_config(FLAT)
    paths = project_paths(config, settings)
    assert (paths.repo_dir / "feature_store.yaml").is_file() and (paths.repo_dir / "repo.py").is_file()

    store = get_project_store(config, settings)
    assert {s.name for s in store.list_feature_services()} == {"flat_response_v1"}
    online = store.get_online_features(
        features=store.get_feature_service("flat_response_v1"), entity_rows=[{"contact_id": 2}]
    ).to_dict()
    assert online["age"] == [70.0] and online["previous_contacts_all"] == [1.0]

    result = pipeline.train(config, settings, "flat_response")  # the config asks for 4 trials
    assert result.train.version == "1" and result.train.promoted
    tuned = next(cv for cv in result.validation if cv.recipe == "tuned")
    assert len(tuned.folds) == 10
    assert 0.6 < tuned.summary()["roc_auc_mean"] < 0.95  # latent affinity is learnable from past responses

    model = load_model("flat_response", settings=settings)
    frame = pd.DataFrame({k: v for k, v in online.items() if k != "contact_id"}).astype("float64")
    p = model.predict_proba(model.frame_to_matrix(frame))
    assert p.shape == (1,) and 0.0 < float(p[0]) < 1.0
    assert np.isfinite(p).all()


BERKA = REPO_ROOT / "configs/berka.yaml"


def _serving_variant(edit: str) -> dict:
    raw = _raw(BERKA)
    raw["data_dir"] = str(FLAT.parent)
    serving = raw["serving"]
    if edit == "rule_blocks_unknown_action":
        serving["suitability"][0]["blocks"] = ["offer_mortgage"]
    elif edit == "rule_key_not_read":
        serving["suitability"][0]["key_feature"] = "loan_amount"  # a loan's feature, not the account's
    elif edit == "rule_on_other_entity_without_key":
        serving["suitability"][0]["key_feature"] = None
    elif edit == "action_model_of_other_entity":
        serving["actions"][0]["model"] = "berka_default"
    elif edit == "eligibility_feature_not_read":
        serving["actions"][0]["eligible_if"] = [{"feature": "trans_all", "max": 0}]
    elif edit == "unknown_cold_start_action":
        serving["cold_start_actions"] = ["free_lunch"]
    return raw


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("rule_blocks_unknown_action", "offer_mortgage"),
        ("rule_key_not_read", "key_feature 'loan_amount' is not read"),
        ("rule_on_other_entity_without_key", "give key_feature"),
        ("action_model_of_other_entity", "keyed by 'loan'"),
        ("eligibility_feature_not_read", "trans_all"),
        ("unknown_cold_start_action", "free_lunch"),
    ],
)
def test_a_serving_section_that_does_not_resolve_is_an_error_naming_what(
    tmp_path: Path, edit: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, _serving_variant(edit)))
