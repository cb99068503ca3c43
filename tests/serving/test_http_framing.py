"""The REST front against hostile HTTP framing, over raw sockets on 127.0.0.1: bad and
negative Content-Length, Content-Length with chunked Transfer-Encoding (request smuggling),
oversized headers and bodies, slow clients. Each gets a clear 4xx, memory stays bounded, and
other clients keep being served."""

import json
import re
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


def _response(s: socket.socket) -> tuple[int, bytes]:
    """Read one complete HTTP response from `s`: (status, body). A timeout, a reset or a
    connection closed before the response is whole raises: none of them is an answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a whole response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert re.fullmatch(r"HTTP/1\.[01] \d{3} .*", lines[0]), lines[0]
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers["Content-Length"])
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed inside the body: {data[:200]!r}")
        body += chunk
    assert len(body) == length, (length, body[:200])
    return int(lines[0].split()[1]), body


def _exchange(port: int, raw: bytes, timeout: float = 2.0) -> tuple[int, bytes]:
    """Send raw bytes and read the server's one answer: (status, body). The server must then
    close the connection (after a framing error nothing frames the rest of the stream) and
    send nothing more: no second answer. A timeout or a reset raises and fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        status, body = _response(s)
        rest = s.recv(65536)
        assert rest == b"", f"more after the answer: {rest[:300]!r}"
    return status, body


def _request(headers: str, body: bytes = b"") -> bytes:
    return (f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").encode() + body


def test_bad_content_lengths_get_400(rest):
    port = rest.server.rest_port
    for value in ("abc", "-1", "1e3", "99999999999999999999999"):
        status, body = _exchange(port, _request(f"Content-Length: {value}\r\n", b"{}"))
        assert status == 400 and b"Content-Length" in body, (value, status, body[:200])


def test_a_negative_length_with_a_stream_behind_it_does_not_grow_memory(rest):
    port = rest.server.rest_port
    before = psutil.Process().memory_info().rss
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_request("Content-Length: -1\r\n"))
        try:
            for _ in range(300):  # up to 300 MiB, if the server kept reading
                s.sendall(b"x" * (1 << 20))
                sent += 1 << 20
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed with our stream unread; its answer is already here
        # A server that stops reading without answering times the sends out: that fails.
        status, body = _response(s)
    grown = psutil.Process().memory_info().rss - before
    assert status == 400 and b"Content-Length" in body, (status, body[:200])
    assert sent < 100 << 20, f"the server read {sent >> 20} MiB of an invalid request"
    assert grown < 64 << 20, f"RSS grew by {grown >> 20} MiB"


def test_content_length_with_chunked_encoding_gets_one_answer_not_two(rest):
    smuggled = b'GET /v1/models/scorer HTTP/1.1\r\nHost: x\r\n\r\n'
    body = b"0\r\n\r\n" + smuggled
    # One 400, then the connection closes: the smuggled GET is never answered.
    status, answer = _exchange(rest.server.rest_port, _request(
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n", body))
    assert status == 400 and b"Transfer-Encoding" in answer, (status, answer[:300])


def test_oversized_headers_and_bodies_are_refused(rest):
    port = rest.server.rest_port
    status, body = _exchange(port, _request(f"X-Big: {'a' * 200_000}\r\n"))
    assert status in (400, 431), (status, body[:200])  # aiohttp says 400, RFC 6585 431
    big = json.dumps({"instances": ["x" * (2 << 20)]}).encode()
    # Well framed, so the server could keep the connection: the client asks it to close.
    status, body = _exchange(port, _request(
        f"Content-Length: {len(big)}\r\nConnection: close\r\n", big))
    assert status == 413 and b"--max_request_bytes" in body, (status, body[:200])


def test_slow_clients_do_not_stop_others_being_served(rest):
    """Slowloris: 100 connections trickle header bytes; a normal request is still answered at
    once, while every slow connection stays open and unanswered."""
    port = rest.server.rest_port
    stop = threading.Event()
    sockets, errors = [], []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode())
        sockets.append(s)

    def trickle():
        while not stop.is_set():
            for s in sockets:
                try:
                    s.sendall(b"X-a: b\r\n")
                except OSError as e:  # a slow client dropped or stuck: not what is tested
                    errors.append(repr(e))
                    return
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
    try:
        assert errors == []
        for s in sockets:  # still open, nothing answered: held, not dropped to serve the probe
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
    finally:
        for s in sockets:
            s.close()
