"""Onboarding by configuration: the config schema, typed loading, point-in-time history features, string entity
keys, the one materialization (fast = Feast, row for row) of a table project, and the worked example of a single
flat table onboarded end to end (build -> apply -> materialize -> train -> register -> read -> score)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from nextbest.errors import ConfigError, DataError, NotReadyError
from nextbest.features.project import TableFeatures, feature_project
from nextbest.onboarding.config import CONTRACT_KEYS, OnboardingConfig, load_config
from nextbest.onboarding.datasets import label_frame
from nextbest.onboarding.features import build_spine, compute_view
from nextbest.onboarding.tables import connect
from nextbest.project import load_project
from nextbest.settings import REPO_ROOT, Settings

FLAT = REPO_ROOT / "configs/examples/flat_contacts.yaml"
BERKA = REPO_ROOT / "configs/berka.yaml"
SHIPPED = sorted((REPO_ROOT / "configs").rglob("*.yaml"))


def _raw(path: Path = FLAT) -> dict:
    return yaml.safe_load(path.read_text())


def _mapping(raw: dict) -> dict:
    """The table mapping of a project file's raw content (the contract's sections left out)."""
    return {k: v for k, v in raw.items() if k not in CONTRACT_KEYS}


def _write(tmp_path: Path, raw: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_project_file_loads_and_its_table_mapping_validates(path: Path) -> None:
    project = load_project(path)
    assert project.models and project.served_models
    if project.kind == "tables":
        config = load_config(path)
        assert config == project.tables and config.feature_views
        for model in config.models:
            assert config.model(model.name).feature_service == model.feature_service


def test_the_flat_example_serves_its_customers_by_string_key() -> None:
    project = load_project(FLAT)
    assert project.served.key == "customer_id" and project.served.key_type == "str"
    assert project.served_models == ("flat_propensity",)
    assert set(project.catalogue.channels) == {"email", "sms", "call_centre", "app", "web"}
    assert project.parse_key("C-0001") == "C-0001"
    with pytest.raises(ValueError, match="by string"):
        project.parse_key(1)


def test_unknown_key_is_rejected_with_its_name(tmp_path: Path) -> None:
    raw = _raw()
    raw["feature_views"][0]["colour"] = "blue"
    raw["data_dir"] = str(FLAT.parent)
    with pytest.raises(ConfigError, match="colour"):
        load_config(_write(tmp_path, raw))


def test_model_on_a_view_of_another_entity_is_rejected() -> None:
    raw = _mapping(_raw())
    raw["data_dir"] = str(FLAT.parent)
    raw["feature_views"][0]["entity"] = "customer"  # contact_profile, read by the contact-keyed flat_response
    with pytest.raises(ValueError, match="keyed by 'customer'"):
        OnboardingConfig.model_validate(raw)


def test_undated_source_may_not_declare_time_windows() -> None:
    raw = _mapping(_raw())
    raw["data_dir"] = str(FLAT.parent)
    raw["feature_views"][1]["timestamp"] = None
    with pytest.raises(ValueError, match="undated source"):
        OnboardingConfig.model_validate(raw)


def test_duplicate_feature_names_within_one_service_are_rejected() -> None:
    raw = _mapping(_raw())
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


def test_customer_entity_keeps_string_keys_in_its_feature_tables_and_labels() -> None:
    config = load_config(FLAT)
    con = connect(config)
    build_spine(con, config, "customer")
    history = compute_view(con, config, config.view("customer_history"))
    assert history["customer_id"].dtype == object and history["customer_id"].str.match(r"^C-\d{4}$").all()
    source = pd.read_csv(FLAT.parent / "flat_contacts.csv", parse_dates=["contact_date"])
    assert source["customer_id"].dtype == object  # the CSV's ids are strings, never parsed as numbers
    # C-0001 was contacted on 2024-09-30, 11-08 and 11-21: it exists from the first contact, and each monthly
    # snapshot counts only the contacts strictly before it.
    mine = history[history.customer_id == "C-0001"].set_index("event_timestamp")["contacts_all"]
    month = pd.Timestamp("2024-10-01", tz="UTC")
    assert mine.to_dict() == {
        month: 1.0,
        month + pd.DateOffset(months=1): 1.0,
        month + pd.DateOffset(months=2): 3.0,
        pd.Timestamp("2025-01-01", tz="UTC"): 3.0,
    }

    labels = label_frame(con, config, config.model("flat_propensity"))
    assert labels["customer_id"].map(type).eq(str).all()
    responses = source[source.responded == 1].groupby("customer_id").contact_date.apply(list)
    for _, r in labels.sample(n=200, random_state=0).iterrows():
        start = r.event_timestamp.tz_localize(None)
        hits = [d for d in responses.get(r.customer_id, []) if start <= d < start + pd.Timedelta(days=30)]
        assert r.label == int(bool(hits)), (r.customer_id, start)
    assert 0.02 < labels.label.mean() < 0.2


@pytest.mark.parametrize(
    ("entity", "key_type", "message"),
    [("customer", "int", "must be an integer column"), ("contact", "str", "needs a text key column")],
)
def test_a_key_type_that_does_not_match_the_key_column_is_an_error(
    tmp_path: Path, entity: str, key_type: str, message: str
) -> None:
    raw = _raw()
    raw["data_dir"] = str(FLAT.parent)
    raw["entities"][entity]["key_type"] = key_type
    with pytest.raises(ConfigError, match=message):
        connect(load_config(_write(tmp_path, raw)))


def test_string_keyed_entities_are_feast_string_entities() -> None:
    from feast import ValueType
    from feast.types import Int64, String

    from nextbest.onboarding.feast_repo import build_definitions

    objects = {o.name: o for o in build_definitions(load_config(FLAT), Path("/nowhere"))}
    assert objects["customer"].value_type == ValueType.STRING
    assert objects["contact"].value_type == ValueType.INT64
    assert {f.name: f.dtype for f in objects["customer_history"].schema}["customer_id"] == String
    assert {f.name: f.dtype for f in objects["contact_profile"].schema}["contact_id"] == Int64


def test_materialize_before_apply_says_which_step_is_missing(tmp_path: Path) -> None:
    features = feature_project(load_project(FLAT), Settings(home=tmp_path))
    assert isinstance(features, TableFeatures)
    with pytest.raises(NotReadyError, match="features apply --project"):
        features.materialize()
    with pytest.raises(NotReadyError, match="features build --project"):
        features.apply()


def _online_rows(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: sorted(
                con.execute(f'SELECT entity_key, feature_name, value, value_text, event_ts FROM "{t}"').fetchall()
            )
            for t in tables
        }
    finally:
        con.close()


def test_fast_materialize_of_a_table_project_writes_exactly_the_rows_feast_materialize_writes(tmp_path: Path) -> None:
    project = load_project(FLAT)
    built = feature_project(project, Settings(home=tmp_path / "feast"))
    built.build()
    written: dict[str, dict[str, list[tuple]]] = {}
    stats = {}
    for method in ("feast", "fast"):
        settings = Settings(home=tmp_path / method)
        if method == "fast":  # the same feature tables: the registry of each home points at its own copy
            (settings.home / "projects").mkdir(parents=True)
            for view in built.views:
                src = tmp_path / "feast/projects/flat_example/offline" / f"{view}.parquet"
                dest = settings.home / "projects/flat_example/offline" / src.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(src.read_bytes())
        features = feature_project(project, settings)
        features.apply()
        stats[method] = features.materialize(method=method)  # type: ignore[arg-type]
        written[method] = _online_rows(settings.home / "projects/flat_example/online_store.db")
    assert stats["fast"].values == stats["feast"].values > 0
    assert (
        stats["fast"].views
        == stats["feast"].views
        == {
            "contact_profile": 740,
            "customer_contact_history": 740,
            "customer_profile": 250,
            "customer_history": 250,
        }
    )
    assert sum(len(v) for v in written["fast"].values()) == stats["fast"].values
    assert written["fast"] == written["feast"]
    # Both read back the same features for a string key; an unknown key reads as missing.
    store = feature_project(project, Settings(home=tmp_path / "fast")).store()
    online = store.get_online_features(
        features=store.get_feature_service("flat_propensity_v1"),
        entity_rows=[{"customer_id": "C-0001"}, {"customer_id": "C-9999"}],
    ).to_dict()
    assert online["customer_age"] == [70.0, None]
    assert online["contacts_all"] == [3.0, None]  # all three of C-0001's contacts are before the extract end


def _cli():  # type: ignore[no-untyped-def]
    import typer

    from nextbest.commands import features, onboard

    app = typer.Typer()
    features.register(app)
    onboard.register(app)
    return app


def test_a_missing_or_invalid_project_file_is_a_one_line_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    missing = runner.invoke(_cli(), ["features", "build", "--project", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert missing.output.strip().splitlines() == [f"error: project file {tmp_path / 'nope.yaml'} not found"]
    raw = _raw()
    raw["data_dir"] = str(FLAT.parent)
    raw["serving"]["entity"] = "household"
    bad = runner.invoke(_cli(), ["onboard", "apply", "--config", str(_write(tmp_path, raw))])
    assert bad.exit_code == 2
    lines = bad.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "household" in lines[0]


@pytest.mark.slow
def test_flat_table_onboards_end_to_end_through_the_cli_and_shared_trainer(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nextbest.jobs import onboard as job
    from nextbest.models.artefact import load_model
    from nextbest.onboarding.feast_repo import get_project_store
    from nextbest.onboarding.features import project_paths
    from nextbest.onboarding.scoring import ProjectScorer

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    settings = Settings(home=tmp_path / "home")
    runner = CliRunner()
    env = {"NEXTBEST_HOME": str(settings.home)}
    # Every spelling works: the features commands with --project, onboard with --config (its older name) or --project.
    for args in (
        ["features", "build", "--project", str(FLAT)],
        ["onboard", "apply", "--config", str(FLAT)],
        ["onboard", "materialize", "--project", str(FLAT)],
    ):
        result = runner.invoke(_cli(), args, env=env)
        assert result.exit_code == 0, result.output
    config = load_config(FLAT)
    paths = project_paths(config, settings)
    assert (paths.repo_dir / "feature_store.yaml").is_file() and (paths.repo_dir / "repo.py").is_file()

    store = get_project_store(config, settings)
    assert {s.name for s in store.list_feature_services()} == {"flat_response_v1", "flat_propensity_v1"}
    online = store.get_online_features(
        features=store.get_feature_service("flat_response_v1"), entity_rows=[{"contact_id": 2}]
    ).to_dict()
    assert online["age"] == [70.0] and online["previous_contacts_all"] == [1.0]

    result = job.train(config, settings, "flat_response")  # the config asks for 4 trials
    assert result.train.version == "1" and result.train.promoted
    tuned = next(cv for cv in result.validation if cv.recipe == "tuned")
    assert len(tuned.folds) == 10
    assert 0.6 < tuned.summary()["roc_auc_mean"] < 0.95  # latent affinity is learnable from past responses

    model = load_model("flat_response", settings=settings)
    frame = pd.DataFrame({k: v for k, v in online.items() if k != "contact_id"}).astype("float64")
    p = model.predict_proba(model.frame_to_matrix(frame))
    assert p.shape == (1,) and 0.0 < float(p[0]) < 1.0
    assert np.isfinite(p).all()

    # The served, string-keyed customer model: trained through Feast's point-in-time join, scored online by key.
    propensity = job.train(config, settings, "flat_propensity")
    assert propensity.train.version == "1" and propensity.positives > 50
    assert len(next(cv for cv in propensity.validation if cv.recipe == "tuned").folds) == 4
    scorer = ProjectScorer(config, settings, "flat_propensity")
    scores = scorer.score(["C-0001", "C-0002", "C-9999"])
    assert [s.key for s in scores] == ["C-0001", "C-0002", "C-9999"]
    assert [s.known for s in scores] == [True, True, False]
    assert all(0.0 < s.probability < 1.0 for s in scores)
    with pytest.raises(DataError, match="strings"):
        scorer.score([1])


def _contract_variant(edit: str) -> dict:
    raw = _raw(BERKA)
    raw["data_dir"] = str(FLAT.parent)
    if edit == "rule_blocks_unknown_action":
        raw["policy"]["model_rules"][0]["blocks"] = ["offer_mortgage"]
    elif edit == "rule_on_other_entity_without_key":
        raw["policy"]["model_rules"][0]["key_feature"] = None
    elif edit == "action_model_of_other_entity":
        raw["catalogue"]["actions"][0]["model"] = "berka_default"
    elif edit == "unknown_cold_start_action":
        raw["policy"]["cold_start_actions"] = ["free_lunch"]
    elif edit == "unknown_served_entity":
        raw["serving"]["entity"] = "household"
    return raw


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("rule_blocks_unknown_action", "offer_mortgage"),
        ("rule_on_other_entity_without_key", "give key_feature"),
        ("action_model_of_other_entity", "keyed by 'loan'"),
        ("unknown_cold_start_action", "free_lunch"),
        ("unknown_served_entity", "household"),
    ],
)
def test_contract_sections_that_do_not_resolve_are_an_error_naming_what(
    tmp_path: Path, edit: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_project(_write(tmp_path, _contract_variant(edit)))
