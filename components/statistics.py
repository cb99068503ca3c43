"""Statistics: TFDV statistics over raw input files, outside the pipeline (schema proposals)."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import statistics_pb2


def compute_statistics(
    files_glob: str, data_format: str, pipeline_args: list[str]
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics for CSV or (GZIP) TFRecord tf.Example files, on Beam. TFDV writes
    them to a file first (a temporary directory it leaves behind unless given a path)."""
    import os
    import tempfile

    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    from tandem.components import histograms

    histograms.install()
    options = PipelineOptions(pipeline_args)
    generate = (tfdv.generate_statistics_from_csv if data_format == "csv"
                else tfdv.generate_statistics_from_tfrecord)
    with tempfile.TemporaryDirectory(prefix="tandem-stats-") as work:
        return generate(files_glob, output_path=os.path.join(work, "stats.tfrecord"),
                        pipeline_options=options)
