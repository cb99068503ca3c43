"""tandem schemas: the contracts (curated schema.pbtxt per dataset) and the one schema loader."""

from __future__ import annotations

import hashlib
import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from tandem.schemas.files import atomic_write

SCHEMAS_DIR = os.path.dirname(os.path.abspath(__file__))
TRAINING = "TRAINING"
SERVING = "SERVING"


class SchemaError(ValueError):
    """A schema file that is missing or does not parse."""


def curated_schema_path(dataset: str) -> str:
    """Path of the curated schema shipped for a dataset (e.g. 'listening', 'taxi')."""
    return os.path.join(SCHEMAS_DIR, dataset, "schema.pbtxt")


def load_schema(path: str) -> schema_pb2.Schema:
    """Load a Schema text proto; the one loader every stage uses."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise SchemaError(f"cannot read schema {path}: {e.strerror}") from None
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as e:
        raise SchemaError(f"schema {path} does not parse: {e}") from None
    return schema


def schema_text(schema: schema_pb2.Schema) -> str:
    return text_format.MessageToString(schema)


def write_schema(schema: schema_pb2.Schema, path: str) -> None:
    """Write a Schema as text proto, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, schema_text(schema))


def schema_fingerprint(schema: schema_pb2.Schema) -> str:
    """A content fingerprint of a schema (deterministic serialization)."""
    return hashlib.sha256(schema.SerializeToString(deterministic=True)).hexdigest()[:16]
