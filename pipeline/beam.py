"""Pipeline runtime: the one place that turns config into Beam pipeline args.

Beam's DirectRunner runs in this process (`in_memory`) or fans out to worker processes
(`multi_processing`). Worker processes pay a fixed start-up (each imports TensorFlow) in every
Beam-running component, which small inputs never earn back: on two cores a 20,000-row run
spends 113 s in ExampleGen, StatisticsGen, Transform and the Evaluator in worker processes and
84 s in process. `auto`, the default, picks by the size of the files the run reads; an explicit
mode is always honoured.
"""

from __future__ import annotations

import dataclasses
import os

from tandem.pipeline.config import PipelineConfig

# Inputs up to this many bytes on disk (as stored: a .gz file counts compressed) run in
# process. README "Where it runs" gives the measurements behind it.
IN_PROCESS_MAX_BYTES = 64 * 2**20


def input_bytes(files: list[str]) -> int | None:
    """Total size of the input files; None when any is remote or cannot be sized."""
    total = 0
    for path in files:
        if "://" in path:
            return None
        try:
            total += os.path.getsize(path)
        except OSError:
            return None
    return total


def running_mode(config: PipelineConfig, files: list[str] | None = None) -> str:
    """The DirectRunner mode for a run reading `files`: the configured one, or for `auto`
    in_memory up to IN_PROCESS_MAX_BYTES and multi_processing above it or when the size is
    unknown (no files given, remote storage)."""
    mode = config.beam.direct_running_mode
    if mode != "auto":
        return mode
    size = input_bytes(files) if files else None
    return "in_memory" if size is not None and size <= IN_PROCESS_MAX_BYTES else "multi_processing"


def with_running_mode(config: PipelineConfig, files: list[str]) -> PipelineConfig:
    """The config with `auto` settled for these inputs, so that everything downstream (the
    Beam args, TFX's cache key, the run's record) sees the mode that ran."""
    return dataclasses.replace(config, beam=dataclasses.replace(
        config.beam, direct_running_mode=running_mode(config, files)))


def beam_pipeline_args(config: PipelineConfig, files: list[str] | None = None) -> list[str]:
    """Beam args for every Beam-running component and job (DirectRunner by default;
    `beam.extra_args` carries --runner=DataflowRunner / FlinkRunner settings at scale)."""
    args = [
        f"--direct_num_workers={config.beam.direct_num_workers}",
        f"--direct_running_mode={running_mode(config, files)}",
    ]
    return args + list(config.beam.extra_args)
