"""Bad input at the node's boundaries gets a clear error and loses nothing.

HTTP: malformed JSON → 400, oversized key or value → 413, unknown route → 404. Peer port:
garbage, an oversized frame, or a frame from another cluster closes that connection; the node
keeps running and serving.
"""

from __future__ import annotations

import json
import socket
import struct
import urllib.error
import urllib.request

from quorumdb.kv.api import KEY_BYTES_MAX, VALUE_BYTES_MAX
from quorumdb.kv.client import Client, RetryPolicy
from quorumdb.runtime.wire import encode_hello
from tests.e2e.harness import Cluster, get_json

RETRY = RetryPolicy(attempts_max=30, backoff_min_s=0.01, backoff_max_s=0.2)


def _request(url: str, method: str, body: bytes | None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_bad_input_gets_4xx_and_loses_nothing(cluster: Cluster) -> None:
    c = Client(cluster.urls, retry=RETRY, seed=3)
    rev = c.put("precious", "data")
    base = cluster.url(1)
    cases = [
        ("PUT", "/v1/kv/precious", b"{oops", 400),
        ("PUT", "/v1/kv/precious", b'{"value": 5}', 400),
        ("PUT", "/v1/kv/" + "k" * (KEY_BYTES_MAX + 1), b'{"value": "v"}', 413),
        (
            "PUT",
            "/v1/kv/precious",
            json.dumps({"value": "x" * (VALUE_BYTES_MAX + 1)}).encode(),
            413,
        ),
        ("GET", "/v1/nowhere", None, 404),
        ("GET", "/v1/kv/precious?consistency=maybe", None, 400),
    ]
    for method, path, body, status in cases:
        got, answer = _request(base + path, method, body)
        assert got == status, (method, path, got, answer)
        assert isinstance(answer.get("error"), str) and answer["error"]
    assert c.get("precious") == ("data", rev)


def _garbage(port: int, payload: bytes) -> bytes:
    """Send `payload` to the peer port; return what the node sent back before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def test_garbage_on_the_peer_port_closes_that_connection_only(cluster: Cluster) -> None:
    c = Client(cluster.urls, retry=RETRY, seed=4)
    rev = c.put("survivor", "yes")
    raft_port = cluster.state.nodes[2].raft[1]
    attacks = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        struct.pack("<I", 0xFFFFFFF0) + b"\x01" + b"x" * 64,  # oversized frame
        struct.pack("<I", 6) + b"\x07hello",  # unknown version
        encode_hello("another-cluster", 9),
        encode_hello("quorumdb", 9) + struct.pack("<I", 4) + b"\x01\xc1\xc1\xc1",  # bad msgpack
        b"\x00" * 3,
    ]
    for payload in attacks:
        assert _garbage(raft_port, payload) == b""  # closed without an answer
    assert get_json(cluster.url(2) + "/v1/health")["status"] == "ok"
    metrics = urllib.request.urlopen(cluster.url(2) + "/metrics", timeout=5).read().decode()
    rejected = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("quorumdb_transport_rejected_connections_total")
    ]
    assert rejected and rejected[0] >= 4
    # The cluster still works through node 2, and nothing was lost.
    assert Client([cluster.url(2)], retry=RETRY, seed=5).get("survivor") == ("yes", rev)
    assert Client(cluster.urls, retry=RETRY, seed=6).put("after", "1") is not None
