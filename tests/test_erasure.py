"""The right to erasure (nextbest/erasure.py, nextbest/forget.py, `nextbest erase`): one customer erased from
every store of a project, then every store searched for them.

On copies of the session's served worlds (other tests share the originals): the simulated bank's (int keys: its
world, truth, feature tables, SQLite online store, decision log) and the flat-table example (string keys: the id's
bytes are searched in every file of the home). Rebuilding, re-materializing and the training sets must not bring
the customer back, even from source files that still hold them; a second customer is untouched throughout. The
Redis online store is erased for real on 127.0.0.1:6379 (own DB number and Feast project, torn down).
"""

from __future__ import annotations

import json
import shutil
import stat
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from nextbest.erasure import Tombstones, count_customer_rows, drop_rows
from nextbest.features.project import FeatureProject, feature_project
from nextbest.forget import erase_customer
from nextbest.project import Project, load_project
from nextbest.settings import REPO_ROOT, FeatureSettings, Settings

FLAT = REPO_ROOT / "configs/examples/flat_contacts.yaml"
REDIS_DB = 12  # this area's Redis DB number, apart from the other areas' tests
#: Not a prefix of another id of the example (ids run C-0001 .. C-0250), so its bytes name this customer only.
ERASED, KEPT = "C-0123", "C-0007"


# -------------------------------------------------------------------- helpers


def _copied(settings: Settings, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    return settings.model_copy(update={"home": home})


def _features(project: Project, settings: Settings) -> FeatureProject:
    features = feature_project(project, settings)
    features.apply()  # the copied registry still names the original home's feature tables
    return features


def _online(features: FeatureProject, entity: str, key: object) -> dict[str, Any]:
    """Every materialized feature of one entity, read from the online store."""
    spec = features.project.entities[entity]
    refs = [f"{v}:{f}" for v in features.entity_views(entity) for f in features.view_fields(v)]
    row = features.store().get_online_features(features=refs, entity_rows=[{spec.key: key}]).to_dict()
    return {k: v[0] for k, v in row.items() if k != spec.key}


def _parquet_rows(home: Path, column: str, values: Iterable[object]) -> dict[str, int]:
    """Rows holding one of `values` in `column`, per parquet file under `home` (files without the column: none)."""
    out: dict[str, int] = {}
    values = list(values)
    for file in sorted(home.rglob("*.parquet")):
        if column not in pq.read_schema(file).names:
            continue
        col = pq.read_table(file, columns=[column]).column(0)
        out[str(file.relative_to(home))] = int(pc.sum(pc.is_in(col, value_set=_array(values, col.type))).as_py() or 0)
    return out


def _array(values: list[object], kind: Any) -> Any:
    import pyarrow as pa

    return pa.array(values).cast(kind)


def _log_decisions(uri: str, keys: Iterable[object], features: dict[str, Any]) -> None:
    """Decisions (with a feature snapshot naming the customer), contacts, feedback (one not yet joined), events."""
    from nextbest import decision_log as dl

    engine = dl.make_engine(uri)
    dl.metadata.create_all(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for key in keys:
            for n in range(2):
                decision = f"erasure-test-{key}-{n}"
                snapshot = {**features, "customer_id": key}
                row = {"decision_id": decision, "ts": now, "customer_id": str(key), "channel": "app"}
                conn.execute(dl.decisions.insert(), {**row, "features": snapshot, "context": {"customer": key}})
                contact = {"decision_id": decision, "customer_id": str(key), "ts": now, "channel": "app"}
                conn.execute(dl.decision_contacts.insert(), {**contact, "action_id": "a", "kind": "sales", "rank": 1})
                conn.execute(
                    dl.feedback.insert(),
                    {"decision_id": decision, "customer_id": str(key), "outcome": "shown", "ts": now},
                )
                conn.execute(
                    dl.feedback.insert(), {"decision_id": decision, "customer_id": None, "outcome": "shown", "ts": now}
                )
                event = {"customer_id": str(key), "ts": now, "event_type": "login", "received_at": now}
                conn.execute(dl.events.insert(), {**event, "payload": {"customer": key}})
    engine.dispose()


def _spool(home: Path, keys: Iterable[object]) -> Path:
    path = home / "decision_log_spool.jsonl"
    lines = [json.dumps({"table": "events", "row": {"customer_id": str(k), "event_type": "login"}}) for k in keys]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _feedback_rows(uri: str) -> int:
    from nextbest.decision_log import feedback, make_engine

    engine = make_engine(uri)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one())
    finally:
        engine.dispose()


def _bytes_found(home: Path, needle: bytes) -> dict[str, int]:
    """Occurrences of `needle` in the raw bytes of every file under `home` (files with none left out)."""
    found = {}
    for file in sorted(p for p in home.rglob("*") if p.is_file()):
        n = file.read_bytes().count(needle)
        if n:
            found[str(file.relative_to(home))] = n
    return found


# -------------------------------------------------------------------- tombstones


def test_tombstones_keep_salted_hashes_only_with_a_private_salt(tmp_path: Path) -> None:
    tombstones = Tombstones.at(tmp_path)
    assert not tombstones and tombstones.matching("customer_id", [1, 2]) == set()  # no file: nothing hashed
    assert tombstones.add({"customer_id": {"C-0042"}, "contact_id": {7, 8}}, principal=("customer_id", "C-0042")) == 3
    assert tombstones and stat.S_IMODE(tombstones.salt_path.stat().st_mode) == 0o600
    assert b"C-0042" not in tombstones.path.read_bytes()
    assert tombstones.contains("customer_id", "C-0042") and not tombstones.contains("customer_id", "C-0043")
    assert tombstones.matching("contact_id", [7, 9, None]) == {7}
    # Another process's view of the same folder sees the keys; a second erasure of one key adds none.
    again = Tombstones.at(tmp_path)
    assert again.add({"customer_id": {"C-0042"}}, principal=("customer_id", "C-0042")) == 0
    assert again.count() == 3 and len(again.erasures) == 2
    assert again.erasures[0]["key"] == again.digest("C-0042") and again.erasures[0]["related"] == {"contact_id": 2}


def test_drop_rows_rewrites_only_the_parts_holding_a_key(tmp_path: Path) -> None:
    import pyarrow as pa

    folder = tmp_path / "table"
    folder.mkdir()
    pq.write_table(pa.table({"customer_id": [1, 2, 3], "x": [1.0, 2.0, 3.0]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"customer_id": [4, 5], "x": [4.0, 5.0]}), folder / "part-1.parquet")
    untouched = (folder / "part-1.parquet").stat().st_mtime_ns
    assert drop_rows(folder, {"customer_id": {2, 99}, "other": {1}}) == 1
    assert pq.read_table(folder / "part-0.parquet").column("customer_id").to_pylist() == [1, 3]
    assert (folder / "part-1.parquet").stat().st_mtime_ns == untouched
    assert drop_rows(folder, {"customer_id": {2}}) == 0


# -------------------------------------------------------------------- the simulated bank (int keys)


def _world_customers(settings: Settings) -> tuple[int, int]:
    """Two customers with logged contacts and online features at the end of the world."""
    contacts = pq.read_table(settings.sources_dir / "contacts", columns=["customer_id"]).column(0)
    counts = pc.value_counts(contacts).to_pylist()
    busiest = sorted(counts, key=lambda c: (-c["counts"], c["values"]))
    return int(busiest[0]["values"]), int(busiest[1]["values"])


def test_erasing_a_world_customer_leaves_no_row_anywhere_and_nothing_brings_them_back(
    served_world: Any, tmp_path: Path
) -> None:
    from training.datasets import build_churn_training_set

    settings = _copied(served_world.settings, tmp_path)
    project = load_project(None)
    features = _features(project, settings)
    erased, kept = _world_customers(settings)
    contacts = pq.read_table(settings.sources_dir / "contacts", columns=["customer_id", "contact_id"]).to_pandas()
    erased_contacts = set(contacts.loc[contacts.customer_id == erased, "contact_id"])
    uri = project.decision_log_uri(settings)
    _log_decisions(uri, [erased, kept], {"income_monthly": 1234.5})
    spool = _spool(settings.home, [erased, kept])
    kept_rows, kept_online = _parquet_rows(settings.home, "customer_id", [kept]), _online(features, "customer", kept)
    assert any(v is not None for v in _online(features, "customer", erased).values())

    report = erase_customer(project, settings, str(erased))

    assert report.key == erased and report.new_tombstone and report.related == {"contact_id": len(erased_contacts)}
    assert report.online["customer"] > 0 and set(report.offline) == set(features.views)
    assert {"sources/customers", "sources/transactions", "truth/customer_latent", "truth/contact_truth"} <= set(
        report.generated_sources
    )
    assert report.decision_log["decisions"] == 2 and report.decision_log["feedback"] == 4
    assert report.erase_at_source == [] and {m.model for m in report.models} == {"churn", "nba"}
    assert all(m.may_hold and m.data.get("snapshot_end") for m in report.models)
    assert any("retrain" in note for note in report.notes)
    # Every store, searched.
    assert all(v is None for v in _online(features, "customer", erased).values())
    assert sum(_parquet_rows(settings.home, "customer_id", [erased]).values()) == 0
    assert sum(_parquet_rows(settings.home, "contact_id", erased_contacts).values()) == 0
    assert sum(count_customer_rows(uri, erased).values()) == 0
    assert _feedback_rows(uri) == 4  # the kept customer's two decisions: joined and not-yet-joined feedback
    assert str(erased) not in spool.read_text() and str(kept) in spool.read_text()
    # The other customer is untouched.
    assert _parquet_rows(settings.home, "customer_id", [kept]) == kept_rows
    assert _online(features, "customer", kept) == kept_online
    assert count_customer_rows(uri, kept)["decisions"] == 2

    # The world comes back as it was (re-simulated with the same seed): rebuilding, re-materializing and the
    # training sets still leave the customer out.
    shutil.rmtree(settings.world_dir)
    shutil.copytree(served_world.settings.world_dir, settings.world_dir)
    features.build()
    features.materialize()
    assert sum(_parquet_rows(settings.features_dir, "customer_id", [erased]).values()) == 0
    assert all(v is None for v in _online(features, "customer", erased).values())
    assert _online(features, "customer", kept) == kept_online
    churn = build_churn_training_set(settings, horizon_days=14)
    assert erased not in set(churn.frame["customer_id"]) and kept in set(churn.frame["customer_id"])


# -------------------------------------------------------------------- the flat example (string keys)


def test_erasing_a_string_keyed_customer_leaves_not_one_byte_of_their_id(flat_project: Any, tmp_path: Path) -> None:
    from nextbest.onboarding.datasets import build_training_set

    project = flat_project.project
    settings = _copied(flat_project.settings, tmp_path)
    features = _features(project, settings)
    home, needle = project.home(settings), ERASED.encode()
    assert needle in (home / "online_store.db").read_bytes()  # the search below can find the id
    related = features.related_keys("customer", ERASED)
    assert len(related["contact_id"]) == 3
    uri = project.decision_log_uri(settings)
    _log_decisions(uri, [ERASED, KEPT], {"customer_age": 64.0})
    _spool(home, [ERASED, KEPT])
    kept_rows, kept_online = _parquet_rows(home, "customer_id", [KEPT]), _online(features, "customer", KEPT)

    report = erase_customer(project, settings, ERASED)

    assert report.online == {"customer": report.online["customer"], "contact": report.online["contact"]}
    assert report.online["customer"] > 0 and report.online["contact"] > 0
    assert report.erase_at_source == [str(REPO_ROOT / "configs/examples/flat_contacts.csv")]
    assert {m.model for m in report.models} == {"flat_response", "flat_propensity"}
    found = _bytes_found(settings.home, needle)
    print(f"bytes of the erased id found after erasure: {sum(found.values())} {found}")
    assert found == {}
    assert all(v is None for v in _online(features, "customer", ERASED).values())
    assert all(all(v is None for v in _online(features, "contact", c).values()) for c in related["contact_id"])
    assert sum(_parquet_rows(home, "customer_id", [ERASED]).values()) == 0
    assert sum(_parquet_rows(home, "contact_id", related["contact_id"]).values()) == 0
    assert sum(count_customer_rows(uri, ERASED).values()) == 0
    assert _parquet_rows(home, "customer_id", [KEPT]) == kept_rows
    assert _online(features, "customer", KEPT) == kept_online

    # The bank's file still holds the customer: rebuilding, re-materializing (both methods) and the training sets
    # leave them out, and their id's bytes stay gone.
    assert needle in (REPO_ROOT / "configs/examples/flat_contacts.csv").read_bytes()
    features.build()
    features.materialize(method="feast")
    features.materialize()
    assert _bytes_found(settings.home, needle) == {}
    assert all(v is None for v in _online(features, "customer", ERASED).values())
    assert _online(features, "customer", KEPT) == kept_online
    assert _parquet_rows(home, "customer_id", [KEPT]) == kept_rows
    propensity = build_training_set(project.tables, settings, "flat_propensity", store=features.store())
    assert ERASED not in set(propensity.frame["customer_id"]) and KEPT in set(propensity.frame["customer_id"])
    response = build_training_set(project.tables, settings, "flat_response", store=features.store())
    assert not set(response.frame["contact_id"]) & related["contact_id"]


def test_the_erase_command_asks_first_then_erases(flat_project: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app

    settings = _copied(flat_project.settings, tmp_path)
    _features(flat_project.project, settings)
    monkeypatch.setenv("NEXTBEST_HOME", str(settings.home))
    runner = CliRunner()
    refused = runner.invoke(app, ["erase", "C-0042", "--project", str(FLAT)], input="n\n")
    assert refused.exit_code != 0 and not Tombstones.at(flat_project.project.home(settings))
    done = runner.invoke(app, ["erase", "C-0042", "--project", str(FLAT), "--yes", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["key"] == "C-0042" and report["online"]["customer"] > 0 and report["rows_removed"] > 0
    assert Tombstones.at(flat_project.project.home(settings)).contains("customer_id", "C-0042")


# -------------------------------------------------------------------- Redis


@pytest.mark.redis
def test_erasing_from_redis_deletes_the_customer_and_their_contacts(tmp_path: Path) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - the suite's Redis is expected to run
        pytest.fail(f"Redis on 127.0.0.1:6379 is not reachable: {exc}")
    name = f"flat_erase_{uuid.uuid4().hex[:8]}"
    project = load_project(FLAT)
    assert project.tables is not None
    project = project.model_copy(update={"name": name, "tables": project.tables.model_copy(update={"project": name})})
    settings = Settings(
        home=tmp_path / "home",
        features=FeatureSettings(online_store="redis", redis_connection_string=f"127.0.0.1:6379,db={REDIS_DB}"),
    )
    features = feature_project(project, settings)
    features.build()
    features.apply()
    store = features.store()
    try:
        features.materialize()
        kept = _online(features, "customer", KEPT)
        assert any(v is not None for v in _online(features, "customer", ERASED).values())
        report = erase_customer(project, settings, ERASED)
        assert report.online == {"customer": 1, "contact": 3}  # one hash per entity key
        assert any("BGREWRITEAOF" in note for note in report.notes)
        assert all(v is None for v in _online(features, "customer", ERASED).values())
        assert _online(features, "customer", KEPT) == kept
        keys = list(client.scan_iter(match=f"*{name}*"))
        assert keys and not any(ERASED.encode() in key for key in keys)
        features.materialize()  # again, from the rewritten tables: still gone
        assert all(v is None for v in _online(features, "customer", ERASED).values())
    finally:
        store.teardown()
        for key in client.scan_iter(match=f"*{name}*"):
            client.delete(key)


def test_a_store_that_is_down_is_reported_and_the_rest_is_still_erased(flat_project: Any, tmp_path: Path) -> None:
    project = flat_project.project
    copied = _copied(flat_project.settings, tmp_path)
    settings = copied.model_copy(
        update={"features": FeatureSettings(online_store="redis", redis_connection_string="127.0.0.1:1")}
    )
    report = erase_customer(project, settings, ERASED)
    assert not report.complete and set(report.failed) == {"online store"}
    assert sum(report.offline.values()) > 0
    assert sum(_parquet_rows(project.home(settings), "customer_id", [ERASED]).values()) == 0
    assert Tombstones.at(project.home(settings)).contains("customer_id", ERASED)
