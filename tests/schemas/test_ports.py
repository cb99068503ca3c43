"""Ports for servers about to start: below the kernel's ephemeral range, and free."""

import socket

from tandem.schemas import ports


def test_a_port_is_picked_below_the_ephemeral_range_and_can_be_bound():
    low, _ = ports.ephemeral_range()
    for _ in range(20):
        port = ports.free_port()
        assert ports.LOWEST <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing holds it


def test_a_port_in_use_is_never_picked(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        picks = iter([taken, taken, free])
        monkeypatch.setattr(ports.random.SystemRandom, "randrange", lambda self, a, b: next(picks))
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (60000, 61000))
        assert ports.free_port() == free


def test_without_room_below_the_range_the_kernel_picks(monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (ports.LOWEST + 10, 60999))
    port = ports.free_port()
    assert port >= ports.LOWEST + 10  # from the kernel's range
