"""Pipeline runtime: the one place that turns config into Beam pipeline args."""

from __future__ import annotations

from pipeline.config import PipelineConfig


def beam_pipeline_args(config: PipelineConfig) -> list[str]:
    """Beam args for every Beam-running component and job (DirectRunner by default;
    `beam.extra_args` carries --runner=DataflowRunner / FlinkRunner settings at scale)."""
    args = [
        f"--direct_num_workers={config.beam.direct_num_workers}",
        f"--direct_running_mode={config.beam.direct_running_mode}",
    ]
    return args + list(config.beam.extra_args)
