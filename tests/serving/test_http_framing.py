"""The REST front against hostile HTTP framing, over raw sockets on 127.0.0.1: bad and
negative Content-Length, Content-Length with chunked Transfer-Encoding (request smuggling),
oversized headers and bodies, slow clients. Each gets a clear 4xx, memory stays bounded, and
other clients keep being served."""

import json
import socket
import threading
import time

import psutil
import pytest

from .test_server import Clients

PREDICT = "/v1/models/scorer:predict"


@pytest.fixture
def rest(model_base, start_server):
    return Clients(start_server(model_name="scorer", model_base_path=str(model_base),
                                max_request_bytes=1 << 20))


def _exchange(port: int, raw: bytes, read_for: float = 2.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_for) as s:
        s.sendall(raw)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def _status_lines(answer: bytes) -> list[str]:
    return [line.decode() for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def _request(headers: str, body: bytes = b"") -> bytes:
    return (f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").encode() + body


def test_bad_content_lengths_get_400(rest):
    port = rest.server.rest_port
    for value in ("abc", "-1", "1e3", "99999999999999999999999"):
        answer = _exchange(port, _request(f"Content-Length: {value}\r\n", b"{}"))
        (status,) = _status_lines(answer)
        assert status.split()[1] in ("400", "413"), (value, answer[:200])


def test_a_negative_length_with_a_stream_behind_it_does_not_grow_memory(rest):
    port = rest.server.rest_port
    before = psutil.Process().memory_info().rss
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_request("Content-Length: -1\r\n"))
        sent = 0
        try:
            for _ in range(300):  # up to 300 MiB, if the server kept reading
                s.sendall(b"x" * (1 << 20))
                sent += 1 << 20
        except OSError:
            pass  # the server answered and closed: what it should do
    grown = psutil.Process().memory_info().rss - before
    assert sent < 100 << 20, f"the server read {sent >> 20} MiB of an invalid request"
    assert grown < 64 << 20, f"RSS grew by {grown >> 20} MiB"


def test_content_length_with_chunked_encoding_gets_one_answer_not_two(rest):
    smuggled = b'GET /v1/models/scorer HTTP/1.1\r\nHost: x\r\n\r\n'
    body = b"0\r\n\r\n" + smuggled
    answer = _exchange(rest.server.rest_port, _request(
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n", body))
    statuses = _status_lines(answer)
    assert len(statuses) == 1 and statuses[0].split()[1] == "400", answer[:300]


def test_oversized_headers_and_bodies_are_refused(rest):
    port = rest.server.rest_port
    answer = _exchange(port, _request(f"X-Big: {'a' * 200_000}\r\n"))
    (status,) = _status_lines(answer)
    assert status.split()[1] in ("400", "431"), answer[:200]
    big = json.dumps({"instances": ["x" * (2 << 20)]}).encode()
    answer = _exchange(port, _request(f"Content-Length: {len(big)}\r\n", big))
    assert _status_lines(answer)[0].split()[1] == "413"
    assert b"--max_request_bytes" in answer


def test_slow_clients_do_not_stop_others_being_served(rest):
    """Slowloris: 100 connections trickle header bytes; a normal request is still answered at
    once."""
    port = rest.server.rest_port
    stop = threading.Event()
    sockets = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode())
        sockets.append(s)

    def trickle():
        while not stop.is_set():
            for s in sockets:
                try:
                    s.sendall(b"X-a: b\r\n")
                except OSError:
                    pass
            time.sleep(0.2)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        start = time.monotonic()
        status, body = rest.http("/v1/models/scorer")
        assert status == 200 and time.monotonic() - start < 2.0
        assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        stop.set()
        thread.join()
        for s in sockets:
            s.close()
