"""`tandem compile`: the training, monitoring and promotion DAGs as Kubeflow Pipelines specs,
one subcommand each."""

from __future__ import annotations

import argparse

from tandem.pipeline.cli.flags import (
    add_beam_args,
    add_config,
    add_group,
    add_replay_config,
    add_set,
)
from tandem.pipeline.cli.shadow import add_candidate_features, replay_config_dict, source_check


def _print_summary(summary: dict) -> int:
    print(f"wrote Kubeflow pipeline spec {summary['path']} (image {summary['image']})")
    print("components: " + ", ".join(summary["components"]))
    print("module code the image must contain (installed with tandem):")
    for component, module in summary["modules"].items():
        print(f"  {component:<18} {module}")
    return 0


def cmd_compile_training(args: argparse.Namespace) -> int:
    from tandem.pipeline.config import load_config
    from tandem.pipeline.kubeflow import compile_kubeflow

    config = load_config(args.config, args.set)
    return _print_summary(compile_kubeflow(
        config, args.kubeflow, image=args.image, pipeline_root=args.pipeline_root,
        schema_uri=args.schema_uri))


def cmd_compile_monitoring(args: argparse.Namespace) -> int:
    from tandem.pipeline.config import load_config
    from tandem.pipeline.monitoring import compile_monitoring_kubeflow

    config = load_config(args.config, args.set)
    return _print_summary(compile_monitoring_kubeflow(
        args.kubeflow, config, args.logs, args.schema_uri or config.schema,
        args.pipeline_root, args.image, args.training_statistics))


def cmd_compile_promotion(args: argparse.Namespace) -> int:
    from tandem.pipeline.beam import with_runner_defaults
    from tandem.pipeline.promotion import compile_promotion_kubeflow

    return _print_summary(compile_promotion_kubeflow(
        args.kubeflow, args.baseline, args.candidate, args.logs, args.pipeline_root,
        args.image, replay_config_dict(args.replay_config, []),
        with_runner_defaults(args.beam_args), source=source_check(args, check=False)))


def _add_target(parser: argparse.ArgumentParser, root_required: bool) -> None:
    """Where the spec is written and what the cluster runs it with: every pipeline's flags."""
    parser.add_argument("--kubeflow", required=True, metavar="OUT.json",
                        help="the spec to write (a file)")
    parser.add_argument("--image", default="tandem-pipeline:latest",
                        help="container image with tandem installed (deploy/pipeline.Dockerfile)")
    parser.add_argument("--pipeline-root", required=root_required, default=None,
                        help="where artifacts go on the cluster, e.g. gs://bucket/tandem")


def _add_schema_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schema-uri", default=None,
                        help="curated schema path as the cluster sees it (default: config's)")


def register(sub) -> None:
    comp_sub = add_group(sub, "compile", "compile the pipelines for Kubeflow Pipelines",
                         metavar="PIPELINE")

    training = comp_sub.add_parser(
        "training", help="the training pipeline: data -> validation -> Trainer -> Pusher")
    _add_target(training, root_required=False)
    add_config(training)
    _add_schema_uri(training)
    add_set(training)
    training.set_defaults(func=cmd_compile_training)

    monitoring = comp_sub.add_parser(
        "monitoring", help="the monitoring pipeline: request logs -> TrafficMonitor")
    _add_target(monitoring, root_required=True)
    add_config(monitoring)
    monitoring.add_argument("--logs", required=True, help="request-log directory URI")
    monitoring.add_argument("--training-statistics", default=None,
                            help="the training ExampleStatistics artifact's URI")
    _add_schema_uri(monitoring)
    add_set(monitoring)
    monitoring.set_defaults(func=cmd_compile_monitoring)

    promotion = comp_sub.add_parser(
        "promotion", help="the promotion pipeline: request logs + baseline + candidate -> "
                          "ShadowValidator")
    _add_target(promotion, root_required=True)
    promotion.add_argument("--baseline", required=True, help="model A's URI")
    promotion.add_argument("--candidate", required=True, help="model B's URI")
    promotion.add_argument("--logs", required=True, help="request-log directory URI")
    add_replay_config(promotion)
    add_candidate_features(promotion)
    add_beam_args(promotion, "default: DirectRunner in the container")
    promotion.set_defaults(func=cmd_compile_promotion)
