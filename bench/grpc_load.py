"""Load generator for bench/serving.py: one process, `--threads` clients sending the same
pre-serialized request back to back for `--seconds`; prints its latencies as JSON.

Requests are sent as bytes through a generic unary call, so the client spends no time in
protobuf and the server, not the load generator, is what gets measured. bench/serving.py
runs several of these processes at once (one Python process alone is held back by its GIL).

    python bench/grpc_load.py --port 8500 --method /tensorflow.serving.PredictionService/Predict
        --payload request.bin --threads 8 --seconds 4 [--start_at EPOCH_SECONDS]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--payload", required=True, help="file holding the serialized request")
    parser.add_argument("--start_at", type=float, default=0,
                        help="wall-clock time to start at, so several processes load together")
    args = parser.parse_args()
    with open(args.payload, "rb") as f:
        payload = f.read()
    channel = grpc.insecure_channel(f"127.0.0.1:{args.port}")
    call = channel.unary_unary(args.method)  # bytes in, bytes out
    for _ in range(20):
        call(payload, timeout=30)
    time.sleep(max(0.0, args.start_at - time.time()))
    samples: list[list[float]] = [[] for _ in range(args.threads)]
    errors = [0] * args.threads
    stop_at = time.monotonic() + args.seconds

    def worker(i: int) -> None:
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                call(payload, timeout=30)
            except grpc.RpcError:
                errors[i] += 1
                continue
            samples[i].append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"latencies": [x for s in samples for x in s], "errors": sum(errors),
               "seconds": args.seconds}, sys.stdout)


if __name__ == "__main__":
    main()
