"""Ports for servers tandem starts on this machine (the loop's model server and gateway, and
the servers the tests start).

A port picked by binding port 0 comes from the kernel's ephemeral range, the same range every
outgoing connection and every other `bind(0)` draws from (Beam's job and data servers open
several per job). Between the pick and the server's own bind, any of those can take it, and
the server fails with EADDRINUSE. A port picked below that range can only be taken by another
explicit pick, so `free_port` picks there, at random, and checks that it is free.
"""

from __future__ import annotations

import random
import socket

EPHEMERAL_DEFAULT = (32768, 60999)  # Linux's default net.ipv4.ip_local_port_range
LOWEST = 10000  # below: ports that well-known services are configured on


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux), or its default elsewhere."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
        return low, high
    except (OSError, ValueError):
        return EPHEMERAL_DEFAULT


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A port on `host` that nothing listens on, outside the ephemeral range when there is
    room below it; the kernel's pick (port 0) otherwise."""
    low, _ = ephemeral_range()
    picker = random.SystemRandom()
    if low - LOWEST > 1000:
        for _ in range(attempts):
            port = picker.randrange(LOWEST, low)
            if _bindable(host, port):
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
