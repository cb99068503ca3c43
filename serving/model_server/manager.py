"""Model server: the model lifecycle, as TF Serving runs it.

Versions are integer subdirectories of a model's base path. The version policy (latest{N},
all, specific) picks the aspired versions; new ones are loaded and warmed up before the ones
they replace are unloaded (availability-preserving), a version that fails to load never
replaces a serving one and is reported with its error, and a config change applies without a
restart. Version labels may only point at loaded versions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tandem.serving.errors import FailedPrecondition, InvalidArgument, NotFound
from tandem.serving.model_server.batching import BatchScheduler
from tandem.serving.model_server.servable import LoadError, Servable

log = logging.getLogger("tandem.serving")
State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class VersionRecord:
    version: int
    state: int = State.START
    error: str = ""
    servable: Servable | None = None
    fingerprint: tuple = ()  # what the directory looked like when a load failed


@dataclasses.dataclass
class ModelEntry:
    config: model_server_config_pb2.ModelConfig
    versions: dict[int, VersionRecord] = dataclasses.field(default_factory=dict)
    labels: dict[str, int] = dataclasses.field(default_factory=dict)

    def available(self) -> list[int]:
        return sorted(v for v, r in self.versions.items() if r.state == State.AVAILABLE)


def version_dirs(base_path: str) -> dict[int, str]:
    """Integer-named subdirectories, as TF Serving's file system source sees them."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    found = {}
    for name in names:
        full = os.path.join(base_path, name)
        if name.isdigit() and os.path.isdir(full):
            found[int(name)] = full
    return found


def dir_fingerprint(path: str) -> tuple:
    try:
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                            for e in os.scandir(path)))
    except OSError:
        return ()


def aspired_versions(policy: model_server_config_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy,
                     on_disk: list[int], failed: set[int] | None = None) -> set[int]:
    """The versions the policy wants loaded. Under latest{N}, versions in `failed` (they failed
    to load and nothing changed on disk since) are passed over for the next older ones; TF
    Serving would aspire to them regardless and, after a restart, serve nothing."""
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(on_disk)
    if kind == "specific":
        return set(policy.specific.versions)
    count = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions else 1
    usable = [v for v in sorted(on_disk) if v not in (failed or set())]
    return set(usable[-count:])


class ModelManager:
    """Holds every configured model's versions; thread-safe."""

    def __init__(
        self,
        warmup: bool = True,
        on_event: Callable[[str, int, str], None] | None = None,
        on_load: Callable[[str, int, dict], None] | None = None,
        batcher: BatchScheduler | None = None,
        fall_back: bool = True,
        method_name_check: bool = False,
        allow_unavailable_labels: bool = False,
        load_threads: int = 0,
        tags: list[str] | None = None,
        warmup_iterations: int = 1,
    ):
        """`fall_back`: under latest{N}, serve the newest versions that load (see
        `aspired_versions`); False keeps TF Serving's rule."""
        self.warmup, self.batcher, self.fall_back = warmup, batcher, fall_back
        self.method_name_check = method_name_check
        # --allow_version_labels_for_unavailable_models: a new (or unchanged) label may name a
        # version that is not loaded yet; moving an existing label still needs a loaded one.
        self.allow_unavailable_labels = allow_unavailable_labels
        self.load_threads = load_threads  # --num_load_threads: models loaded in parallel
        self.tags = tags or ["serve"]  # --saved_model_tags
        self.warmup_iterations = warmup_iterations  # --num_request_iterations_for_warmup
        self.on_event = on_event or (lambda model, version, event: None)
        self.on_load = on_load or (lambda model, version, stats: None)
        self._models: dict[str, ModelEntry] = {}
        self._state = threading.RLock()  # guards _models; held only briefly
        self._reconcile = threading.Lock()  # one load/unload pass at a time

    # -- configuration -------------------------------------------------------------------
    def apply_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Apply a ModelServerConfig as TF Serving's ServerCore::ReloadConfig does: the
        labels are checked first, against the versions available before this config (so a
        config that loads a version and labels it in one step is refused, and so is a start-up
        config with labels, unless --allow_version_labels_for_unavailable_models); then models
        are added, changed or removed; then the labels move."""
        with self._reconcile:
            self._check_labels(config)
            with self._state:
                wanted = {m.name: m for m in config.model_config_list.config}
                for name, model in wanted.items():
                    entry = self._models.get(name)
                    if entry is None:
                        self._models[name] = ModelEntry(config=model)
                    else:
                        entry.config = model
            self._reconcile_locked(removed=set(self._models) - set(wanted))
            with self._state:
                for name, model in wanted.items():
                    self._models[name].labels = dict(model.version_labels)

    def _check_labels(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        errors = []
        with self._state:
            for model in config.model_config_list.config:
                entry = self._models.get(model.name)
                available = entry.available() if entry else []
                current = entry.labels if entry else {}
                for label, version in sorted(model.version_labels.items()):
                    unchanged_or_new = current.get(label, version) == version
                    if version in available or (self.allow_unavailable_labels
                                                and unchanged_or_new):
                        continue
                    errors.append(
                        f"Request to assign label to version {version} of model {model.name}, "
                        f"which is not currently available for inference (label '{label}')"
                    )
        if errors:
            raise FailedPrecondition("; ".join(errors))

    # -- lifecycle -------------------------------------------------------------------------
    def poll(self) -> None:
        """One file-system pass: find new versions, load them, unload replaced ones."""
        with self._reconcile:
            self._reconcile_locked(removed=set())

    def _reconcile_locked(self, removed: set[str]) -> None:
        for name in removed:
            self._unload_all(name)
        with self._state:
            entries = {n: e for n, e in self._models.items() if n not in removed}
        if self.load_threads > 1 and len(entries) > 1:
            # Models are independent: load them side by side (TF Serving's --num_load_threads).
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.load_threads, thread_name_prefix="load") as pool:
                for future in [pool.submit(self._reconcile_model, n, e)
                               for n, e in entries.items()]:
                    future.result()
            return
        for name, entry in entries.items():
            self._reconcile_model(name, entry)

    def _failed(self, entry: ModelEntry, on_disk: dict[int, str]) -> set[int]:
        """Versions that failed to load and whose directories have not changed since."""
        with self._state:
            return {v for v, r in entry.versions.items()
                    if r.error and v in on_disk and r.fingerprint == dir_fingerprint(on_disk[v])}

    def _reconcile_model(self, name: str, entry: ModelEntry) -> None:
        on_disk = version_dirs(entry.config.base_path)
        policy = entry.config.model_version_policy
        for _ in range(len(on_disk) + 1):  # each repeat passes over one more failed version
            failed = self._failed(entry, on_disk) if self.fall_back else set()
            aspired = aspired_versions(policy, list(on_disk), failed)
            if not self._load_aspired(name, entry, aspired, on_disk) or not self.fall_back:
                break
            # A version failed to load in this pass: aspire again without it.
        # Availability-preserving: unload what is no longer aspired only once an aspired
        # version serves; labelled versions stay until their labels move.
        with self._state:
            serving_aspired = [v for v in entry.available() if v in aspired]
            labelled = set(entry.labels.values())
            stale = [v for v in entry.available() if v not in aspired and v not in labelled]
        if serving_aspired or not aspired:
            for version in stale:
                self._unload(name, entry, version)

    def _load_aspired(self, name: str, entry: ModelEntry, aspired: set[int],
                      on_disk: dict[int, str]) -> bool:
        """Load the aspired versions that are not loaded; True when one of them failed."""
        failed_now = False
        for version in sorted(aspired, reverse=True):
            record = entry.versions.get(version)
            path = on_disk.get(version)
            if path is None:
                if record is None or record.state != State.AVAILABLE:
                    with self._state:
                        entry.versions[version] = VersionRecord(
                            version, State.END,
                            f"version directory {os.path.join(entry.config.base_path, str(version))} not found",
                        )
                continue
            if record is not None and record.state == State.AVAILABLE:
                continue
            fingerprint = dir_fingerprint(path)
            if record is not None and record.error and record.fingerprint == fingerprint:
                continue  # failed before and nothing changed on disk since
            if not self._load(name, entry, version, path, fingerprint):
                failed_now = True
        return failed_now

    def _load(self, name: str, entry: ModelEntry, version: int, path: str, fingerprint) -> bool:
        with self._state:
            entry.versions[version] = VersionRecord(version, State.LOADING)
        log.info("loading %s version %d from %s", name, version, path)
        started, rss = time.perf_counter(), resident_bytes()
        try:
            servable = Servable(name, version, path, batcher=self.batcher,
                                method_name_check=self.method_name_check, tags=self.tags)
            warmed = servable.warm_up(self.warmup_iterations) if self.warmup else 0
        except LoadError as e:
            log.error("model %s version %d failed to load: %s", name, version, e)
            with self._state:
                entry.versions[version] = VersionRecord(version, State.END, str(e),
                                                        fingerprint=fingerprint)
            self.on_event(name, version, "load_failed")
            return False
        with self._state:
            entry.versions[version] = VersionRecord(version, State.AVAILABLE, servable=servable)
        log.info("model %s version %d is available (%d warmup requests)", name, version, warmed)
        # What this version costs: load time, resident memory it added (approximate when
        # versions load concurrently) and its warmup latency and throughput.
        self.on_load(name, version, {"load_seconds": time.perf_counter() - started,
                                     "memory_bytes": max(0, resident_bytes() - rss),
                                     **servable.warmup_stats})
        self.on_event(name, version, "loaded")
        return True

    def _unload(self, name: str, entry: ModelEntry, version: int) -> None:
        with self._state:
            record = entry.versions.get(version)
            if record is None or record.state != State.AVAILABLE:
                return
            entry.versions[version] = VersionRecord(version, State.END)
        log.info("unloaded %s version %d", name, version)
        self.on_event(name, version, "unloaded")

    def _unload_all(self, name: str) -> None:
        with self._state:
            entry = self._models.get(name)
        if entry is None:
            return
        for version in entry.available():
            self._unload(name, entry, version)
        with self._state:
            self._models.pop(name, None)

    # -- lookups ---------------------------------------------------------------------------
    @staticmethod
    def _label_version(entry: ModelEntry, label: str) -> int:
        if label not in entry.labels:
            # INVALID_ARGUMENT, not NOT_FOUND: TF Serving's ServerCore treats an unknown label
            # as a bad request.
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        return entry.labels[label]

    def resolve(self, model_spec) -> Servable:
        """The servable a request's ModelSpec names (TF Serving's rules and status codes)."""
        name = model_spec.name
        if not name:
            raise InvalidArgument("Missing ModelSpec name")
        with self._state:
            entry = self._models.get(name)
            if entry is None:
                raise NotFound(f"Servable not found for request: Latest({name})")
            choice = model_spec.WhichOneof("version_choice")
            if choice == "version":
                version = model_spec.version.value
                record = entry.versions.get(version)
                if record is None or record.state != State.AVAILABLE:
                    raise NotFound(f"Servable not found for request: Specific({name}, {version})")
                return record.servable
            if choice == "version_label":
                label = model_spec.version_label
                version = self._label_version(entry, label)
                record = entry.versions.get(version)
                if record is None or record.state != State.AVAILABLE:
                    raise FailedPrecondition(
                        f"Label '{label}' of model {name} points at version {version}, "
                        "which is not loaded"
                    )
                return record.servable
            available = entry.available()
            if not available:
                raise NotFound(f"Servable not found for request: Latest({name})")
            return entry.versions[available[-1]].servable

    def status(self, model_spec) -> list[VersionRecord]:
        name = model_spec.name
        with self._state:
            entry = self._models.get(name)
            if entry is None:
                raise NotFound(f"Could not find any versions of model {name}")
            choice = model_spec.WhichOneof("version_choice")
            if choice == "version":
                record = entry.versions.get(model_spec.version.value)
                if record is None:
                    raise NotFound(
                        f"Could not find version {model_spec.version.value} of model {name}"
                    )
                return [record]
            if choice == "version_label":
                return [entry.versions[self._label_version(entry, model_spec.version_label)]]
            return [entry.versions[v] for v in sorted(entry.versions, reverse=True)]

    def models(self) -> dict[str, ModelEntry]:
        with self._state:
            return dict(self._models)

    def labels(self, name: str) -> dict[str, int]:
        with self._state:
            entry = self._models.get(name)
            return dict(entry.labels) if entry else {}


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
