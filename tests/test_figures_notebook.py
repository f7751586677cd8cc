"""The notebook runner's figure checks fail when they should: a figure that is not displayed (an `Agg` backend), an
empty panel, overlapping tick labels; a clean inline figure passes."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.notebook_runner import FIGURE_KEY, run_notebook


def _notebook(path: Path, cells: list[tuple[str, str | None]]) -> Path:
    nb = new_notebook(cells=[new_code_cell(src, metadata={FIGURE_KEY: name} if name else {}) for src, name in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_figure_drawn_on_the_agg_backend_is_missing(tmp_path: Path) -> None:
    path = _notebook(
        tmp_path / "agg.ipynb",
        [
            ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt", None),
            ("fig, ax = plt.subplots()\nax.plot([1, 2, 3])", "chart"),
        ],
    )
    run = run_notebook(path, {})
    assert run.figures == {"chart": 0}
    with pytest.raises(AssertionError, match=r"not displayed \(no image/png output\): \['chart'\]"):
        run.assert_figures(["chart"])
    with pytest.raises(AssertionError, match="no cell declares"):
        run.assert_figures(["ladder"])


def test_empty_panels_and_overlapping_labels_are_found_and_a_clean_figure_passes(tmp_path: Path) -> None:
    crowded = (
        "fig, axes = plt.subplots(1, 2, figsize=(4, 2))\n"
        "fig.suptitle('crowded')\n"
        "axes[0].bar(range(40), range(40))\n"
        "axes[0].set_xticks(range(40), [f'a long label {i}' for i in range(40)])\n"
        "axes[1].set_title('nothing here')"
    )
    clean = (
        "fig, ax = plt.subplots(figsize=(6, 3))\n"
        "fig.suptitle('clean')\n"
        "ax.plot([1, 2, 3], [2, 1, 3], label='series')\n"
        "ax.legend()\n"
        "fig.tight_layout()"
    )
    path = _notebook(
        tmp_path / "layout.ipynb",
        [("import matplotlib.pyplot as plt", None), (crowded, "crowded"), (clean, "clean")],
    )
    run = run_notebook(path, {})
    assert run.figures == {"crowded": 1, "clean": 1}  # both displayed inline
    problems = "\n".join(run.problems)
    assert "'crowded', panel nothing here: empty panel" in problems
    assert "overlapping x tick labels" in problems
    assert "clean" not in problems
    with pytest.raises(AssertionError, match="unreadable figure"):
        run.assert_figures(["crowded", "clean"])
