"""Benchmark: model server start-up with several models, loaded one after another (TF Serving's
default, --num_load_threads=0) against loaded in parallel (--num_load_threads=N), in
interleaved rounds: the time from launching `tandem serve models` to every model answering.

    python bench/startup.py [--models 5] [--threads 4] [--rounds 3] [--model_base_path DIR]

Without --model_base_path each model is a copy of a small generated SavedModel (the serving
tests' scorer, with warmup records); with it, copies of that model's latest version.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # so `import serving` finds the package, not bench/serving.py
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def models(work: str, count: int, source: str | None) -> str:
    """A models.config of `count` models, each a copy of one SavedModel version."""
    if source:
        versions = sorted(int(v) for v in os.listdir(source) if v.isdigit())
        original = os.path.join(source, str(versions[-1]))
    else:
        from tests.serving.conftest import make_model

        original = make_model(os.path.join(work, "src"), 1, warmup=20)
    entries = []
    for i in range(count):
        base = os.path.join(work, f"m{i}")
        shutil.copytree(original, os.path.join(base, "1"))
        entries.append(f'  config {{ name: "m{i}" base_path: "{base}" '
                       'model_platform: "tensorflow" }\n')
    path = os.path.join(work, "models.config")
    with open(path, "w") as f:
        f.write("model_config_list {\n" + "".join(entries) + "}\n")
    return path


def start_up(config: str, threads: int) -> float:
    """Seconds from launch to the server's 'gRPC on' line, printed once every model is
    loaded and warmed up (the server loads before it listens, as TF Serving does)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.pipeline.cli", "serve", "models", f"--model_config_file={config}",
         "--port=0", "--rest_api_port=0", f"--num_load_threads={threads}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        for line in proc.stdout:
            if line.startswith("gRPC on"):
                return time.perf_counter() - start
        raise SystemExit(f"the server exited with status {proc.wait()}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model_base_path", help="serving dir of one model to copy")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="tandem-bench-startup-")
    try:
        config = models(work, args.models, args.model_base_path)
        one = models(os.path.join(work, "one"), 1, args.model_base_path)
        times: dict[str, list[float]] = {"1 model": [], "serial": [], "parallel": []}
        for _ in range(args.rounds):
            times["1 model"].append(start_up(one, 0))
            times["serial"].append(start_up(config, 0))
            times["parallel"].append(start_up(config, args.threads))
        print(f"start-up to serving, {args.models} models, median of {args.rounds} interleaved "
              f"rounds (--num_load_threads=0 vs {args.threads})")
        for name, samples in times.items():
            print(f"  {name:<9} {np.median(samples):6.2f} s  (runs: "
                  f"{', '.join(f'{t:.2f}' for t in samples)})")
        ratio = np.median(times["serial"]) / np.median(times["parallel"])
        print(f"parallel loads: {ratio:.2f}x faster start-up than serial")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
