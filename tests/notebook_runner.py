"""Execute a shipped notebook the way a user would (a real Jupyter kernel), for the notebook tests.

Figures must show: a notebook's figure cells carry their figure's name in the cell metadata (`FIGURE_KEY`), and
`ExecutedNotebook.assert_figures` fails unless each expected figure came out as an image (an `image/png` output of
its cell: the inline backend's display, not a file or an `Agg` canvas nobody sees). Before the notebook's own
cells the runner installs a figure audit in the kernel (`install_figure_audit`): after every cell, before the
inline backend shows and closes the cell's figures, each open figure is drawn and checked for empty panels,
overlapping tick labels and panels running into each other; what it finds is written to a file the test reads.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nextbest.settings import REPO_ROOT

FIGURE_KEY = "nextbest_figure"  # code-cell metadata: the name of the figure the cell draws
AUDIT_ENV = "NB_FIGURE_AUDIT"


@dataclass
class ExecutedNotebook:
    """An executed notebook: its code cells, their outputs and text, and what its figures showed."""

    cells: list[Any]
    outputs: list[dict]
    text: str
    figures: dict[str, int] = field(default_factory=dict)  # figure name -> image/png outputs of its cell
    problems: list[str] = field(default_factory=list)  # layout problems the audit found in the figures

    def assert_figures(self, expected: Iterable[str]) -> None:
        """Each expected figure is an image output of its cell, and no figure has an empty panel or overlaps."""
        expected = list(expected)
        declared = [n for n in expected if n not in self.figures]
        assert not declared, f"no cell declares the figure(s) {declared} (metadata {FIGURE_KEY!r})"
        missing = [n for n in expected if self.figures[n] == 0]
        assert not missing, f"figure(s) not displayed (no image/png output): {missing}"
        assert not self.problems, "unreadable figure(s):\n" + "\n".join(self.problems)


def _text(outputs: list[dict]) -> str:
    return "\n".join(
        str(o.get("data", {}).get("text/plain", ""))
        + str(o.get("data", {}).get("text/html", ""))
        + str(o.get("text", ""))
        for o in outputs
    )


def _figures(cells: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for cell in cells:
        name = cell.get("metadata", {}).get(FIGURE_KEY)
        if name:
            images = sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
            out[name] = out.get(name, 0) + images
    return out


def run_notebook(path: Path, env: dict[str, str]) -> ExecutedNotebook:
    """Run every cell of `path` with `env` set for the kernel (plus the figure audit); return what it showed.

    The kernel inherits the environment of the process that starts it, so `env` is set around the run and
    restored after; `MPLBACKEND` is cleared so the kernel uses its inline backend, as in Jupyter. Raises nbclient's
    CellExecutionError (with the cell's traceback) if a cell fails.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="nb-audit-") as tmp:
        audit = Path(tmp) / "figures.jsonl"
        source = f"from tests.notebook_runner import install_figure_audit\ninstall_figure_audit({str(audit)!r})"
        nb.cells.insert(0, nbformat.v4.new_code_cell(source))
        full_env = {**env, AUDIT_ENV: str(audit), "MPLBACKEND": ""}
        old = {k: os.environ.get(k) for k in full_env}
        os.environ.update(full_env)
        os.environ.pop("MPLBACKEND")
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
        lines = audit.read_text().splitlines() if audit.is_file() else []
    cells = [c for c in nb.cells[1:] if c.cell_type == "code"]
    outputs = [o for c in cells for o in c.get("outputs", [])]
    problems = [json.loads(line)["problem"] for line in lines if line.strip()]
    return ExecutedNotebook(cells, outputs, _text(outputs), _figures(cells), problems)


def execute_notebook(path: Path, env: dict[str, str]) -> tuple[list[dict], str]:
    """Run every cell of `path` with `env` set for the kernel; return (outputs, their text incl. HTML)."""
    run = run_notebook(path, env)
    return run.outputs, run.text


# ---- the figure audit (runs inside the kernel) ----


def install_figure_audit(path: str) -> None:
    """Check every figure a cell leaves open before the inline backend shows it; append problems to `path`.

    Registered as an IPython `post_execute` callback before pyplot is imported, so it runs before the inline
    backend's own callback (which displays the figures and closes them).
    """
    from IPython import get_ipython

    shell = get_ipython()

    def audit() -> None:
        import sys

        if "matplotlib.pyplot" not in sys.modules:
            return
        import matplotlib.pyplot as plt

        problems = [p for num in plt.get_fignums() for p in figure_problems(plt.figure(num))]
        if problems:
            with open(path, "a") as fh:
                for problem in problems:
                    fh.write(json.dumps({"cell": shell.execution_count, "problem": problem}) + "\n")

    shell.events.register("post_execute", audit)


def figure_problems(fig: Any) -> list[str]:
    """Empty panels, overlapping tick labels and panels overlapping each other, in words (empty: readable)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    name = fig._suptitle.get_text() if fig._suptitle else ""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    problems = []
    for i, ax in enumerate(axes):
        label = f"figure {name or fig.number!r}, panel {ax.get_title() or i}"
        if not ax.has_data():
            problems.append(f"{label}: empty panel")
        for axis in (ax.xaxis, ax.yaxis):
            if _labels_overlap(axis, renderer, fig.dpi):
                problems.append(f"{label}: overlapping {axis.axis_name} tick labels")
    boxes = [ax.get_tightbbox(renderer) for ax in axes]
    for i in range(len(axes)):
        for j in range(i + 1, len(axes)):
            if _overlap(boxes[i], boxes[j]):
                problems.append(f"figure {name or fig.number!r}: panels {i} and {j} overlap")
    return problems


def _overlap(a: Any, b: Any, tolerance: float = 1.0) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance and min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance


def _labels_overlap(axis: Any, renderer: Any, dpi: float) -> bool:
    """Whether two neighbouring visible tick labels of `axis` overlap (rotated labels: by their slanted width)."""
    lo, hi = sorted(axis.get_view_interval())
    labels = [
        tick.label1
        for tick, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs(), strict=False)
        if lo <= loc <= hi and tick.label1.get_visible() and tick.label1.get_text()
    ]
    boxes = [(t.get_window_extent(renderer), t) for t in labels]
    along = (lambda b: b.x0) if axis.axis_name == "x" else (lambda b: b.y0)
    boxes.sort(key=lambda bt: along(bt[0]))
    for (a, text), (b, _) in zip(boxes, boxes[1:], strict=False):
        angle = math.radians(text.get_rotation() % 180)
        if axis.axis_name == "x" and 0.1 < angle < math.pi - 0.1:
            height = text.get_fontsize() * dpi / 72
            if b.x0 + b.width / 2 - (a.x0 + a.width / 2) < height / abs(math.sin(angle)):
                return True
        elif _overlap(a, b, tolerance=0.5):
            return True
    return False
