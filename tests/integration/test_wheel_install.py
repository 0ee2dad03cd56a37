"""A built wheel works on its own: installed without -e into a fresh virtual environment, run from another
working directory, it finds its SQL macros, named queries and report template (shipped inside the package)
and captures, queries and reports.

The fresh environment reuses this environment's installed dependencies through a .pth file (nothing is
downloaded). A .pth file adds a path but does not process the .pth files inside it, so the editable install
of the source tree that this environment may have is not active there; PYTHONPATH is removed as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("saliency_lab", "queries", "reports", "pyproject.toml", "setup.py", "README.md")

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _build_wheel(tmp: Path, env: dict[str, str]) -> Path:
    # Build from a copy, so the source tree gets no build/ or egg-info folders.
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    pip_wheel = "-m pip wheel --no-deps --no-build-isolation --no-index -q -w".split()
    _run([sys.executable, *pip_wheel, str(dist), str(src)], tmp, env)
    (wheel,) = dist.glob("saliency_lab-*.whl")
    return wheel


def _fresh_venv(tmp: Path, env: dict[str, str]) -> tuple[Path, Path]:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    python = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", code], tmp, env).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_reuse_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python, site


def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    wheel = _build_wheel(tmp_path, env)
    python, site = _fresh_venv(tmp_path, env)
    pip_install = "-m pip install --no-deps --no-index --ignore-installed -q".split()
    _run([str(python), *pip_install, str(wheel)], tmp_path, env)
    work = tmp_path / "elsewhere"
    work.mkdir()

    code = (
        "import json, saliency_lab; from saliency_lab.store.sqlfiles import queries_dir; "
        "from saliency_lab.report.assets import TEMPLATES_DIR; "
        "print(json.dumps([saliency_lab.__file__, str(queries_dir()), str(TEMPLATES_DIR)]))"
    )
    where = json.loads(_run([str(python), "-c", code], work, env))
    # the installed copy, with its own queries/ and reports/, never the source tree
    assert all(Path(p).resolve().is_relative_to(site.resolve()) for p in where), where
    assert [Path(p) for p in where[1:]] == [
        site / "saliency_lab" / "queries",
        site / "saliency_lab" / "reports",
    ]

    cli = str(python.parent / "saliency-lab")
    listed = _run([cli, "query", "list"], work, env)
    names = {line.split(":")[0].strip() for line in listed.splitlines()}
    assert {"binned_curve", "run_summary", "token_scores"} <= names

    _run([cli, "tiny-model", "--arch", "llama", "--out", "tiny"], work, env)
    (work / "prompts.jsonl").write_text(
        '{"sample_id": "s1", "prompt": "Describe a cat."}\n{"sample_id": "s2", "prompt": "Describe a dog."}\n'
    )
    capture = "capture --model tiny --data prompts.jsonl --out runs --run-id w --max-new-tokens 5 --quiet"
    _run([cli, *capture.split()], work, env)
    summary = _run([cli, "query", "run_summary", "runs/w"], work, env)  # the catalog's SQL macros
    assert "w" in summary and "2" in summary

    _run([cli, "report", "runs/w", "-o", "report.html", "--bootstrap", "0", "--no-calibrate"], work, env)
    html = (work / "report.html").read_text(encoding="utf-8")
    css = (ROOT / "reports" / "report.css").read_text(encoding="utf-8").strip().splitlines()[0]
    # the shipped template and its stylesheet
    assert "<html" in html and "saliency-lab report" in html and css in html
