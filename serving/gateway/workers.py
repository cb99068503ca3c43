"""Gateway: N worker processes answering on one port.

Why: a gateway process does its per-request work in Python, under one interpreter lock, so one
process uses about one core however many threads it has. The gateway keeps no state between
requests (each worker has its own source connections, entity cache, metrics and log files),
so N processes can share the port: each binds it with SO_REUSEPORT and the kernel spreads new
connections over them. A gRPC channel is one connection, so one client channel stays with one
worker; many clients spread.

Each worker writes request-log files of its own (the writer names files by host and pid), and
every reader of a log directory reads all of them. Metrics are per worker: the REST port is
shared too, so a scrape answers for the worker it reached.

The supervisor starts the workers, waits until each listens, forwards SIGTERM and SIGINT to
all of them and waits for each to stop. A worker that exits on its own stops the others: the
gateway is then down as a whole, visibly, rather than serving at a fraction of its capacity.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

READY = "gRPC on "  # the line a gateway prints once it listens


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound (not listening) to the shared port with SO_REUSEPORT: it resolves
    port 0 to a free port and holds it while the workers start; a port that another server
    holds without SO_REUSEPORT fails here, as it would for a single gateway."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock, sock.getsockname()[1]


class Workers:
    """`n` processes, each started with `command(i)` (a gateway that binds its ports with
    SO_REUSEPORT and prints `READY` once it listens)."""

    def __init__(self, n: int, command: Callable[[int], list[str]], start_timeout_s: float = 180):
        self.n, self.command, self.start_timeout_s = n, command, start_timeout_s
        self.procs: list[subprocess.Popen] = []
        self._stop = threading.Event()

    def start(self) -> list[list[str]]:
        """Start every worker and wait until each listens: what each printed up to and
        including its READY line. Raises OSError (after stopping the others) when one exits
        or does not get ready in time."""
        for i in range(self.n):
            self.procs.append(subprocess.Popen(self.command(i), stdout=subprocess.PIPE,
                                               text=True, bufsize=1))
        ready = []
        deadline = time.monotonic() + self.start_timeout_s
        for i, proc in enumerate(self.procs):
            lines = self._until_ready(proc, deadline)
            if lines is None:
                self.stop()
                raise OSError(f"gateway worker {i} (pid {proc.pid}) did not start "
                              f"(exit status {proc.poll()})")
            ready.append(lines)
            # The rest of its output goes on to ours, line by line.
            threading.Thread(target=self._relay, args=(proc,), daemon=True).start()
        return ready

    @staticmethod
    def _until_ready(proc: subprocess.Popen, deadline: float) -> list[str] | None:
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), proc.kill)
        timer.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith(READY):
                    return lines
            return None
        finally:
            timer.cancel()

    @staticmethod
    def _relay(proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            sys.stdout.write(f"[worker {proc.pid}] {line}")
            sys.stdout.flush()

    def wait(self) -> int | None:
        """Until a stop is asked (None) or a worker exits on its own (its exit status)."""
        while not self._stop.wait(0.2):
            for proc in self.procs:
                if proc.poll() is not None:
                    return proc.returncode
        return None

    def signal(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to every worker, then wait for each (SIGKILL after `timeout_s`)."""
        self._stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
