"""Tests for the gateway's config: bound by the one config binder, then its own rules."""

import pytest

from tandem.serving.gateway.config import GatewayConfigError, load_config
from tandem.serving.gateway.sources import Join


def _config(tmp_path, text: str = "") -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text("primary: {address: 127.0.0.1:8500}\nschema: s.pbtxt\n" + text)
    return str(path)


def test_an_unknown_key_is_named_in_the_one_format(tmp_path):
    with pytest.raises(GatewayConfigError) as error:
        load_config(_config(tmp_path), ["primary.timout_s=3"])
    assert str(error.value) == ("unknown key 'primary.timout_s' in gateway config; known: "
                                "address, model_name, timeout_s, version_label")


def test_joins_are_typed_and_their_own_rules_still_apply(tmp_path):
    text = "decorate:\n  sqlite: f.db\n  joins: [{key: user_id, table: users, columns: [age]}]\n"
    config = load_config(_config(tmp_path, text))
    assert config.join_list() == [Join("user_id", "users", ("age",))]
    with pytest.raises(GatewayConfigError, match="^missing required key "
                                                 "'decorate.joins.0.table' in gateway config$"
                       .replace(".0.", r"\[0\]\.")):
        load_config(_config(tmp_path), ["decorate.joins=[{key: user_id, columns: [age]}]"])
    with pytest.raises(GatewayConfigError, match="^key 'validate.features.age' in gateway "
                                                 "config: expected one of flag, reject, got 'drop'$"):
        load_config(_config(tmp_path), ["validate.features={age: drop}"])
    with pytest.raises(GatewayConfigError, match="key 'decorate.joins' in gateway config needs a source"):
        load_config(_config(tmp_path), ["decorate.joins=[{key: k, table: t, columns: [c]}]"])


def test_empty_values_keep_the_defaults(tmp_path):
    config = load_config(_config(tmp_path, "shadow:\nlog:\n  dir:\n  id_feature:\n"))
    assert config.shadow.sample_percent == 100.0
    assert (config.log.dir, config.log.id_feature) == ("", "")
