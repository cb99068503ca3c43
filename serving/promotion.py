"""Operator commands: promote a version to a label and roll back, with TF Serving's safe
two-step rule, through HandleReloadConfigRequest, persisting the config file atomically.

1. load: the new version joins the `specific` version policy (the labelled versions stay);
2. label: the label moves to the new version (TF Serving only allows labels on loaded versions);
3. drop: versions no label points at leave the policy and are unloaded.

Each move is appended to `<config file>.history.json`, which is how `rollback` knows the
previous good version.

Consistency: a promotion holds an exclusive lock on `<config file>.lock` from reading the file
to writing it, so concurrent promotions run one after the other instead of overwriting each
other's labels. The file is written only after the server took every step, so a server that
dies midway restarts from the file in the state before the promotion (it applies the file on
start), and the failed promotion says so and changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import atomic_write
from tandem.serving.model_server.manager import State, version_dirs
from tandem.serving.model_server.model_config import find_model, read_config, write_config

LABELS = ("canary", "stable")
LOCK_TIMEOUT_SECONDS = 300.0


class PromotionError(BadInputError):
    """A promotion or rollback that could not be carried out; the message says why."""


@contextlib.contextmanager
def config_lock(config_file: str, timeout: float = LOCK_TIMEOUT_SECONDS):
    """Exclusive lock on a server config file for one read-modify-write, across processes."""
    path = config_file + ".lock"
    try:
        handle = open(path, "a")
    except OSError as e:
        raise PromotionError(f"cannot create lock file {path}: {e.strerror}") from None
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PromotionError(
                        f"another promotion or rollback holds {path} (waited {timeout:.0f}s)"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # closing releases the lock


def _history_path(config_file: str) -> str:
    return config_file + ".history.json"


def read_history(config_file: str) -> list[dict]:
    path = _history_path(config_file)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _append_history(config_file: str, entry: dict) -> None:
    history = read_history(config_file) + [entry]
    atomic_write(_history_path(config_file), json.dumps(history, indent=2))


class ServerClient:
    def __init__(self, address: str, timeout: float = 120.0):
        self.address, self.timeout = address, timeout
        self.channel = grpc.insecure_channel(address)
        self.stub = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def reload(self, config: model_server_config_pb2.ModelServerConfig, step: str) -> None:
        try:
            self.stub.HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=config), timeout=self.timeout
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise PromotionError(f"model server {self.address} is not reachable") from None
            raise PromotionError(f"{step}: the server refused the config: {e.details()}") from None

    def version_state(self, model: str, version: int, unknown: int | None = State.END
                      ) -> tuple[int | None, str]:
        """(state, error) of a version; `unknown` is the state reported for a version the
        server does not know yet (NOT_FOUND)."""
        spec = model_pb2.ModelSpec(name=model)
        spec.version.value = version
        try:
            response = self.stub.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec=spec), timeout=self.timeout
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND and unknown is None:
                return None, ""
            return State.END, e.details() or str(e.code())
        status = response.model_version_status[0]
        return status.state, status.status.error_message

    def label_version(self, model: str, label: str) -> int | None:
        """The version `label` points at on this server, or None."""
        spec = model_pb2.ModelSpec(name=model, version_label=label)
        try:
            response = self.stub.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec=spec), timeout=self.timeout
            )
        except grpc.RpcError:
            return None
        return response.model_version_status[0].version

    def close(self) -> None:
        self.channel.close()


def _set_versions(model: model_server_config_pb2.ModelConfig, versions: set[int]) -> None:
    model.model_version_policy.specific.ClearField("versions")
    model.model_version_policy.specific.versions.extend(sorted(versions))


def promote(config_file: str, server: str, model_name: str, version: int, label: str,
            reason: str = "promote") -> list[str]:
    """Point `label` at `version` of `model_name` safely; returns what was done, step by step."""
    with config_lock(config_file):
        return _promote_locked(config_file, server, model_name, version, label, reason)


def _promotable(config_file: str, model_name: str, version: int, label: str):
    """(config, the model's entry in it), once the move is known to be possible."""
    if label not in LABELS:
        raise PromotionError(f"label must be one of {', '.join(LABELS)}; got '{label}'")
    config = read_config(config_file)
    model = find_model(config, model_name)
    if model is None:
        raise PromotionError(f"model '{model_name}' is not in {config_file}")
    if version not in version_dirs(model.base_path):
        raise PromotionError(f"version {version} of '{model_name}' does not exist under {model.base_path}")
    return config, model


def _record(config_file: str, action: str, model: str, label: str, previous: int | None,
            version: int, **extra) -> None:
    _append_history(config_file, {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "action": action,
        "model": model, "label": label, "from": previous, "to": version, **extra,
    })


def _promote_locked(config_file: str, server: str, model_name: str, version: int, label: str,
                    reason: str) -> list[str]:
    config, model = _promotable(config_file, model_name, version, label)
    steps: list[str] = []
    client = ServerClient(server)
    try:
        labelled = set(model.version_labels.values())
        previous = model.version_labels.get(label)
        # 1. Load the new version next to the labelled ones.
        _set_versions(model, labelled | {version})
        client.reload(config, "load")
        state, error = client.version_state(model_name, version)
        if state != State.AVAILABLE:
            _set_versions(model, labelled)
            client.reload(config, "undo load")
            raise PromotionError(f"version {version} did not load: {error or State.Name(state)}")
        steps.append(f"loaded version {version}")
        # 2. Move the label.
        model.version_labels[label] = version
        client.reload(config, "move label")
        steps.append(f"label '{label}': {previous if previous is not None else '-'} -> {version}")
        # 3. Drop versions no label points at.
        keep = set(model.version_labels.values())
        dropped = sorted((labelled | {version}) - keep)
        _set_versions(model, keep)
        client.reload(config, "drop")
        if dropped:
            steps.append(f"unloaded version(s) {', '.join(map(str, dropped))}")
    finally:
        client.close()
    write_config(config, config_file)
    _record(config_file, reason, model_name, label, previous, version)
    steps.append(f"saved {config_file}")
    return steps


def previous_stable(config_file: str, model_name: str, current: int | None) -> int | None:
    """The version `stable` pointed at before the promotion that made `current` stable."""
    for entry in reversed(read_history(config_file)):
        if (entry["model"], entry["label"], entry["action"], entry["to"]) == (
            model_name, "stable", "promote", current
        ) and entry["from"] is not None:
            return entry["from"]
    return None


def rollback(config_file: str, server: str, model_name: str, to: int | None = None,
             replicas: list[str] | None = None, timeout: float = 300.0,
             apply: str | None = None, label: str = "stable") -> list[str]:
    """Point `stable` back at the previous good version (or `to`); or, with label `canary`,
    point `canary` back at the stable version, which unloads a rejected candidate. Through
    one server's reload RPC, or, with `replicas`, through the config file they all poll."""
    with config_lock(config_file):
        to = _rollback_target(config_file, model_name, to, label)
        if replicas:
            return _promote_replicas_locked(config_file, replicas, model_name, to, label,
                                            timeout, reason="rollback", apply=apply)
        return _promote_locked(config_file, server, model_name, to, label, reason="rollback")


def _rollback_target(config_file: str, model_name: str, to: int | None,
                     label: str = "stable") -> int:
    config = read_config(config_file)
    model = find_model(config, model_name)
    if model is None:
        raise PromotionError(f"model '{model_name}' is not in {config_file}")
    if label == "canary":
        canary, stable = model.version_labels.get("canary"), model.version_labels.get("stable")
        to = stable if to is None else to
        if to is None:
            raise PromotionError(f"'{model_name}' has no stable version to move canary back to")
        if to == canary:
            raise PromotionError(f"canary already points at version {to}")
        return to
    current = model.version_labels.get("stable")
    if to is None:
        to = previous_stable(config_file, model_name, current)
        if to is None:
            older = sorted(v for v in version_dirs(model.base_path) if current is None or v < current)
            if not older:
                raise PromotionError(
                    f"no previous version of '{model_name}' to roll back to (stable is {current})"
                )
            to = older[-1]
    if to == current:
        raise PromotionError(f"stable already points at version {to}")
    return to


def _wait_for(clients: list[ServerClient], what: str, done, timeout: float,
              poll: float = 0.5) -> None:
    """Poll every replica until `done(client)` holds for all of them. `done` may raise
    PromotionError to stop early (a version that failed to load)."""
    deadline = time.monotonic() + timeout
    pending = list(clients)
    while pending:
        pending = [c for c in pending if not done(c)]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(c.address for c in pending)
            raise PromotionError(f"{what}: not seen on {names} within {timeout:.0f}s (do the "
                                 "replicas poll this config file? --model_config_file_poll_wait_"
                                 "seconds)")
        time.sleep(poll)


def _publisher(apply: str | None):
    """Writes a step to the config file, then runs `apply` (with {} replaced by the file's
    path) to put it where the servers read it, e.g. `kubectl create configmap ... --from-file=
    models.config={} --dry-run=client -o yaml | kubectl apply -f -`."""
    import shlex
    import subprocess

    def publish(config, config_file: str) -> None:
        write_config(config, config_file)
        if not apply:
            return
        command = apply.replace("{}", shlex.quote(config_file))
        done = subprocess.run(command, shell=True, capture_output=True, text=True)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise PromotionError(f"--apply command failed with status {done.returncode}: "
                                 f"{detail[-1] if detail else command}")

    return publish


def promote_replicas(config_file: str, replicas: list[str], model_name: str, version: int,
                     label: str, timeout: float = 300.0, reason: str = "promote",
                     apply: str | None = None) -> list[str]:
    """Promotion for servers that poll one config file (a shared volume, or a ConfigMap that
    is written back to the file they read): each of TF Serving's two steps is written to the
    file, and the next step waits until every replica's GetModelStatus shows the last one. A
    server refuses a config that loads a version and labels it in one step, so writing the
    final config at once would leave every replica on the old labels."""
    with config_lock(config_file):
        return _promote_replicas_locked(config_file, replicas, model_name, version, label,
                                        timeout, reason, apply)


def _promote_replicas_locked(config_file: str, replicas: list[str], model_name: str,
                             version: int, label: str, timeout: float, reason: str,
                             apply: str | None = None) -> list[str]:
    publish = _publisher(apply)
    if not replicas:
        raise PromotionError("no replicas to wait for (--replicas HOST:PORT,HOST:PORT)")
    config, model = _promotable(config_file, model_name, version, label)
    clients = [ServerClient(address) for address in replicas]
    steps: list[str] = []
    labelled = set(model.version_labels.values())
    previous = model.version_labels.get(label)
    try:
        # 1. Load the new version next to the labelled ones, on every replica.
        _set_versions(model, labelled | {version})
        publish(config, config_file)

        def loaded(client: ServerClient) -> bool:
            state, error = client.version_state(model_name, version, unknown=None)
            if state == State.END and error:
                raise PromotionError(f"version {version} did not load on {client.address}: "
                                     f"{error}")
            return state == State.AVAILABLE

        try:
            _wait_for(clients, f"version {version} AVAILABLE", loaded, timeout)
        except PromotionError:
            _set_versions(model, labelled)  # undo: no replica should keep loading it
            publish(config, config_file)
            raise
        steps.append(f"loaded version {version} on {len(clients)} replica(s)")
        # 2. Move the label, on every replica.
        model.version_labels[label] = version
        publish(config, config_file)
        _wait_for(clients, f"label '{label}' -> {version}",
                  lambda c: c.label_version(model_name, label) == version, timeout)
        steps.append(f"label '{label}': {previous if previous is not None else '-'} -> {version} "
                     f"on {len(clients)} replica(s)")
        # 3. Drop versions no label points at.
        keep = set(model.version_labels.values())
        dropped = sorted((labelled | {version}) - keep)
        _set_versions(model, keep)
        publish(config, config_file)
        if dropped:
            steps.append(f"unloading version(s) {', '.join(map(str, dropped))}")
    finally:
        for client in clients:
            client.close()
    _record(config_file, reason, model_name, label, previous, version, replicas=replicas)
    steps.append(f"saved {config_file}")
    return steps
