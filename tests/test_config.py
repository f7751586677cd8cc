"""Shipped configuration loads and validates; bad configuration fails with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from nextbest.catalogue import PRODUCTS, Catalogue, load_catalogue
from nextbest.errors import ConfigError
from nextbest.settings import REPO_ROOT, Settings, load_settings


def test_shipped_catalogue_loads_and_every_action_has_a_template_per_channel() -> None:
    catalogue = load_catalogue()
    assert len(catalogue.actions) >= 15
    kinds = {a.kind for a in catalogue.actions}
    assert kinds == {"sales", "retention", "service"}
    for action in catalogue.actions:
        assert set(action.channels) <= set(action.templates)
        assert action.product is None or action.product in PRODUCTS


def test_catalogue_rejects_unknown_product_with_its_name(tmp_path: Path) -> None:
    raw = yaml.safe_load(Path(REPO_ROOT / "nextbest/data/catalogue.yaml").read_text())
    raw["actions"][0]["eligibility"]["excludes"] = ["spaceship"]
    with pytest.raises(ValidationError, match="spaceship"):
        Catalogue.model_validate(raw)


def test_catalogue_rejects_a_channel_without_template() -> None:
    raw = yaml.safe_load(Path(REPO_ROOT / "nextbest/data/catalogue.yaml").read_text())
    raw["actions"][0]["templates"].pop(raw["actions"][0]["channels"][0])
    with pytest.raises(ValidationError, match="no approved template"):
        Catalogue.model_validate(raw)


def test_settings_read_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "nextbest.yaml"
    config.write_text(yaml.safe_dump({"home": str(tmp_path / "state"), "world": {"customers": 77, "days": 30}}))
    monkeypatch.setenv("NEXTBEST_CONFIG", str(config))
    monkeypatch.delenv("NEXTBEST_HOME", raising=False)
    monkeypatch.setenv("NEXTBEST_WORLD__DAYS", "45")
    settings = load_settings()
    assert settings.home == tmp_path / "state"
    assert settings.world.customers == 77
    assert settings.world.days == 45  # environment wins over the file
    assert settings.mlflow_tracking_uri.startswith("sqlite:///") and str(tmp_path) in settings.mlflow_tracking_uri


def test_settings_reject_unknown_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "nextbest.yaml"
    config.write_text(yaml.safe_dump({"world": {"customer": 10}}))
    monkeypatch.setenv("NEXTBEST_CONFIG", str(config))
    with pytest.raises(
        ConfigError, match=r"world\.customer: Extra inputs are not permitted \(from settings file .*nextbest\.yaml\)"
    ):
        load_settings()  # one line naming the key and where it came from, not a pydantic traceback


def test_every_shipped_yaml_config_parses() -> None:
    shipped = [
        p for p in REPO_ROOT.rglob("*.yaml") if not any(part.startswith(".") for part in p.relative_to(REPO_ROOT).parts)
    ]
    assert shipped, "no shipped YAML found"
    for path in shipped:
        with path.open() as f:
            assert yaml.safe_load(f) is not None, path


def test_default_state_lives_in_one_ignored_folder() -> None:
    settings = Settings(home=REPO_ROOT / ".nextbest")
    ignored = (REPO_ROOT / ".gitignore").read_text().split()
    assert ".nextbest/" in ignored
    for path in (settings.world_dir, settings.features_dir, settings.mlflow_dir, settings.reports_dir):
        assert path.is_relative_to(settings.home)


@pytest.mark.parametrize(
    ("command", "project", "says"),
    [
        ("evaluate", "configs/berka.yaml", "the evaluation ladder needs the simulated bank"),
        ("loop", "configs/examples/flat_contacts.yaml", "the closed loop needs the simulated bank"),
        ("twin", "configs/berka.yaml", "the twin needs the simulated bank"),
    ],
)
def test_truth_only_commands_refuse_a_bank_s_tables_in_one_line(
    tmp_path: Path, command: str, project: str, says: str
) -> None:
    """evaluate, loop and the twin take `--project` like every command; on a project with no simulator truth they say
    what to run instead (exit 2, one line), before anything is read or built."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NEXTBEST_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "nextbest.cli", command, "--project", str(REPO_ROOT / project)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    out = " ".join(output.split())
    assert out.startswith("error: ") and says in out and "Traceback" not in output
    assert not any(tmp_path.iterdir())  # nothing was built
