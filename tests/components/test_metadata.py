"""The one way to open the ML Metadata store: read-write creates it, read-only creates nothing."""

import os

import pytest
from ml_metadata.proto import metadata_store_pb2

from tandem.components.metadata import connection_config, open_store


def test_read_write_is_tfx_config_and_creates_the_store(tmp_path):
    path = str(tmp_path / "new" / "metadata.sqlite")
    config = connection_config(path)
    assert config.sqlite.filename_uri == path
    assert config.sqlite.connection_mode == \
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = open_store(path)
    assert store.get_artifacts() == []
    assert os.path.isfile(path)


def test_read_only_reads_an_existing_store_and_creates_none(tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    assert connection_config(path, read_only=True).sqlite.connection_mode == \
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    with pytest.raises(Exception):  # noqa: B017 - ml_metadata's own error type
        open_store(path, read_only=True)
    assert not os.path.exists(path)
    open_store(path)  # created read-write, then readable read-only
    assert open_store(path, read_only=True).get_artifacts() == []
