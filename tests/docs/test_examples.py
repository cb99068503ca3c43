"""The example configs the docs point at load with tandem's own loaders, and the ones called
complete set every key there is, so a key added to a config class shows up here first."""

import dataclasses
import os

import yaml

from tests.conftest import ROOT


def _sections(cls) -> dict[str, type]:
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if dataclasses.is_dataclass(hints[f.name])}


def _every_key_set(cls, raw: dict) -> list[str]:
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw]
    for name, section in _sections(cls).items():
        missing += [f"{name}.{f.name}" for f in dataclasses.fields(section)
                    if f.name not in (raw.get(name) or {})]
    return missing


def test_the_complete_gateway_example_loads_and_sets_every_key():
    from tandem.serving.gateway.config import GatewayConfig, load_config

    path = os.path.join(ROOT, "deploy", "gateway", "listening.yaml")
    load_config(path)
    with open(path) as f:
        assert _every_key_set(GatewayConfig, yaml.safe_load(f)) == []


def test_the_replay_example_loads_and_sets_every_key():
    from tandem.components.shadow.replay import ReplayConfig, load_replay_config

    path = os.path.join(ROOT, "deploy", "local", "replay.yaml")
    config = load_replay_config(path)
    assert config.slices == [["device"], ["country"]]
    with open(path) as f:
        assert _every_key_set(ReplayConfig, yaml.safe_load(f)) == []


def test_the_local_models_config_parses_and_points_inside_the_repository():
    """Relative base paths under outputs/ (git-ignored): the models `tandem run` pushes."""
    from tandem.pipeline.config import load_config
    from tandem.serving.model_server.model_config import read_config

    config = read_config(os.path.join(ROOT, "deploy", "local", "models.config"))
    models = {m.name: m.base_path for m in config.model_config_list.config}
    assert set(models) == {"listening", "taxi"}
    for name, base_path in models.items():
        assert not os.path.isabs(base_path)
        pushed = load_config(name, [f"output_dir={os.path.join(ROOT, 'outputs', name)}"])
        assert os.path.join(ROOT, base_path) == pushed.push_dir
