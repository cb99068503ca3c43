"""The one way to reach the ML Metadata store: a local SQLite file.

It lives on the components floor so both the components (the monitor reads its training
lineage) and pipeline (runs, scores, promotion) can use it; schemas stays free of TFX.
"""

from __future__ import annotations


def connection_config(path: str, *, read_only: bool = False):
    """The ConnectionConfig of the SQLite store at `path`.

    Read-write (the default) is TFX's `sqlite_metadata_connection_config`: it creates the
    file's folder and opens or creates the database. Read-only opens an existing database
    and creates nothing.
    """
    if not read_only:
        from tfx.orchestration import metadata

        return metadata.sqlite_metadata_connection_config(path)
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return config


def open_store(path: str, *, read_only: bool = False):
    """An ml_metadata MetadataStore on the SQLite file at `path` (see connection_config)."""
    from ml_metadata.metadata_store import metadata_store

    return metadata_store.MetadataStore(connection_config(path, read_only=read_only))
