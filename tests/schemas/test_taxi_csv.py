"""The taxi CSV as `tandem run --config taxi` reads it: TFX's CsvExampleGen (its own column
type inference, empty cells as features with no value) gives examples that pass the curated
schema, and the loop's reader (pipeline/loop_data.py), which feeds the taxi loop's v1
(tests/e2e/test_loop_config.py), gives the same examples."""

import pytest

pytestmark = pytest.mark.slow


def _csv_example_gen(config, out) -> list[bytes]:
    """Every row as CsvExampleGen's Beam transform makes it, run in process."""
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx.components.example_gen.csv_example_gen.executor import _CsvToExample

    with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"])) as p:
        _ = (p | _CsvToExample({"input_base": config.data.location}, config.data.pattern)
             | beam.Map(lambda e: e.SerializeToString(deterministic=True))
             | beam.io.WriteToTFRecord(str(out / "examples")))
    return [r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(str(out / "examples*")))]


def test_the_taxi_csv_passes_its_curated_schema_as_csv_example_gen_reads_it(tmp_path):
    import tensorflow_data_validation as tfdv
    from tensorflow.core.example import example_pb2

    from tandem.pipeline.config import load_config
    from tandem.pipeline.loop_data import read_examples
    from tandem.schemas import load_schema

    config = load_config("taxi")
    schema = load_schema(config.schema)
    records = _csv_example_gen(config, tmp_path)
    import csv
    import glob
    import os

    rows = 0
    for path in glob.glob(os.path.join(config.data.location, config.data.pattern)):
        with open(path, newline="") as f:
            rows += sum(1 for _ in csv.reader(f)) - 1  # less the header
    assert len(records) == rows > 15_000  # every row, none dropped
    examples = [example_pb2.Example.FromString(r) for r in records]
    empty = sum(any(not getattr(f, f.WhichOneof("kind")).value if f.WhichOneof("kind") else True
                    for f in e.features.feature.values()) for e in examples)
    assert empty > len(examples) // 10  # the taxi data really has missing cells

    from apache_beam.options.pipeline_options import PipelineOptions

    from tandem.components.validation_gate import anomaly_rows
    from tandem.pipeline.pipeline import statistics_options

    # As the pipeline's StatisticsGen computes them and its ValidationGate reads the result.
    stats = tfdv.generate_statistics_from_tfrecord(
        str(tmp_path / "examples*"), stats_options=statistics_options(),
        pipeline_options=PipelineOptions(["--direct_running_mode=in_memory"]))
    assert anomaly_rows(tfdv.validate_statistics(stats, schema)) == []

    # The loop's reader: the same examples, types from the schema, empty cells as CsvExampleGen
    # leaves them.
    ours = sorted(e.SerializeToString(deterministic=True) for e in read_examples(config, schema))
    assert ours == sorted(records)
