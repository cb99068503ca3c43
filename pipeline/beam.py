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
    return args + with_runner_defaults(config.beam.extra_args)


def job_args(config: PipelineConfig) -> list[str]:
    """Beam args for tandem's own jobs on logged traffic (the monitor, the replay) run for a
    pipeline config: in process on DirectRunner (they read chunks of thousands of examples, so
    worker processes only add start-up), and `beam.extra_args` as for the pipeline."""
    return ["--direct_running_mode=in_memory", *with_runner_defaults(config.beam.extra_args)]


# Beam's portable runners (PortableRunner, and FlinkRunner and SparkRunner built on it) give
# the driver's watch on a running job (its state and message streams) the deadline of one
# request to the job service, `--job_server_timeout`, 60 s by default: a job that runs longer
# than a minute fails in the driver with DEADLINE_EXCEEDED while it goes on to finish on the
# cluster. Unless the args set it, tandem waits up to a day.
PORTABLE_RUNNERS = ("portablerunner", "flinkrunner", "sparkrunner")
JOB_SERVER_TIMEOUT_S = 24 * 3600


def _flags(args: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)


def with_runner_defaults(args: list[str]) -> list[str]:
    """`args` with what a portable runner needs and Beam does not default to (above)."""
    flags = _flags(args)
    if flags.get("runner", "").lower() in PORTABLE_RUNNERS and not any(
            arg.startswith(("--job_server_timeout", "--job-server-timeout")) for arg in args):
        return [*args, f"--job_server_timeout={JOB_SERVER_TIMEOUT_S}"]
    return list(args)


def runner_name(config: PipelineConfig) -> str:
    """What runs the Beam jobs, for the run's banner: `--runner` from `beam.extra_args` with
    its job endpoint when it has one, else DirectRunner's mode."""
    flags = _flags(config.beam.extra_args)
    runner = flags.get("runner")
    if not runner:
        return config.beam.direct_running_mode
    endpoint = flags.get("job_endpoint") or flags.get("flink_master") or flags.get("region")
    return f"{runner} ({endpoint})" if endpoint else runner
