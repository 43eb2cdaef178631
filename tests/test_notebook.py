"""The notebook example runs top to bottom in a Jupyter kernel (nbclient), and ``normlab.show``
displays the report's figures and animation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "part1.ipynb"


@pytest.mark.slow
def test_part1_notebook_runs_and_shows_the_report(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager

    # the kernel is this interpreter (a fresh CI venv has no installed kernelspec of its own)
    monkeypatch.setenv("NORMLAB_NOTEBOOK_STEPS", "20")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve() or spec.argv[0] == "python"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("data", {}).get("text/plain", "") for o in outputs]
    assert any("train  20/20" in text for text in texts), "the progress line reached the last step"
    assert any("('completed', 20)" in text for text in texts)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    videos = [o for o in outputs if "<video" in o.get("data", {}).get("text/html", "")]
    shown = eval(next(t for t in reversed(texts) if t.startswith("[")))  # the last cell: names shown
    assert len(images) == len([n for n in shown if n.endswith(".png")]) > 3
    assert len(videos) == len([n for n in shown if n.endswith(".mp4")]) >= 1
    assert any(path.name == "report.html" for path in tmp_path.glob("runs/*/report/report.html"))
