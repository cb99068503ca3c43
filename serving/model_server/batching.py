"""Model server: server-side batching, read from the same `--batching_parameters_file` that
stock TF Serving reads with `--enable_batching`.

Concurrent requests for one signature of one model version are merged along dimension 0,
run as one graph call and split back, as TF Serving's BatchingSession does on a
SharedBatchScheduler:

- a batch closes when it holds `max_batch_size` examples, or `batch_timeout_micros` after
  its first request arrived; `num_batch_threads` workers run closed batches;
- at most `max_enqueued_batches` batches wait per signature; past that a request gets
  UNAVAILABLE ("the batch scheduling queue ... is full"), as in TF Serving;
- a request larger than `max_batch_size` is INVALID_ARGUMENT unless
  `enable_large_batch_splitting`, which splits it into batches of at most
  `max_execution_batch_size` (default `max_batch_size`);
- `allowed_batch_sizes` pads a batch up to the next allowed size (by repeating its first
  example; the padding is dropped from the outputs).

Two choices differ from TF Serving, both so a batch can never change an answer: requests whose
non-batch dimensions differ are put in different batches instead of being padded
(`pad_variable_length_inputs` is accepted and has nothing to do), and when a merged batch
fails (one malformed example fails the whole graph call) each request is re-run alone, so a
bad request gets its own error and never its neighbours'.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable

import numpy as np
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from tandem.serving.errors import InvalidArgument, ServingError, Unavailable
from tandem.serving.model_server.model_config import ConfigFileError, read_text

log = logging.getLogger("tandem.serving")

Arrays = dict[str, np.ndarray]


def _batching_parameters_class():
    """tensorflow.serving.BatchingParameters (session_bundle_config.proto), which the
    tensorflow-serving-api wheel does not ship. Only its text format is read, by field name."""
    fields = [  # (name, number, type name or scalar type, repeated)
        ("max_batch_size", 1, ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
        ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, ".google.protobuf.StringValue"),
        ("allowed_batch_sizes", 6, "int64[]"),
        ("pad_variable_length_inputs", 7, "bool"),
        ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
        ("max_execution_batch_size", 9, ".google.protobuf.Int64Value"),
    ]
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="tandem/serving/batching_parameters.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    for name, number, kind in fields:
        field = message.field.add(name=name, number=number, label=F.LABEL_OPTIONAL)
        if kind.startswith("."):
            field.type, field.type_name = F.TYPE_MESSAGE, kind
        elif kind == "int64[]":
            field.type, field.label = F.TYPE_INT64, F.LABEL_REPEATED
        else:
            field.type = F.TYPE_BOOL
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


BatchingParameters = _batching_parameters_class()


class BatchingConfigError(ConfigFileError):
    """A batching parameters file that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """The parameters in effect, with TF Serving's defaults for what the file leaves out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size

    @property
    def split_size(self) -> int:
        return self.max_execution_batch_size or self.max_batch_size

    @property
    def batch_limit(self) -> int:
        """The most examples one graph call takes."""
        return self.split_size if self.enable_large_batch_splitting else self.max_batch_size


def parse_batching_parameters(text: str, where: str = "batching parameters") -> BatchingOptions:
    params = BatchingParameters()
    try:
        text_format.Parse(text, params)
    except text_format.ParseError as e:
        raise BatchingConfigError(f"{where}: {e}") from None
    opts = BatchingOptions()
    values = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                 "num_batch_threads", "max_execution_batch_size"):
        if params.HasField(name):
            values[name] = getattr(params, name).value
    if params.HasField("enable_large_batch_splitting"):
        values["enable_large_batch_splitting"] = params.enable_large_batch_splitting.value
    values["allowed_batch_sizes"] = tuple(params.allowed_batch_sizes)
    opts = dataclasses.replace(opts, **values)
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(opts, name) < 1:
            raise BatchingConfigError(f"{where}: {name} must be >= 1, got {getattr(opts, name)}")
    if opts.batch_timeout_micros < 0 or opts.max_execution_batch_size < 0:
        raise BatchingConfigError(f"{where}: batch_timeout_micros and max_execution_batch_size "
                                  "must not be negative")
    sizes = opts.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] < 1:
            raise BatchingConfigError(f"{where}: allowed_batch_sizes must be positive and "
                                      f"increasing, got {list(sizes)}")
        if sizes[-1] != opts.max_batch_size:
            raise BatchingConfigError(
                f"{where}: the last allowed_batch_sizes entry ({sizes[-1]}) must equal "
                f"max_batch_size ({opts.max_batch_size})")
    if opts.max_execution_batch_size > opts.max_batch_size:
        raise BatchingConfigError(f"{where}: max_execution_batch_size must not exceed "
                                  "max_batch_size")
    return opts


def read_batching_parameters(path: str) -> BatchingOptions:
    text = read_text(path, "batching parameters file", BatchingConfigError)
    return parse_batching_parameters(text, where=f"batching parameters file {path}")


class _Task:
    __slots__ = ("inputs", "size", "outputs", "error", "done")

    def __init__(self, inputs: Arrays, size: int):
        self.inputs, self.size = inputs, size
        self.outputs: Arrays | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class _Batch:
    __slots__ = ("tasks", "size", "opened", "shape_key", "closed")

    def __init__(self, shape_key, now: float):
        self.tasks: list[_Task] = []
        self.size, self.opened, self.shape_key = 0, now, shape_key
        self.closed = False  # a request did not fit, so a newer batch took over


class _Queue:
    def __init__(self, run: Callable[[Arrays], Arrays]):
        self.run = run
        self.batches: collections.deque[_Batch] = collections.deque()


class BatchScheduler:
    """One scheduler for the whole server (TF Serving shares one across servables too);
    one queue per (model, version, signature)."""

    def __init__(self, options: BatchingOptions,
                 on_batch: Callable[[tuple, int], None] = lambda key, size: None):
        self.options, self.on_batch = options, on_batch
        self._cond = threading.Condition()
        self._queues: dict[tuple, _Queue] = {}
        self._stopped = False
        self._workers = [threading.Thread(target=self._work, daemon=True, name=f"batch-{i}")
                         for i in range(options.num_batch_threads)]
        for worker in self._workers:
            worker.start()

    # -- requests -------------------------------------------------------------------------
    def run(self, key: tuple, run: Callable[[Arrays], Arrays], inputs: Arrays) -> Arrays:
        """Run `run(inputs)` as part of a batch; returns this request's slice of the outputs.
        `key` names the queue; `run` must keep dimension 0 (examples) of every tensor."""
        sizes = {v.shape[0] if v.ndim else None for v in inputs.values()}
        if len(sizes) != 1 or None in sizes:
            raise InvalidArgument(
                "batching needs every input to have the same size in dimension 0 (the batch "
                f"dimension); got {', '.join(f'{k}: {list(v.shape)}' for k, v in inputs.items())}")
        size = sizes.pop()
        opts = self.options
        if size > opts.max_batch_size and not opts.enable_large_batch_splitting:
            raise InvalidArgument(f"Task size {size} is larger than maximum input batch size "
                                  f"{opts.max_batch_size}")
        if size == 0:
            return run(inputs)
        step = opts.split_size if size > opts.split_size else size
        parts = [_Task({k: v[i:i + step] for k, v in inputs.items()}, min(step, size - i))
                 for i in range(0, size, step)]
        shape_key = tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in inputs.items()))
        with self._cond:
            if self._stopped:
                raise Unavailable("the model server is shutting down")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(run)
            for task in parts:
                self._enqueue(queue, task, shape_key)
            self._cond.notify()  # one idle worker re-plans; the others sleep on
        for task in parts:
            task.done.wait()
            if task.error is not None:
                raise task.error
        if len(parts) == 1:
            return parts[0].outputs
        return {k: np.concatenate([t.outputs[k] for t in parts]) for k in parts[0].outputs}

    def _enqueue(self, queue: _Queue, task: _Task, shape_key) -> None:
        now = time.monotonic()
        limit = self.options.batch_limit
        open_batch = next((b for b in reversed(queue.batches)
                           if b.shape_key == shape_key and not b.closed), None)
        if open_batch is None or open_batch.size + task.size > limit:
            if len(queue.batches) >= self.options.max_enqueued_batches:
                raise Unavailable("The batch scheduling queue to which this task was submitted "
                                  "is full")
            if open_batch is not None:
                open_batch.closed = True
            open_batch = _Batch(shape_key, now)
            queue.batches.append(open_batch)
        open_batch.tasks.append(task)
        open_batch.size += task.size

    # -- workers --------------------------------------------------------------------------
    def _ready(self, now: float) -> tuple[tuple, _Queue, _Batch] | float:
        """The oldest batch that may run now (full, closed or due), or how long until the
        next one is due."""
        timeout = self.options.batch_timeout_micros / 1e6
        limit = self.options.batch_limit
        wait, best = float("inf"), None
        for key, queue in self._queues.items():
            for batch in queue.batches:
                due = batch.opened + timeout
                if batch.closed or batch.size >= limit or due <= now:
                    if best is None or batch.opened < best[2].opened:
                        best = (key, queue, batch)
                else:
                    wait = min(wait, due - now)
        if best is None:
            return wait
        best[1].batches.remove(best[2])
        return best

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    picked = self._ready(time.monotonic())
                    if isinstance(picked, tuple):
                        if any(q.batches for q in self._queues.values()):
                            self._cond.notify()  # pass the watch on the rest to another worker
                        break
                    self._cond.wait(None if picked == float("inf") else picked)
            key, queue, batch = picked
            self._process(key, queue, batch)
            with self._cond:  # forget idle queues, so unloaded versions are freed
                if not queue.batches and self._queues.get(key) is queue:
                    del self._queues[key]

    def _process(self, key: tuple, queue: _Queue, batch: _Batch) -> None:
        tasks = batch.tasks
        try:
            self.on_batch(key, batch.size)
            if len(tasks) == 1 and not self.options.allowed_batch_sizes:
                tasks[0].outputs = queue.run(tasks[0].inputs)
            else:
                self._run_merged(queue, tasks, batch.size)
        except ServingError as e:
            if len(tasks) == 1:
                tasks[0].error = e
            else:  # one bad request must not fail its neighbours: run each alone
                for task in tasks:
                    try:
                        task.outputs = queue.run(task.inputs)
                    except BaseException as alone:  # noqa: BLE001 - handed to its caller
                        task.error = alone
        except BaseException as e:  # noqa: BLE001 - handed to every caller; worker lives on
            for task in tasks:
                task.error = e
        finally:
            for task in tasks:
                task.done.set()

    def _run_merged(self, queue: _Queue, tasks: list[_Task], size: int) -> None:
        padded = next((s for s in self.options.allowed_batch_sizes if s >= size), size)
        merged = {}
        for key in tasks[0].inputs:
            parts = [t.inputs[key] for t in tasks]
            if padded > size:
                first = parts[0][:1]
                parts.append(np.repeat(first, padded - size, axis=0))
            merged[key] = np.concatenate(parts)
        outputs = queue.run(merged)
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != padded:
                raise ServingError(
                    f"output '{name}' has shape {list(value.shape)}; a batched signature must "
                    f"return {padded} rows")
        offset = 0
        for task in tasks:
            task.outputs = {k: v[offset:offset + task.size] for k, v in outputs.items()}
            offset += task.size

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            pending = [t for q in self._queues.values() for b in q.batches for t in b.tasks]
            for queue in self._queues.values():
                queue.batches.clear()
            self._cond.notify_all()
        for task in pending:
            task.error = Unavailable("the model server is shutting down")
            task.done.set()
        for worker in self._workers:
            worker.join(timeout=5)
