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
from tandem.schemas.exit_status import BadInputError

# Inputs up to this many bytes, uncompressed, run in process. A GZIP file counts as the size
# its trailer records: 1M listening rows are 44 MB as .tfrecord.gz but 410 MB of records; run
# in process (as 44 MB once let them), ExampleGen took 304 s and StatisticsGen 123 s, against
# 148 s and 66 s in worker processes. docs/benchmarks.md "Pipeline scale" has the runs.
IN_PROCESS_MAX_BYTES = 64 * 2**20


# Records to GZIP bytes, for a file whose trailer does not give its size (a request log still
# being written ends with a sync flush; several members give only the last one's): listening's
# records compress 9.3 to 1.
GZIP_EXPANSION = 10


def _uncompressed_bytes(path: str) -> int:
    """A file's size, or for a GZIP file the uncompressed size in its trailer (ISIZE, the
    size mod 2**32 of its last member); when that cannot be the whole file's (smaller than
    the compressed bytes, or no trailer yet), GZIP_EXPANSION times the compressed size."""
    from tandem.schemas.files import gzip_by_magic

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if not gzip_by_magic(f.read(2)) or size < 18:  # header 10 + trailer 8 bytes
            return size
        f.seek(-4, os.SEEK_END)
        tail = f.read(4)
    isize = int.from_bytes(tail, "little")
    if tail == b"\x00\x00\xff\xff" or isize < size:  # a sync flush's end, or not the whole
        return size * GZIP_EXPANSION
    return isize


def input_bytes(files: list[str]) -> int | None:
    """Total uncompressed size of the input files; None when any is remote or cannot be
    sized."""
    total = 0
    for path in files:
        if "://" in path:
            return None
        try:
            total += _uncompressed_bytes(path)
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


def num_workers(config: PipelineConfig, mode: str) -> int:
    """`--direct_num_workers` for `mode`: the configured number, else (0) one in process, and
    in worker threads or processes 0, which Beam reads as one per core of the machine the job
    runs on (so a compiled pipeline does not carry the compiling machine's count). In process,
    a second worker is a thread under the same interpreter lock: Beam splits every bundle in
    two and merges the halves' metrics, and the run came out slower at every size measured
    (docs/benchmarks.md, "Pipeline scale"), with analyzer results that depend on the threads'
    timing."""
    if config.beam.direct_num_workers:
        return config.beam.direct_num_workers
    return 1 if mode == "in_memory" else 0


def beam_pipeline_args(config: PipelineConfig, files: list[str] | None = None) -> list[str]:
    """Beam args for every Beam-running component and job (DirectRunner by default;
    `beam.extra_args` carries --runner=DataflowRunner / FlinkRunner settings at scale)."""
    mode = running_mode(config, files)
    args = [
        f"--direct_num_workers={num_workers(config, mode)}",
        f"--direct_running_mode={mode}",
    ]
    return args + with_runner_defaults(config.beam.extra_args)


def job_args(config: PipelineConfig) -> list[str]:
    """Beam args for tandem's own jobs on logged traffic (the monitor, the replay) run for a
    pipeline config: in process on DirectRunner (they read chunks of thousands of examples, so
    worker processes only add start-up), and `beam.extra_args` as for the pipeline."""
    return ["--direct_running_mode=in_memory", *with_runner_defaults(config.beam.extra_args)]


# Beam's portable runners (PortableRunner, and FlinkRunner, SparkRunner and PrismRunner built on
# it) give the driver's watch on a running job (its state and message streams) the deadline of
# one request to the job service, `--job_server_timeout`, 60 s by default: a job that runs
# longer than a minute fails in the driver with DEADLINE_EXCEEDED while it goes on to finish on
# the cluster. Unless the args set it, tandem waits up to a day, and checks first that the job
# service answers at all (`check_job_service`), so that a wrong endpoint fails in seconds.
JOB_SERVER_TIMEOUT_S = 24 * 3600
JOB_SERVICE_CONNECT_S = 30.0


class BeamArgsError(BadInputError):
    """Beam args that cannot run: the message names the arg (exit status 2)."""


def _flags(args: list[str]) -> dict[str, str]:
    """`--name=value` and `--name value` flags, as Beam reads them."""
    flags: dict[str, str] = {}
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            name, value = arg[2:], args[i + 1]
        else:
            continue
        flags[name.replace("-", "_")] = value
    return flags


def runner_class(args: list[str]) -> type | None:
    """The runner class Beam would build for `args` (`portable`, `FlinkRunner`, a dotted
    class path, ...), or None for the default (DirectRunner)."""
    runner = _flags(args).get("runner")
    if not runner:
        return None
    import importlib

    from apache_beam.runners.runner import _RUNNER_MAP

    path = _RUNNER_MAP.get(runner.lower(), _RUNNER_MAP.get(runner.lower() + "runner", runner))
    if "." not in path:
        raise BeamArgsError(f"beam args: unknown runner {runner!r}")
    module, name = path.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise BeamArgsError(f"beam args: runner {runner!r} cannot be loaded: {e}") from None


def _is_portable(args: list[str]) -> bool:
    runner = runner_class(args)
    if runner is None:  # DirectRunner: no need to import the portable runner to know
        return False
    from apache_beam.runners.portability.portable_runner import PortableRunner

    return issubclass(runner, PortableRunner)


def with_runner_defaults(args: list[str]) -> list[str]:
    """`args` with what a portable runner needs and Beam does not default to (above)."""
    if _is_portable(args) and "job_server_timeout" not in _flags(args):
        return [*args, f"--job_server_timeout={JOB_SERVER_TIMEOUT_S}"]
    return list(args)


def check_job_service(args: list[str], timeout_s: float = JOB_SERVICE_CONNECT_S) -> None:
    """For a portable runner with a `--job_endpoint`: the job service answers within
    `timeout_s`, else BeamArgsError naming the endpoint. Runs before any job is submitted."""
    endpoint = _flags(args).get("job_endpoint")
    if not endpoint or endpoint == "embed" or not _is_portable(args):
        return
    import grpc

    channel = grpc.insecure_channel(endpoint)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise BeamArgsError(f"beam args: no Beam job service answers at --job_endpoint="
                            f"{endpoint} (waited {timeout_s:.0f}s)") from None
    finally:
        channel.close()


def runner_name(config: PipelineConfig) -> str:
    """What runs the Beam jobs, for the run's banner: `--runner` from `beam.extra_args` with
    its job endpoint when it has one, else DirectRunner's mode."""
    flags = _flags(config.beam.extra_args)
    runner = flags.get("runner")
    if not runner:
        return config.beam.direct_running_mode
    endpoint = flags.get("job_endpoint") or flags.get("flink_master") or flags.get("region")
    return f"{runner} ({endpoint})" if endpoint else runner


# TFX's Beam executors, given any Beam args, package TFX's own installation into an sdist for
# remote workers (`tfx.utils.dependency_utils.make_beam_dependency_flags`) unless the args
# already say where dependencies come from. It does so once per Beam component, in a temporary
# directory it never removes: 49 MB and about 1.3 s each, and on the DirectRunner, or a
# portable runner whose workers run from this installation (LOOPBACK, EXTERNAL, PROCESS), the
# package is never read. `run_local_dag` skips it there, and elsewhere builds it once per
# process and removes it at exit.
_LOCAL_ENVIRONMENTS = {"loopback", "external", "process"}
_built_packages: dict[str, list[str]] = {}


def workers_share_installation(args: list[str]) -> bool:
    """Whether the Beam workers for `args` import this Python installation (no staging)."""
    runner = runner_class(args)
    if runner is None:
        return True
    from apache_beam.runners.direct.direct_runner import DirectRunner
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    if issubclass(runner, (DirectRunner, FnApiRunner)):
        return True
    environment = _flags(args).get("environment_type", "").lower()
    return _is_portable(args) and environment in _LOCAL_ENVIRONMENTS


def _dependency_flags(original, args: list[str]) -> list[str]:
    if workers_share_installation(args):
        return list(args)
    key = "\0".join(args)
    if key not in _built_packages:
        import atexit
        import shutil
        import tempfile

        built = original(args)
        _built_packages[key] = built
        # TFX builds in a mkdtemp() of its own: remove that directory, and nothing else
        tmp = os.path.realpath(tempfile.gettempdir())
        for arg in built[len(args):]:
            if arg.startswith("--extra_package="):
                package = os.path.realpath(arg.split("=", 1)[1])
                if package.startswith(tmp + os.sep):
                    top = os.path.relpath(package, tmp).split(os.sep)[0]
                    atexit.register(shutil.rmtree, os.path.join(tmp, top), True)
    return list(_built_packages[key])


def install_dependency_policy() -> None:
    """Routes TFX's dependency packaging through `_dependency_flags` (idempotent)."""
    import functools

    from tfx.utils import dependency_utils

    original = dependency_utils.make_beam_dependency_flags
    if getattr(original, "_tandem_policy", False):
        return
    policy = functools.partial(_dependency_flags, original)
    policy._tandem_policy = True  # type: ignore[attr-defined]
    dependency_utils.make_beam_dependency_flags = policy


def run_local_dag(pipeline) -> None:
    """Runs a TFX pipeline with LocalDagRunner, under tandem's dependency policy, with Beam's
    pickler remembering its bz2 work (components/beam_runtime.py) and TFDV's histograms made
    from arrays (components/histograms.py)."""
    from tandem.components import histograms
    from tandem.components import tfx_api as tfx
    from tandem.components.beam_runtime import quicker_pickling

    install_dependency_policy()
    quicker_pickling()
    histograms.install()
    tfx.orchestration.LocalDagRunner().run(pipeline)
