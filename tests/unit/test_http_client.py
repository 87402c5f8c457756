"""The pipelined HTTP/1.1 client against a raw loopback server that answers as told."""

from __future__ import annotations

import gevent
import pytest
from gevent.server import StreamServer

from realtime_glue.errors import PublishFailed, PublishRefused
from realtime_glue.http_client import MAX_BODY_KEPT, PipelinedHttpClient, Response
from realtime_glue.publishers.push_node import PushNode


def request(path: str, body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture
def server():
    """Reads pipelined requests; answers each with what `answer(path)` returns (raw bytes),
    or closes the connection when it returns None."""
    state = {"answer": lambda path: b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", "paths": []}

    def handle(sock, _address):
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            length = next(int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length"))
            while len(buffer) < length:
                buffer += sock.recv(65536)
            buffer = buffer[length:]
            path = lines[0].split(" ")[1]
            state["paths"].append(path)
            answer = state["answer"](path)
            if answer is None:
                sock.close()
                return
            sock.sendall(answer)

    stream = StreamServer(("127.0.0.1", 0), handle)
    stream.start()
    yield stream.server_port, state
    stream.stop()


def test_pipelined_requests_of_one_key_are_answered_in_order_with_their_bodies(server):
    port, state = server
    state["answer"] = lambda path: f"HTTP/1.1 200 OK\r\nContent-Length: {len(path)}\r\n\r\n{path}".encode()
    client = PipelinedHttpClient("127.0.0.1", port, connections=4)
    try:
        results = [client.submit("chan", request(f"/{n}")) for n in range(50)]
        answers = [r.get(timeout=5) for r in results]
    finally:
        client.close()
    assert answers == [Response(200, f"/{n}".encode()) for n in range(50)]
    assert state["paths"] == [f"/{n}" for n in range(50)]


def test_a_chunked_body_is_kept_up_to_the_limit(server):
    port, state = server
    big = b"x" * (MAX_BODY_KEPT + 100)
    state["answer"] = lambda path: (
        b"HTTP/1.1 413 Request Entity Too Large\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(big):x}\r\n".encode()
        + big
        + b"\r\n0\r\n\r\n"
    )
    client = PipelinedHttpClient("127.0.0.1", port)
    try:
        first = client.submit("k", request("/a")).get(timeout=5)
        second = client.submit("k", request("/b")).get(timeout=5)
    finally:
        client.close()
    assert first == second == Response(413, big[:MAX_BODY_KEPT])


def test_a_connection_closed_mid_pipeline_fails_the_unanswered_requests(server):
    port, state = server
    state["answer"] = lambda path: (
        None if path == "/2" else b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    client = PipelinedHttpClient("127.0.0.1", port, connections=1)
    try:
        results = [client.submit("k", request(f"/{n}")) for n in range(4)]
        gevent.wait(results, timeout=5)
        assert [r.successful() for r in results] == [True, True, False, False]
        assert isinstance(results[2].exception, ConnectionError)
        # The next request opens a new connection.
        assert client.submit("k", request("/5")).get(timeout=5).status == 201
    finally:
        client.close()


def test_many_answers_in_one_read_with_headers_in_any_case_are_each_read(server):
    port, state = server
    state["answer"] = lambda path: (
        f"HTTP/1.1 202 Accepted\r\nCONTENT-length:  {len(path)}\r\n\r\n{path}".encode()
    )
    client = PipelinedHttpClient("127.0.0.1", port, connections=1)
    try:
        answers = [r.get(timeout=5) for r in [client.submit("k", request(f"/{n}")) for n in range(200)]]
    finally:
        client.close()
    assert answers == [Response(202, f"/{n}".encode()) for n in range(200)]


def test_an_answer_that_trickles_in_a_byte_at_a_time_is_read_whole():
    answer = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"

    def handle(sock, _address):
        received = b""
        for _ in range(2):
            while received.count(b"\r\n\r\n") < 1:
                received += sock.recv(65536)
            received = received.split(b"\r\n\r\n", 1)[1]
            for byte in answer:
                sock.sendall(bytes([byte]))
                gevent.sleep(0)
        gevent.sleep(1)

    stream = StreamServer(("127.0.0.1", 0), handle)
    stream.start()
    client = PipelinedHttpClient("127.0.0.1", stream.server_port, connections=1)
    try:
        first = client.submit("k", request("/a")).get(timeout=5)
        second = client.submit("k", request("/b")).get(timeout=5)
    finally:
        client.close()
        stream.stop()
    assert first == second == Response(200, b"hello")


def test_connection_close_in_an_answer_opens_a_new_connection_for_the_next(server):
    port, state = server
    state["answer"] = lambda path: b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
    client = PipelinedHttpClient("127.0.0.1", port, connections=1)
    try:
        first = client.submit("k", request("/a")).get(timeout=5)
        second = client.submit("k", request("/b")).get(timeout=5)
    finally:
        client.close()
    assert first == second == Response(200, b"")
    assert state["paths"] == ["/a", "/b"]


def test_a_batch_waited_for_once_reads_each_answer_a_refusal_among_them(server):
    """The node's sender waits once for a batch, then reads every answer: a refused message
    in the middle is refused, the others are delivered."""
    port, state = server
    state["answer"] = lambda path: (
        b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig"
        if "big" in path
        else b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    node = PushNode(f"http://127.0.0.1:{port}", timeout=5.0, connections=2)
    try:
        sent = [node.start_publish(channel, "1", b"{}") for channel in ("a", "big", "c")]
        node.wait_for_answers(sent, 5.0)
        node.finish_publish(sent[0], 0.0)
        with pytest.raises(PublishRefused):
            node.finish_publish(sent[1], 0.0)
        node.finish_publish(sent[2], 0.0)
    finally:
        node.close()


def test_a_batch_whose_deadline_passes_fails_only_what_was_not_answered(server):
    """One deadline for the batch: what the node answered in time is delivered, what it did
    not answer fails for now (the sender then holds it in the node's backlog)."""
    port, state = server
    stuck = []  # the node answers nothing from the first request on channel b on

    def answer(path):
        if "=b" in path:
            stuck.append(path)
        return b"" if stuck else b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"

    state["answer"] = answer
    node = PushNode(f"http://127.0.0.1:{port}", timeout=0.2, connections=1)
    try:
        sent = [node.start_publish(channel, "1", b"{}") for channel in ("a", "b", "a")]
        node.wait_for_answers(sent, 0.2)
        node.finish_publish(sent[0], 0.0)
        for pending in sent[1:]:  # the one behind the unanswered one is lost with it
            with pytest.raises(PublishFailed):
                node.finish_publish(pending, 0.0)
    finally:
        node.close()


def test_a_request_larger_than_the_socket_buffer_is_sent_whole(server):
    """Written in several sends when the socket takes it in parts: the server reads it all."""
    port, state = server
    body = bytes(range(256)) * 40_000  # 10 MB, far beyond a loopback socket's buffer
    client = PipelinedHttpClient("127.0.0.1", port, connections=1)
    try:
        results = [client.submit("chan", request("/big", body)), client.submit("chan", request("/next"))]
        assert [r.get(timeout=30).status for r in results] == [201, 201]
    finally:
        client.close()
    assert state["paths"] == ["/big", "/next"]
