"""An empty gRPC service for bench/serving.py: one generic unary method that returns its
request bytes. It costs what Python's gRPC stack costs per call and nothing else, so
bench/serving.py can say how much of a Predict's latency is the transport.

    python bench/grpc_echo.py --threads 16     # prints the port it listens on, then serves
"""

from __future__ import annotations

import argparse
import signal
import sys
from concurrent import futures

import grpc

METHOD = "/tandem.bench.Echo/Echo"


class Echo(grpc.GenericRpcHandler):
    def service(self, handler_call_details):
        if handler_call_details.method != METHOD:
            return None
        return grpc.unary_unary_rpc_method_handler(lambda request, context: request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16, help="as the model server's default")
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads))
    server.add_generic_rpc_handlers((Echo(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    sys.exit(0)


if __name__ == "__main__":
    main()
