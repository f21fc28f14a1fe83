"""Every notebook in notebooks/ runs end to end in smoke mode and matches its jupytext .py.

A notebook's cell tagged `parameters` sets `SMOKE = False`; here it is replaced by
`SMOKE = True` (the configs' smoke variants, tiny budgets, outputs in a temporary directory)
and the notebook is executed with nbclient in a temporary working directory. The committed
.ipynb carries the outputs of its full run; the paired .py (jupytext percent format) is the
readable source, and the two must hold the same cells.
"""

import glob
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
SCRIPTS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.py")))
IDS = [os.path.basename(p)[:-6] for p in NOTEBOOKS]


def stem(path):
  return os.path.splitext(path)[0]


def cells(notebook):
  return [(c.cell_type, c.source.strip()) for c in notebook.cells
          if c.cell_type in ("code", "markdown")]


def parameters_cell(notebook):
  tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
  return tagged[0]


def test_every_notebook_has_its_script_and_back():
  assert NOTEBOOKS, "no notebooks found"
  assert sorted(map(stem, NOTEBOOKS)) == sorted(map(stem, SCRIPTS))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_and_script_hold_the_same_cells(path):
  notebook = nbformat.read(path, as_version=4)
  script = jupytext.read(stem(path) + ".py")
  assert cells(notebook) == cells(script), (
      f"{os.path.basename(path)} and its .py differ: run `jupytext --sync {stem(path)}.py`")
  assert parameters_cell(notebook).source.strip().startswith("SMOKE = False")
  assert parameters_cell(script).source.strip().startswith("SMOKE = False")


def snapshot(*dirs):
  out = {}
  for d in dirs:
    for root, _, files in os.walk(d):
      for name in files:
        p = os.path.join(root, name)
        out[p] = os.stat(p).st_mtime_ns
  return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
  notebook = nbformat.read(path, as_version=4)
  cell = parameters_cell(notebook)
  cell.source = "SMOKE = True"
  results_dir = os.path.join(os.path.dirname(NOTEBOOK_DIR), "experiments", "results")
  before = snapshot(NOTEBOOK_DIR, results_dir)
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("TQDM_DISABLE", "1")
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.output_type == "error"]
  assert not errors
  # Smoke mode writes only under temporary directories, never into the repository.
  assert snapshot(NOTEBOOK_DIR, results_dir) == before
