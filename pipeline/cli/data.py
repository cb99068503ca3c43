"""`tandem data`: the first stage of the flow, synthetic listening sessions to train and serve on."""

from __future__ import annotations

import argparse
import os
import time

from tandem.pipeline.cli.flags import add_group


def _progress_printer(label: str):
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 2.0:
            last[0] = now
            print(f"{label}: {done:,}/{total:,} rows ({100 * done / total:.0f}%)", flush=True)

    return report


def cmd_data_generate(args: argparse.Namespace) -> int:
    from tandem.pipeline.datasets import listening

    drift = listening.parse_drift(args.drift)
    formats = ("tfrecord", "csv") if args.format == "both" else (args.format,)
    start = time.monotonic()
    manifest = listening.generate(
        args.out, args.rows, seed=args.seed, drift=drift, span=args.span, formats=formats,
        progress=_progress_printer("generate"), requests=args.requests, labels=args.label_format,
        label_delay_s=args.label_delay, label_loss=args.label_loss, rate=args.rate,
    )
    if "labels" in manifest:
        lab = manifest["labels"]
        print(f"wrote {lab['written']:,} labels to "
              f"{os.path.join(args.out, f'span-{args.span}', lab['file'])} (mean delay "
              f"{lab['delay_s']:g}s, {lab['loss']:.0%} lost)")
    what = "requests (undecorated, no label)" if manifest.get("requests_only") else "rows"
    print(
        f"wrote {manifest['rows']:,} {what} (skip rate {manifest['skip_rate']:.1%}"
        f"{', drift: ' + ', '.join(manifest['drift']) if manifest['drift'] else ''}) to "
        f"{os.path.join(args.out, f'span-{args.span}')} and feature sources to "
        f"{manifest['feature_sources']} in {time.monotonic() - start:.1f}s"
    )
    return 0


def cmd_data_profiles(args: argparse.Namespace) -> int:
    from tandem.pipeline.datasets import listening

    for name, text in sorted(listening.DRIFT_PROFILES.items()):
        print(f"{name:<18} {text}")
    return 0


def register(sub) -> None:
    data_sub = add_group(sub, "data", "generate synthetic listening sessions")
    gen = data_sub.add_parser("generate", help="write synthetic listening sessions")
    gen.add_argument("--rows", type=int, required=True, help="number of examples")
    gen.add_argument("--out", required=True, metavar="DIR",
                     help="output directory (span-N/ is made inside)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--span", type=int, default=1, help="span number to write (default 1)")
    gen.add_argument(
        "--drift", default=None,
        help="comma-separated drift profiles (see `tandem data profiles`)",
    )
    gen.add_argument(
        "--format", choices=("tfrecord", "csv", "both"), default="tfrecord",
        help="GZIP TFRecord tf.Examples (default), CSV, or both",
    )
    gen.add_argument("--requests", action="store_true",
                     help="write what a client sends: keys and request-time features only")
    gen.add_argument("--label-format", choices=("csv", "tfrecord"), default=None,
                     help="also write the requests' late labels (request_id,label,timestamp) "
                          "in this format")
    gen.add_argument("--label-delay", type=float, default=3600.0, metavar="SECONDS",
                     help="mean delay before a label arrives (default 3600)")
    gen.add_argument("--label-loss", type=float, default=0.0, metavar="SHARE",
                     help="share of labels that never arrive (default 0)")
    gen.add_argument("--rate", type=float, default=100.0,
                     help="requests per second assumed for the labels' timestamps")
    gen.set_defaults(func=cmd_data_generate)
    profiles = data_sub.add_parser("profiles", help="list the drift profiles")
    profiles.set_defaults(func=cmd_data_profiles)
