"""`tandem traffic`: requests sent to a gateway or a model server, at a rate, as a client would."""

from __future__ import annotations

import argparse

from tandem.pipeline.cli.flags import add_group
from tandem.schemas import exit_status


def _traffic_drifts() -> list[str]:
    from tandem.serving.traffic import DRIFTS

    return list(DRIFTS)


def cmd_traffic_send(args: argparse.Namespace) -> int:
    from tandem.serving.traffic import send

    pace = f"{args.rate:g} requests/s" if args.rate else "as fast as answers come"
    print(f"traffic: sending {args.examples} to {args.to}, {pace}", flush=True)
    result = send(args.to, args.examples, args.model, rate=args.rate, batch=args.batch,
                  limit=args.limit, drift=args.drift,
                  progress=lambda line: print(line, flush=True))
    errors = ", ".join(f"{k} {v}" for k, v in sorted(result.errors.items())) or "none"
    print(f"sent {result.sent:,} requests in {result.seconds:.1f}s "
          f"({result.sent / max(result.seconds, 1e-9):.0f}/s): {result.ok:,} answered, "
          f"errors: {errors}")
    return exit_status.OK if not result.errors else exit_status.CHECK_FAILED


def register(sub) -> None:
    traffic_sub = add_group(sub, "traffic", "send requests to a gateway or a model server")
    ts = traffic_sub.add_parser("send", help="send tf.Examples as Predict requests at a rate")
    ts.add_argument("--to", required=True, metavar="HOST:PORT", help="gRPC address")
    ts.add_argument("--examples", required=True, metavar="GLOB",
                    help="TFRecord files of tf.Examples (e.g. from data generate --requests)")
    ts.add_argument("--model", default="listening", help="model name in the requests")
    ts.add_argument("--rate", type=float, default=100.0,
                    help="requests per second (0: as fast as answers come; default 100)")
    ts.add_argument("--batch", type=int, default=1, help="examples per request (default 1)")
    ts.add_argument("--limit", type=int, default=None, help="send at most N examples")
    ts.add_argument("--drift", default=None,
                    help="client-side drift: " + ", ".join(sorted(_traffic_drifts())))
    ts.set_defaults(func=cmd_traffic_send)
