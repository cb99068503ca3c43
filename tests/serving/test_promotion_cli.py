"""`tandem promote` and `tandem rollback` as an operator runs them, against real embedded model
servers on 127.0.0.1: one server through its reload RPC (`--server`), and replicas polling a
config file that `--apply` publishes, waited for up to `--timeout`."""

import time

import pytest

from tandem.serving.model_server.model_config import read_config
from tests.conftest import tandem

from .conftest import make_model
from .test_server import Clients, _config_file


def _cli(capsys, *args):
    """The same command in process (for the refusals, which need no second interpreter)."""
    from tandem.pipeline import cli

    code = cli.main(list(args))
    return code, capsys.readouterr()


def _labels(path) -> dict[str, int]:
    return dict(read_config(str(path)).model_config_list.config[0].version_labels)


@pytest.mark.slow
def test_promote_and_rollback_through_one_servers_reload_rpc(model_base, start_server,
                                                             tmp_path, capsys):
    for version in (2, 3):
        make_model(str(model_base), version, bias=float(version))
    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    server = start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True)
    clients = Clients(server)
    common = ["--model", "scorer", "--model_config_file", str(path), "--server",
              f"127.0.0.1:{server.grpc_port}"]

    def serving(label):
        return clients.predict([0.5], label=label).model_spec.version.value

    canary = tandem("promote", *common, "--model-version", "2", "--label", "canary", timeout=120)
    assert canary.returncode == 0, canary.stderr
    assert canary.stdout.splitlines() == ["loaded version 2", "label 'canary': - -> 2",
                                          f"saved {path}"]
    assert (serving("canary"), serving("stable")) == (2, 1)
    stable = tandem("promote", *common, "--model-version", "3", "--label", "stable", timeout=120)
    assert stable.returncode == 0, stable.stderr
    assert "label 'stable': 1 -> 3" in stable.stdout and "unloaded version(s) 1" in stable.stdout
    assert serving("stable") == 3 and _labels(path) == {"canary": 2, "stable": 3}

    back = tandem("rollback", *common, timeout=120)  # to the previous stable, from the history
    assert back.returncode == 0, back.stderr
    assert "label 'stable': 3 -> 1" in back.stdout and serving("stable") == 1
    again = tandem("rollback", *common, "--model-version", "3", timeout=120)
    assert again.returncode == 0, again.stderr
    assert serving("stable") == 3
    rejected = tandem("rollback", *common, "--label", "canary", timeout=120)
    assert rejected.returncode == 0, rejected.stderr
    assert "label 'canary': 2 -> 3" in rejected.stdout
    assert "unloaded version(s) 2" in rejected.stdout
    assert serving("canary") == 3 and _labels(path) == {"canary": 3, "stable": 3}

    # Refusals: one line, exit 2, the file and the server as they were.
    before = path.read_text()
    for args, message in (
            (["promote", *common, "--model-version", "99", "--label", "stable"],
             "version 99 of 'scorer' does not exist"),
            (["promote", "--model", "other", "--model_config_file", str(path), "--model-version", "2", "--label",
              "stable"], "model 'other' is not in"),
            (["rollback", *common, "--model-version", "3"], "stable already points at version 3"),
            (["rollback", *common, "--label", "canary"], "canary already points at version 3"),
            (["promote", *common, "--model-version", "2", "--label", "stable", "--apply", "true"],
             "--apply needs --replicas"),
            (["rollback", *common[:4], "--server", "127.0.0.1:1", "--model-version", "2"],
             "model server 127.0.0.1:1 is not reachable"),
            (["promote", *common, "--model_config_file", str(tmp_path / "none.config"),
              "--model-version", "2",
              "--label", "stable"], "cannot read model config file")):
        code, out = _cli(capsys, *args)
        assert code == 2, (args, out)
        assert message in out.err and out.err.count("\n") == 1, (args, out.err)
    assert path.read_text() == before and serving("stable") == 3
    bad_label = tandem("promote", *common, "--model-version", "2", "--label", "gold", timeout=120)
    assert bad_label.returncode == 2 and "invalid choice: 'gold'" in bad_label.stderr


@pytest.mark.slow
def test_promote_and_rollback_across_replicas_with_apply_and_timeout(model_base, start_server,
                                                                     tmp_path, capsys):
    make_model(str(model_base), 2, bias=1.0)
    served = _config_file(tmp_path, model_base, [1], {"stable": 1})  # what the replicas poll
    local = tmp_path / "local.config"  # the operator's copy, published by --apply
    local.write_text(served.read_text())
    replicas = [Clients(start_server(model_config_file=str(served),
                                     model_config_file_poll_wait_seconds=0.2,
                                     allow_version_labels_for_unavailable_models=True))
                for _ in range(2)]
    addresses = ",".join(f"127.0.0.1:{r.server.grpc_port}" for r in replicas)
    common = ["--model", "scorer", "--model_config_file", str(local), "--replicas", addresses,
              "--apply", f"cp {{}} {served}", "--timeout", "30"]

    done = tandem("promote", *common, "--model-version", "2", "--label", "stable", timeout=180)
    assert done.returncode == 0, done.stderr
    assert "label 'stable': 1 -> 2 on 2 replica(s)" in done.stdout
    assert [r.predict([0.5], label="stable").model_spec.version.value for r in replicas] \
        == [2, 2]
    assert served.read_text() == local.read_text()  # --apply published every step

    # --timeout: a replica that never sees the file fails the step once it has passed.
    lone = Clients(start_server(model_name="scorer", model_base_path=str(model_base)))
    waited = [*common[:4], "--replicas", f"{addresses},127.0.0.1:{lone.server.grpc_port}",
              "--apply", f"cp {{}} {served}", "--timeout", "2"]
    start = time.monotonic()
    code, out = _cli(capsys, "rollback", *waited)
    took = time.monotonic() - start
    assert code == 2, out
    assert f"not seen on 127.0.0.1:{lone.server.grpc_port} within 2s" in out.err
    assert 2 <= took < 20, took

    # --apply failing stops the promotion with its status, before any replica moves.
    code, out = _cli(capsys, "rollback", *common[:6], "--apply", "echo no cluster >&2; exit 3")
    assert code == 2 and "--apply command failed with status 3: no cluster" in out.err, out
    for bad, message in (("0", "--timeout must be positive"),
                         ("soon", "invalid float value: 'soon'")):
        bad_timeout = tandem("rollback", *common[:-1], bad, timeout=120)
        assert bad_timeout.returncode == 2 and message in bad_timeout.stderr, bad_timeout.stderr

    back = tandem("rollback", *common, timeout=180)
    assert back.returncode == 0, back.stderr
    assert [r.predict([0.5], label="stable").model_spec.version.value for r in replicas] \
        == [1, 1]
