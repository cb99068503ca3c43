"""Statistics: TFDV statistics over raw input files, outside the pipeline (schema proposals)."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import statistics_pb2


def compute_statistics(
    files_glob: str, data_format: str, pipeline_args: list[str]
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics for CSV or (GZIP) TFRecord tf.Example files, on Beam."""
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(pipeline_args)
    if data_format == "csv":
        return tfdv.generate_statistics_from_csv(files_glob, pipeline_options=options)
    return tfdv.generate_statistics_from_tfrecord(files_glob, pipeline_options=options)
