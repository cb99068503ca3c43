"""Pipeline input checks: clear errors for bad input before any Beam job starts."""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import glob
import gzip
import math
import os
import re

from tandem.pipeline.config import PipelineConfig
from tandem.schemas import SchemaError, load_schema
from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import gzip_by_name, tfrecord_compression

# TFRecord inputs are checked on their first rows; the schema's label domain checks the rest.
TFRECORD_SAMPLE_ROWS = 50_000


class InputError(BadInputError):
    """Input the pipeline cannot run on; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class InputSummary:
    span: int | None
    files: list[str]
    glob: str
    rows_checked: int
    label_values: list[str]  # distinct label values seen (at most a few, for display)


def _pattern_regex(pattern: str) -> re.Pattern:
    marker = "SPANMARKER"
    regex = fnmatch.translate(pattern.replace("{SPAN}", marker).replace("{VERSION}", "*"))
    return re.compile(regex.replace(marker, r"(?P<span>\d+)"))


def resolve_input_files(config: PipelineConfig) -> tuple[int | None, list[str], str]:
    """The files ExampleGen will read: with {SPAN} in the pattern, those of the latest span.
    Returns (span, files, a glob matching exactly that span's files)."""
    location, pattern = config.data.location, config.data.pattern
    full_glob = os.path.join(location, pattern.replace("{VERSION}", "*"))
    if "://" in location:
        return None, [], full_glob  # remote storage: ExampleGen reports problems itself
    if os.path.isfile(location):
        raise InputError(
            f"data location {location} is a file; data.location wants the directory that holds "
            f"the data, and data.pattern the files in it (here: data.location="
            f"{os.path.dirname(location)} data.pattern={os.path.basename(location)})"
        )
    if not os.path.isdir(location):
        raise InputError(f"data location {location} does not exist (data.location)")
    glob_pattern = pattern.replace("{SPAN}", "*").replace("{VERSION}", "*")
    found = sorted(
        p for p in glob.glob(os.path.join(location, glob_pattern)) if os.path.isfile(p)
    )
    if not found:
        raise InputError(f"no input files match {pattern!r} under {location} (data.pattern)")
    if "{SPAN}" not in pattern:
        return None, found, full_glob
    regex = _pattern_regex(pattern)
    spans: dict[int, tuple[str, list[str]]] = {}
    for path in found:
        m = regex.match(os.path.relpath(path, location))
        if m:
            spans.setdefault(int(m.group("span")), (m.group("span"), []))[1].append(path)
    if not spans:
        raise InputError(f"no input files match {pattern!r} under {location} (data.pattern)")
    latest = max(spans)
    text, files = spans[latest]
    return latest, files, full_glob.replace("{SPAN}", text)


def _csv_labels(files: list[str], label: str) -> tuple[list[str], int]:
    values: list[str] = []
    for path in files:
        try:
            _csv_file_labels(path, label, values)
        except UnicodeDecodeError:
            line, byte = _first_undecodable(path)
            raise InputError(
                f"CSV file {path} is not UTF-8 text: byte 0x{byte:02x} on line {line} cannot be "
                "decoded; re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)"
            ) from None
    return values, len(values)


def _first_undecodable(path: str) -> tuple[int, int]:
    """(1-based line, byte value) of the first byte that is not UTF-8 in a file."""
    opener = gzip.open if gzip_by_name(path) else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return number, line[e.start]
    return 0, 0


def _csv_file_labels(path: str, label: str, values: list[str]) -> None:
    opener = gzip.open if gzip_by_name(path) else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        if label not in header:
            raise InputError(
                f"CSV file {path} has no label column '{label}' (columns: {', '.join(header)})"
            )
        index = header.index(label)
        for row in reader:
            if row:
                values.append(row[index] if index < len(row) else "")


def _tfrecord_labels(files: list[str], label: str) -> tuple[list, int]:
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    values: list = []
    rows = 0
    for path in files:
        compression = tfrecord_compression(path)
        try:
            for record in tf.data.TFRecordDataset(path, compression_type=compression):
                example = example_pb2.Example.FromString(record.numpy())
                feature = example.features.feature.get(label)
                kind = feature.WhichOneof("kind") if feature is not None else None
                got = list(getattr(feature, kind).value) if kind else []
                values.append(got[0] if len(got) == 1 else (None if not got else got))
                rows += 1
                if rows >= TFRECORD_SAMPLE_ROWS:
                    return values, rows
        except tf.errors.DataLossError as e:
            raise InputError(f"{path} is not a readable TFRecord file: {e.message}") from None
        except Exception as e:  # a record that is not a tf.Example
            if "DecodeError" in type(e).__name__:
                raise InputError(f"{path} holds a record that is not a tf.Example") from None
            raise
    return values, rows


def _number(value) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_label(values: list, label: str, problem_type: str) -> list[str]:
    """Check label values fit the problem type; returns the distinct values (as text)."""
    missing = sum(1 for v in values if v is None or v == "" or isinstance(v, list))
    if missing:
        raise InputError(
            f"label '{label}' is missing or not single-valued in {missing} of {len(values)} "
            "rows checked"
        )
    distinct = sorted({v.decode() if isinstance(v, bytes) else str(v) for v in values})
    shown = ", ".join(distinct[:5]) + (", ..." if len(distinct) > 5 else "")
    numbers = [_number(v) for v in values]
    if problem_type == "regression":
        bad = [v for v, n in zip(values, numbers, strict=False) if n is None or math.isnan(n)]
        if bad:
            raise InputError(
                f"label '{label}' must be numeric for regression; "
                f"found non-numeric value {bad[0]!r}"
            )
        if len(distinct) < 2:
            raise InputError(f"label '{label}' is constant ({shown}); nothing to learn")
        return [f"{min(numbers):g} to {max(numbers):g}"]
    if len(distinct) < 2:
        raise InputError(
            f"label '{label}' has one value ({shown}) but {problem_type} needs two or more classes"
        )
    if all(n is not None for n in numbers) and any(n != int(n) for n in numbers):
        raise InputError(
            f"label '{label}' has fractional values ({shown}); {problem_type} needs class "
            "ids or names (use problem_type: regression for a numeric target)"
        )
    if problem_type == "multiclass_classification" and all(n is not None for n in numbers):
        negative = min(numbers)
        if negative < 0:
            raise InputError(
                f"label '{label}' has negative class id {negative:g}; integer classes must be "
                "0, 1, 2, ... (scores[:, k] is class k), or use string class names"
            )
    if problem_type == "binary_classification":
        if len(distinct) != 2:
            raise InputError(
                f"label '{label}' has {len(distinct)} distinct values ({shown}) but "
                "binary_classification needs exactly two"
            )
        if all(n is not None for n in numbers) and set(numbers) != {0.0, 1.0}:
            raise InputError(
                f"label '{label}' has values ({shown}); binary_classification needs 0 and 1"
            )
    return distinct[:5]


def _check_request_log(config: PipelineConfig) -> InputSummary:
    """format request_log: log files exist and the labels file reads, with fitting labels.
    The labels are read as the kind the schema gives the label; before there is a schema
    (`schema propose`), as numbers for regression and as text (class ids or names) else."""
    from tandem.schemas.labels import BYTES, FLOAT, LabelsError, label_kind, read_labels
    from tandem.schemas.request_log import LogError, expand

    try:
        files = expand(config.data.location)
    except LogError as e:
        raise InputError(f"{e} (data.location)") from None
    kind = FLOAT if config.problem_type == "regression" else BYTES
    if os.path.isfile(config.schema):
        try:
            kind = label_kind(load_schema(config.schema), config.label)
        except (SchemaError, LabelsError):
            pass  # check_inputs names a schema that does not parse or lacks the label
    try:
        labels = read_labels(config.data.labels, kind=kind)
    except LabelsError as e:
        raise InputError(f"{e} (data.labels)") from None
    if not labels:
        raise InputError(f"labels file {config.data.labels} holds no labels (data.labels)")
    values = [v.value for v in labels.values()]
    shown = [v if isinstance(v, str) else str(int(v)) if float(v).is_integer() else str(v)
             for v in values]
    distinct = check_label(shown, config.label, config.problem_type)
    return InputSummary(None, files, config.data.location, rows_checked=len(values),
                        label_values=distinct)


def check_data(config: PipelineConfig) -> InputSummary:
    """The input files and their label, without the schema (which `schema propose` is about
    to write). Raises InputError."""
    if config.data.format == "request_log":
        return _check_request_log(config)
    span, files, files_glob = resolve_input_files(config)
    if not files:
        return InputSummary(span, [], files_glob, rows_checked=0, label_values=[])
    empty = [p for p in files if os.path.getsize(p) == 0]
    if len(empty) == len(files):
        raise InputError(f"input is empty: every input file has 0 bytes ({files[0]}, ...)")
    if config.data.format == "csv":
        values, rows = _csv_labels(files, config.label)
    else:
        values, rows = _tfrecord_labels(files, config.label)
    where = f"span {span}" if span is not None else config.data.location
    if rows == 0:
        raise InputError(f"input is empty: no rows in {where} ({len(files)} file(s))")
    distinct = check_label(values, config.label, config.problem_type)
    return InputSummary(span, files, files_glob, rows_checked=rows, label_values=distinct)


def check_inputs(config: PipelineConfig) -> InputSummary:
    """Everything that can be checked cheaply before Beam starts. Raises InputError."""
    if not os.path.isfile(config.schema):
        raise InputError(f"schema file {config.schema} does not exist (schema); propose one "
                         f"with: tandem schema propose --config {config.source or config.name} "
                         f"--out {config.schema}")
    try:
        schema = load_schema(config.schema)
    except SchemaError as e:
        raise InputError(str(e)) from None
    if config.label not in {f.name for f in schema.feature}:
        raise InputError(f"label '{config.label}' is not a feature of schema {config.schema}")
    summary = check_data(config)
    if "://" not in config.output_dir:
        try:
            os.makedirs(config.output_dir, exist_ok=True)
        except OSError as e:
            raise InputError(
                f"output directory {config.output_dir} cannot be created: {e.strerror} (output_dir)"
            ) from None
    return summary
