"""tandem as a user installs it: a wheel built from the repository, installed into a fresh
virtual environment, run from a directory outside the repository.

The wheel must add one top-level name, `tandem`, so that it cannot collide with a TFX
project's own `pipeline/` or `schemas/` package, and carry everything a run reads (the
shipped configs, the curated schemas, the notebook). The fresh environment gets tandem's
dependencies from this one's site-packages through a .pth file, so nothing is downloaded;
that file adds the directory to sys.path without running this environment's own .pth files,
so the editable install of the repository stays out of it.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.pipeline

# What setup.py reads to build the wheel: the package's folders and the files setup.py opens.
SOURCES = ("setup.py", "requirements.lock", "tandem", "pipeline", "components",
           "schemas", "serving", "reports", "notebooks")
SHIPPED_DATA = ("tandem/pipeline/configs/listening.yaml", "tandem/pipeline/configs/taxi.yaml",
                "tandem/schemas/listening/schema.pbtxt", "tandem/schemas/taxi/schema.pbtxt",
                "tandem/notebooks/walkthrough.ipynb")
ROWS = 4500  # the eval split (1/3) must stay above the schema's min_examples_count of 1000


def _run(cmd, cwd, env, timeout=600):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return done, f"$ {' '.join(map(str, cmd))}\n{done.stdout}\n{done.stderr}"


def _build_wheel(tmp_path):
    """The wheel, built from a copy of the sources (an in-tree build would leave build/ in
    the repository, and stale files in build/ would reach later wheels)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src / name)
    out = tmp_path / "wheel"
    # setuptools and wheel from this environment: no build isolation, no download.
    done, log = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                      "--no-index", "--wheel-dir", out, src], cwd=tmp_path, env=os.environ.copy())
    assert done.returncode == 0, log
    (wheel,) = out.glob("tandem-*.whl")
    return wheel


def test_the_wheel_installs_only_tandem_and_runs_from_anywhere(tmp_path):
    wheel = _build_wheel(tmp_path)

    # 1. The wheel holds one top-level name, and the data files a run reads.
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        assert z.read(f"{info}/top_level.txt").decode().split() == ["tandem"]
        record = z.read(f"{info}/RECORD").decode().splitlines()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    assert {line.split(",")[0].split("/")[0] for line in record} == {"tandem", info}
    assert {n.split("/")[0] for n in names} == {"tandem", info}
    assert set(SHIPPED_DATA) <= set(names), sorted(names)
    assert "tandem = tandem.pipeline.cli:main" in entry_points

    # 2. A fresh environment; the wheel installed by pip run against it (`pip --python`).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    before = set(os.listdir(site))
    done, log = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                      "--no-index", wheel], cwd=tmp_path, env=os.environ.copy())
    assert done.returncode == 0, log
    added = set(os.listdir(site)) - before
    assert {n for n in added if not n.endswith(".dist-info")} == {"tandem"}, added
    # tandem's dependencies: this environment's site-packages, after the fresh one's.
    with open(os.path.join(site, "tandem-dependencies.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")

    # 3. Run from outside the repository, with nothing of the repository on the path.
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONNOUSERSITE="1",
               PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    tandem = env_dir / "bin" / "tandem"

    done, log = _run([python, "-c", "import tandem, tandem.pipeline.config as c; "
                      "print(tandem.__file__); print(c.named_config('listening')); "
                      "print(c.resolve_path('pkg:schemas/listening/schema.pbtxt'))"], work, env)
    assert done.returncode == 0, log
    installed = os.path.join(site, "tandem") + os.sep
    assert all(line.startswith(installed) for line in done.stdout.split()), log
    assert all(os.path.isfile(p) for p in done.stdout.split()[1:]), log

    for name in ("pipeline", "components", "schemas", "serving", "reports"):
        done, log = _run([python, "-c", f"import {name}"], work, env)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, log

    done, log = _run([tandem, "--help"], work, env)
    assert done.returncode == 0 and "usage: tandem" in done.stdout, log

    done, log = _run([tandem, "data", "generate", "--rows", ROWS, "--out", work / "data"],
                     work, env)
    assert done.returncode == 0, log
    assert (work / "data" / "span-1").is_dir(), log

    done, log = _run([tandem, "run", "--config", "listening", "--until", "validate",
                      "--set", f"data.location={work / 'data'}",
                      "--set", f"output_dir={work / 'out'}"], work, env)
    assert done.returncode == 0, log
    assert "[ValidationGate] finished" in done.stdout, log
    assert (work / "out" / "metadata.sqlite").is_file(), log

    # The notebook travels too, and imports tandem's modules by their installed names.
    notebook = os.path.join(site, "tandem", "notebooks", "walkthrough.ipynb")
    with open(notebook) as f:
        text = f.read()
    assert "from tandem.pipeline import notebook" in text
