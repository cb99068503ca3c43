"""`tandem compile`: the training, monitoring and promotion DAGs as Kubeflow Pipelines specs."""

from __future__ import annotations

import argparse

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_config, add_set
from tandem.pipeline.cli.shadow import replay_config_dict


def cmd_compile(args: argparse.Namespace) -> int:
    from tandem.pipeline.config import load_config
    from tandem.pipeline.kubeflow import compile_kubeflow

    if args.monitoring:
        from tandem.pipeline.monitoring import compile_monitoring_kubeflow

        missing = [f"--{n}" for n in ("config", "logs", "pipeline_root") if not getattr(args, n)]
        if missing:
            raise CommandError("--monitoring needs " + ", ".join(m.replace("_", "-")
                                                                 for m in missing))
        config = load_config(args.config, args.set)
        summary = compile_monitoring_kubeflow(
            args.kubeflow, config, args.logs, args.schema_uri or config.schema,
            args.pipeline_root, args.image, args.training_statistics)
    elif args.promotion:
        from tandem.pipeline.promotion import compile_promotion_kubeflow

        missing = [f"--{n}" for n in ("baseline", "candidate", "logs", "pipeline_root")
                   if not getattr(args, n)]
        if missing:
            raise CommandError("--promotion needs " + ", ".join(m.replace("_", "-")
                                                                for m in missing))
        summary = compile_promotion_kubeflow(
            args.kubeflow, args.baseline, args.candidate, args.logs, args.pipeline_root,
            args.image, replay_config_dict(args.replay_config, []))
    else:
        if not args.config:
            raise CommandError("compile needs --config (the training pipeline) or --promotion")
        config = load_config(args.config, args.set)
        summary = compile_kubeflow(
            config, args.kubeflow, image=args.image, pipeline_root=args.pipeline_root,
            schema_uri=args.schema_uri,
        )
    print(f"wrote Kubeflow pipeline spec {summary['path']} (image {summary['image']})")
    print("components: " + ", ".join(summary["components"]))
    print("module code the image must contain (installed with tandem):")
    for component, module in summary["modules"].items():
        print(f"  {component:<18} {module}")
    return 0


def register(sub) -> None:
    comp = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines")
    comp.add_argument("--kubeflow", required=True, metavar="OUT.json", help="output spec path")
    add_config(comp, required=False)
    comp.add_argument("--promotion", action="store_true",
                      help="compile the promotion pipeline (request logs + baseline + candidate "
                           "-> ShadowValidator) instead of the training pipeline")
    comp.add_argument("--monitoring", action="store_true",
                      help="compile the monitoring pipeline (request logs -> TrafficMonitor) "
                           "for --config")
    comp.add_argument("--training-statistics", default=None,
                      help="with --monitoring: the training ExampleStatistics artifact's URI")
    comp.add_argument("--baseline", default=None, help="with --promotion: model A's URI")
    comp.add_argument("--candidate", default=None, help="with --promotion: model B's URI")
    comp.add_argument("--logs", default=None,
                      help="with --promotion or --monitoring: request-log directory URI")
    comp.add_argument("--replay-config", default=None,
                      help="with --promotion: replay YAML (thresholds, slices)")
    comp.add_argument("--image", default="tandem-pipeline:latest",
                      help="container image with tandem installed (deploy/pipeline.Dockerfile)")
    comp.add_argument("--pipeline-root", default=None,
                      help="where artifacts go on the cluster, e.g. gs://bucket/tandem")
    comp.add_argument("--schema-uri", default=None,
                      help="curated schema path as the cluster sees it (default: config's)")
    add_set(comp)
    comp.set_defaults(func=cmd_compile)
