"""Execute a shipped notebook the way a user would (a real Jupyter kernel), for the notebook tests."""

from __future__ import annotations

import os
from pathlib import Path

from nextbest.settings import REPO_ROOT


def execute_notebook(path: Path, env: dict[str, str]) -> tuple[list[dict], str]:
    """Run every cell of `path` with `env` set for the kernel; return (outputs, their text incl. HTML).

    The kernel inherits the environment of the process that starts it, so `env` is set around the run and
    restored after. Raises nbclient's CellExecutionError (with the cell's traceback) if a cell fails.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(
        str(o.get("data", {}).get("text/plain", ""))
        + str(o.get("data", {}).get("text/html", ""))
        + str(o.get("text", ""))
        for o in outputs
    )
    return outputs, text
