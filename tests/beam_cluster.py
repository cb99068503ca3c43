"""A Beam cluster on this machine, as the portable-runner tests use it: Beam's own job service
(`local_job_service_main`) and an external worker pool whose SDK workers are separate
processes, as a Flink or Spark cluster runs them. Every gRPC server it opens, Beam's included,
listens on 127.0.0.1 only.

    python -m tests.beam_cluster JOB_PORT WORKER_PORT

Jobs then run with `--runner=PortableRunner --job_endpoint=localhost:JOB_PORT
--environment_type=EXTERNAL --environment_config=127.0.0.1:WORKER_PORT`. The pool starts each
worker as `python` from PATH (Beam's choice), so this process puts its own interpreter's
directory first on PATH: a worker from another environment would never connect, and every job
would wait until its deadline.
"""

from __future__ import annotations

import logging
import os
import sys
import threading


def _loopback_only() -> None:
    """Beam binds its servers to '[::]' (all interfaces); bind them to 127.0.0.1 instead."""
    import grpc._server

    bind = grpc._server._Server.add_insecure_port

    def add_insecure_port(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", "", "localhost"):
            address = f"127.0.0.1:{port}"
        return bind(self, address)

    grpc._server._Server.add_insecure_port = add_insecure_port


class CountingPool:
    """Beam's external worker pool, printing one line per worker it starts (the tests count
    them: a job that ran its DoFns in the driver would start none)."""

    @staticmethod
    def start(port: int):
        from apache_beam.runners.worker import worker_pool_main

        servicer = worker_pool_main.BeamFnExternalWorkerPoolServicer
        start_worker = servicer.StartWorker

        def counted(self, request, context):
            print(f"worker started: {request.worker_id}", flush=True)
            return start_worker(self, request, context)

        servicer.StartWorker = counted
        return servicer.start(use_process=True, port=port, state_cache_size=0,
                              data_buffer_time_limit_ms=-1)


def main() -> None:
    job_port, worker_port = int(sys.argv[1]), int(sys.argv[2])
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(name)s %(message)s")
    _loopback_only()
    from apache_beam.runners.portability import local_job_service

    _, pool = CountingPool.start(worker_port)
    create = local_job_service.LocalJobServicer.create_beam_job

    def announced(self, preparation_id, job_name, pipeline, options):
        """One line per job with its top-level transforms: which of tandem's jobs it is."""
        names = sorted({t.unique_name.split("/")[0]
                        for t in pipeline.components.transforms.values()
                        if t.unique_name and not t.unique_name.startswith("ref_")})
        print(f"job {preparation_id}: {' | '.join(names)}", flush=True)
        return create(self, preparation_id, job_name, pipeline, options)

    local_job_service.LocalJobServicer.create_beam_job = announced
    jobs = local_job_service.LocalJobServicer()
    jobs.start_grpc_server(job_port)
    print(f"job service on 127.0.0.1:{job_port}, worker pool on 127.0.0.1:{worker_port}",
          flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
