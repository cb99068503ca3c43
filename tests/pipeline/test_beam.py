"""Beam args: `auto` runs small inputs in process and large ones in worker processes; an
explicit mode is honoured whatever the input's size."""

import gzip
import os
import zlib

import pytest

from tandem.pipeline.beam import (
    GZIP_EXPANSION,
    IN_PROCESS_MAX_BYTES,
    JOB_SERVER_TIMEOUT_S,
    BeamArgsError,
    beam_pipeline_args,
    check_job_service,
    job_args,
    runner_name,
    running_mode,
    with_runner_defaults,
    with_running_mode,
)
from tandem.pipeline.config import load_config

CONFIG = """name: churn
data: {location: data}
label: churned
problem_type: binary_classification
"""


def _config(tmp_path, *overrides):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "config.yaml").write_text(CONFIG)
    return load_config(str(tmp_path / "config.yaml"), list(overrides))


def _file(tmp_path, name: str, size: int) -> str:
    path = tmp_path / "data" / name
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: the size is what counts, not the bytes written
    return str(path)


def test_auto_is_the_default_and_picks_in_memory_up_to_the_threshold(tmp_path):
    config = _config(tmp_path)
    assert config.beam.direct_running_mode == "auto"
    small = [_file(tmp_path, "a.csv", IN_PROCESS_MAX_BYTES // 2),
             _file(tmp_path, "b.csv", IN_PROCESS_MAX_BYTES // 2)]  # exactly the threshold
    assert running_mode(config, small) == "in_memory"
    assert "--direct_running_mode=in_memory" in beam_pipeline_args(config, small)
    settled = with_running_mode(config, small)
    assert settled.beam.direct_running_mode == "in_memory"
    assert beam_pipeline_args(settled) == beam_pipeline_args(config, small)


def test_auto_picks_multi_processing_above_the_threshold_or_when_the_size_is_unknown(
        tmp_path):
    config = _config(tmp_path)
    large = [_file(tmp_path, "a.csv", IN_PROCESS_MAX_BYTES),
             _file(tmp_path, "b.csv", 1)]
    assert running_mode(config, large) == "multi_processing"
    assert with_running_mode(config, large).beam.direct_running_mode == "multi_processing"
    assert running_mode(config, ["gs://bucket/data/a.csv"]) == "multi_processing"
    assert running_mode(config, [str(tmp_path / "data" / "gone.csv")]) == "multi_processing"
    assert running_mode(config) == "multi_processing"  # e.g. a Kubeflow compile: no inputs
    assert "--direct_running_mode=multi_processing" in beam_pipeline_args(config)


def _gzip(tmp_path, name: str, raw: int) -> str:
    path = tmp_path / "data" / name
    with gzip.open(path, "wb") as f:
        for _ in range(raw // 2**20):
            f.write(bytes(2**20))  # zeros: megabytes of records in a few kilobytes on disk
    return str(path)


def test_auto_counts_a_gzip_file_by_its_uncompressed_size(tmp_path):
    config = _config(tmp_path)
    big = _gzip(tmp_path, "big.tfrecord.gz", IN_PROCESS_MAX_BYTES + 2**20)
    small = _gzip(tmp_path, "small.tfrecord.gz", IN_PROCESS_MAX_BYTES // 2)
    assert os.path.getsize(big) < 2**20  # tiny on disk, yet more than the threshold of data
    assert running_mode(config, [big]) == "multi_processing"
    assert running_mode(config, [small]) == "in_memory"
    assert running_mode(config, [small, _file(tmp_path, "b.csv", IN_PROCESS_MAX_BYTES // 2
                                              + 2**20)]) == "multi_processing"
    # A log still being written ends with a sync flush, no trailer yet: it counts as
    # GZIP_EXPANSION times its compressed bytes.
    def unfinished(name: str, data: bytes) -> str:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        path = tmp_path / "data" / name
        path.write_bytes(compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))
        return str(path)

    open_small = unfinished("open-small.gz", os.urandom(2**16))
    assert running_mode(config, [open_small]) == "in_memory"
    big_random = os.urandom(IN_PROCESS_MAX_BYTES // GZIP_EXPANSION + 2**20)  # incompressible
    assert running_mode(config, [unfinished("open-big.gz", big_random)]) == "multi_processing"


@pytest.mark.parametrize("mode", ["in_memory", "multi_threading", "multi_processing"])
def test_an_explicit_mode_is_honoured_at_any_size(tmp_path, mode):
    config = _config(tmp_path, f"beam.direct_running_mode={mode}")
    small = [_file(tmp_path, "a.csv", 10)]
    large = [_file(tmp_path, "b.csv", 2 * IN_PROCESS_MAX_BYTES)]
    for files in (small, large, None):
        assert running_mode(config, files) == mode
    assert with_running_mode(config, large) == config


def test_one_worker_in_process_and_one_per_core_in_worker_processes_unless_set(tmp_path,
                                                                              monkeypatch):
    """In process a second DirectRunner worker is a thread under the same interpreter lock
    (docs/benchmarks.md, "Pipeline scale"); worker threads or processes get 0, which Beam
    reads as one per core where the job runs (not where it was compiled); a number the config
    sets is honoured in every mode."""
    config = _config(tmp_path)
    assert config.beam.direct_num_workers == 0
    small = [_file(tmp_path, "a.csv", 10)]
    large = [_file(tmp_path, "b.csv", 2 * IN_PROCESS_MAX_BYTES)]
    assert "--direct_num_workers=1" in beam_pipeline_args(config, small)
    assert "--direct_num_workers=0" in beam_pipeline_args(config, large)
    assert "--direct_num_workers=0" in beam_pipeline_args(config)  # a compile: no inputs
    threads = _config(tmp_path, "beam.direct_running_mode=multi_threading")
    assert "--direct_num_workers=0" in beam_pipeline_args(threads, small)
    for mode in ("in_memory", "multi_processing"):
        set_ = _config(tmp_path, "beam.direct_num_workers=3", f"beam.direct_running_mode={mode}")
        assert "--direct_num_workers=3" in beam_pipeline_args(set_, small)

    # What Beam makes of those args: 0 is one worker per core of the machine it runs on.
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    seen = {}
    run = FnApiRunner.run_via_runner_api

    def spy(self, *args, **kwargs):
        seen["workers"] = self._num_workers
        return run(self, *args, **kwargs)

    monkeypatch.setattr(FnApiRunner, "run_via_runner_api", spy)
    for args, workers in ((beam_pipeline_args(config, large), os.cpu_count()),
                          (beam_pipeline_args(config, small), 1)):
        options = PipelineOptions([a for a in args if "running_mode" not in a])
        with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
            _ = p | beam.Create([1]) | beam.Map(lambda x: x)
        assert seen["workers"] == workers


PORTABLE = '["--runner=PortableRunner", "--job_endpoint=localhost:8099"]'


def test_a_portable_runner_waits_for_long_jobs_unless_told_otherwise(tmp_path):
    # Beam's own default (60 s) would fail every job longer than a minute in the driver.
    config = _config(tmp_path, f"beam.extra_args={PORTABLE}")
    wait = f"--job_server_timeout={JOB_SERVER_TIMEOUT_S}"
    for args in (beam_pipeline_args(config), job_args(config)):
        assert args[-3:] == ["--runner=PortableRunner", "--job_endpoint=localhost:8099", wait]
    assert job_args(config)[0] == "--direct_running_mode=in_memory"
    own = _config(tmp_path, 'beam.extra_args=["--runner=FlinkRunner", "--job_server_timeout=5"]')
    assert beam_pipeline_args(own)[-1] == "--job_server_timeout=5"
    assert not any(a.startswith("--job_server") for a in beam_pipeline_args(_config(tmp_path)))
    dataflow = _config(tmp_path, 'beam.extra_args=["--runner=DataflowRunner", "--region=r1"]')
    assert not any(a.startswith("--job_server") for a in job_args(dataflow))


def test_the_banner_names_the_runner_that_runs_the_jobs(tmp_path):
    assert runner_name(_config(tmp_path)) == "auto"
    assert runner_name(_config(tmp_path, f"beam.extra_args={PORTABLE}")) == \
        "PortableRunner (localhost:8099)"
    assert runner_name(_config(tmp_path, 'beam.extra_args=["--runner=DataflowRunner", '
                                         '"--region=r1"]')) == "DataflowRunner (r1)"


@pytest.mark.parametrize("args", [
    ["--runner=portable"], ["--runner", "flink"], ["--runner=PrismRunner"],
    ["--runner=apache_beam.runners.portability.portable_runner.PortableRunner"]])
def test_every_spelling_of_a_portable_runner_gets_the_long_wait(args):
    assert with_runner_defaults(args)[-1] == f"--job_server_timeout={JOB_SERVER_TIMEOUT_S}"
    assert with_runner_defaults([*args, "--job-server-timeout=7"])[-1] == \
        "--job-server-timeout=7"


def test_an_unknown_runner_is_bad_input():
    with pytest.raises(BeamArgsError, match="unknown runner 'Flnk'"):
        with_runner_defaults(["--runner=Flnk"])


def test_a_job_service_that_does_not_answer_is_bad_input_before_any_job_is_sent():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BeamArgsError, match=f"no Beam job service answers at "
                                            f"--job_endpoint=127.0.0.1:{port}"):
        check_job_service(["--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{port}"],
                          timeout_s=2)
    check_job_service(["--runner=DataflowRunner", "--job_endpoint=x:1"])  # not a job service
    check_job_service([])


# TFX's Beam executors package TFX into an sdist in a temporary directory they never remove
# (49 MB per Beam component) unless told where dependencies come from. run_local_dag skips it
# where the workers share this installation, and builds it once per process elsewhere.
_POLICY_PROBE = """
import json, os, sys, tempfile
from tfx.components.statistics_gen.executor import Executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tandem.pipeline.beam import install_dependency_policy
install_dependency_policy()
install_dependency_policy()  # idempotent: one wrapper, not two
from tfx.utils import dependency_utils
tmp = tempfile.gettempdir()
build = dependency_utils.build_ephemeral_package
def building():  # another process makes a directory while TFX builds: not TFX's to remove
    os.makedirs(os.path.join(tmp, "someone-else"), exist_ok=True)
    return build()
dependency_utils.build_ephemeral_package = building
before = set(os.listdir(tmp))
seen = {}
for name, args in json.loads(sys.argv[1]).items():
    ctx = BaseBeamExecutor.Context(beam_pipeline_args=args, tmp_dir=tmp, unique_id="probe")
    seen[name] = Executor(ctx)._beam_pipeline_args
new = sorted(set(os.listdir(tmp)) - before - {"someone-else"})
print(json.dumps({"seen": seen, "new": [os.path.join(tmp, n) for n in new]}))
"""


def _probe(tmp_path, cases: dict) -> dict:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _POLICY_PROBE, json.dumps(cases)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_beam_components_on_local_workers_stage_no_tfx_package(tmp_path):
    local = {
        "direct": ["--direct_running_mode=in_memory"],
        "direct_named": ["--runner=DirectRunner", "--direct_num_workers=2"],
        "loopback": ["--runner=PortableRunner", "--job_endpoint=127.0.0.1:1",
                     "--environment_type=LOOPBACK"],
        "external": ["--runner", "flink", "--environment_type=EXTERNAL",
                     "--environment_config=127.0.0.1:2"],
    }
    result = _probe(tmp_path, local)
    for name, args in local.items():
        seen = result["seen"][name]
        assert seen[:len(args)] == args, name
        assert not [a for a in seen if a.startswith("--extra_package")], name
    assert result["new"] == []


@pytest.mark.slow
def test_a_remote_runner_gets_the_tfx_package_built_once_and_removed_at_exit(tmp_path):
    import os

    remote = ["--runner=DataflowRunner", "--region=r1"]
    result = _probe(tmp_path, {"first": remote, "second": remote})
    first, second = ([a for a in result["seen"][k] if a.startswith("--extra_package=")]
                     for k in ("first", "second"))
    assert len(first) == 1 and first[0].endswith(".tar.gz")
    assert second == first  # the same package: built once per process
    assert len(result["new"]) == 1 and first[0].split("=", 1)[1].startswith(result["new"][0])
    assert not os.path.exists(result["new"][0])  # removed when the process ended
    assert (tmp_path / "someone-else").is_dir()  # and nothing else in the temporary folder
