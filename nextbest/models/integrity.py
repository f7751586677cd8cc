"""Integrity of a registered model artefact: the sha256 digest recorded at registration and checked at every load.

The digest covers every file of the MLflow model folder (MLmodel, the booster, `extra_files/calibrator.json`,
`extra_files/model_info.json`, the environment files, signature and input example files): one line
`<relative path>\\0<sha256 of the file>\\n` per file in sorted relative-path order, hashed with sha256, so a changed,
added, removed or renamed file changes it. The only file left out is `registered_model_meta`, which MLflow writes
into the folder a `models:/<name>/<version>` download lands in (it names the version, it is not part of the model).

Training records the digest and a per-file manifest as tags of the model version (`nextbest.artefact_sha256`,
`nextbest.artefact_manifest`) and of the run that logged it (plus `nextbest.artefact_source`, the logged model's
URI). `load_model` recomputes both after the download and refuses the version (`ArtefactIntegrityError`) when the
digest differs or none was recorded. A version registered by hand from the same logged model (a rollback copy)
has no version tags and is checked against its run's digest, which names the same source.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextbest.errors import ArtefactIntegrityError

if TYPE_CHECKING:
    from mlflow import MlflowClient

DIGEST_TAG = "nextbest.artefact_sha256"
MANIFEST_TAG = "nextbest.artefact_manifest"
SOURCE_TAG = "nextbest.artefact_source"
#: written by MLflow into a registry download (`ModelsArtifactRepository`), not part of what was logged
IGNORED_FILES = frozenset({"registered_model_meta"})
_TAG_LIMIT = 5000  # MLflow tag values are capped at 5000 characters
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtefactDigest:
    """The digest of a model folder and the per-file hashes it was computed from."""

    sha256: str
    files: dict[str, str]

    def tags(self) -> dict[str, str]:
        """The tags that record this digest (the manifest only when it fits in a tag)."""
        manifest = json.dumps(self.files, sort_keys=True, separators=(",", ":"))
        out = {DIGEST_TAG: self.sha256}
        if len(manifest) <= _TAG_LIMIT:
            out[MANIFEST_TAG] = manifest
        return out


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def artefact_digest(folder: Path) -> ArtefactDigest:
    """Digest of every file under `folder` (sorted relative paths; MLflow's download metadata file excluded)."""
    files = {
        p.relative_to(folder).as_posix(): _file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in IGNORED_FILES
    }
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return ArtefactDigest(sha256=h.hexdigest(), files=files)


def _parse_manifest(raw: str | None) -> dict[str, str] | None:
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else None


def recorded_digest(client: MlflowClient, mv: Any) -> tuple[str | None, dict[str, str] | None]:
    """The digest (and manifest) recorded for model version `mv`: its own tags, else its run's for the same source.

    The run's tags vouch for a version only when they name the version's source (the logged model), so a version
    registered by hand from another folder is never checked against a digest of different files.
    """
    tags = dict(mv.tags or {})
    if tags.get(DIGEST_TAG):
        return tags[DIGEST_TAG], _parse_manifest(tags.get(MANIFEST_TAG))
    if not mv.run_id:
        return None, None
    from mlflow.exceptions import MlflowException

    try:
        run_tags = client.get_run(mv.run_id).data.tags
    except MlflowException:
        return None, None
    if run_tags.get(DIGEST_TAG) and run_tags.get(SOURCE_TAG) == mv.source:
        return run_tags[DIGEST_TAG], _parse_manifest(run_tags.get(MANIFEST_TAG))
    return None, None


def describe_difference(expected: dict[str, str] | None, found: dict[str, str]) -> str:
    """Which files differ from the manifest recorded at registration (or a note that none was recorded)."""
    if expected is None:
        return "no per-file manifest was recorded, so the changed file cannot be named"
    parts = []
    changed = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    missing = sorted(expected.keys() - found.keys())
    added = sorted(found.keys() - expected.keys())
    if changed:
        parts.append(
            "changed: "
            + ", ".join(f"{k} (sha256 {expected[k][:12]}.. recorded, {found[k][:12]}.. now)" for k in changed)
        )
    if missing:
        parts.append("missing: " + ", ".join(missing))
    if added:
        parts.append("not registered: " + ", ".join(added))
    return "; ".join(parts) or "the files match the manifest but not the digest (the manifest tag was edited)"


def verify_artefact(
    name: str, version: str, folder: Path, expected: str | None, manifest: dict[str, str] | None
) -> ArtefactDigest:
    """Recompute the digest of the downloaded `folder` and compare it with the recorded one.

    Raises ArtefactIntegrityError (naming the model, the version and the files that differ) on a mismatch or when
    no digest was recorded; returns the digest when it matches.
    """
    found = artefact_digest(folder)
    if not expected:
        raise ArtefactIntegrityError(
            f"model {name!r} version {version} has no recorded artefact digest (tag {DIGEST_TAG}): refusing to "
            "load files nobody vouched for; register it through `nextbest train`, or record the digest of a "
            "version you trust with training.registry.record_artefact_digest",
            model=name,
            version=version,
        )
    if found.sha256 != expected:
        raise ArtefactIntegrityError(
            f"model {name!r} version {version}: artefact integrity check failed, the downloaded files do not match "
            f"the digest recorded at registration (sha256 {expected[:12]}.. recorded, {found.sha256[:12]}.. "
            f"downloaded); {describe_difference(manifest, found.files)}",
            model=name,
            version=version,
        )
    return found
