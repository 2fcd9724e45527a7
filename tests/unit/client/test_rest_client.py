"""The CLI's REST client against a scripted local HTTP server: cursor walks, and which requests it resends."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from client.errors import APIError, UnreachableError
from client.rest import Rest

Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, object] | tuple[int, object, dict[str, str]] | None]


@pytest.fixture
def hub() -> Iterator[tuple[Rest, list[tuple[str, str, dict[str, str], bytes]], list[Handler]]]:
    """A server answering with ``script[0]`` (None: drop the connection without an answer); every request seen."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    script: list[Handler] = []

    class Scripted(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, url.path, query, body))
            answer = script[0](self.command, url.path, query, body)
            if answer is None:
                self.close_connection = True  # NB: the request was read; no response, as a hub that died would
                return
            status, payload, *extra = answer
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rest = Rest(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    try:
        yield rest, seen, script
    finally:
        rest.close()
        server.shutdown()
        server.server_close()


def test_walks_the_cursor_until_next_is_null(hub: Any) -> None:
    rest, seen, script = hub
    pages = {"": (["a", "b"], "t1"), "t1": (["c", "d"], "t2"), "t2": (["e"], None)}

    def cursor(method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, object]:
        items, following = pages[query["after"]]
        return 200, {"kind": "ResourceBundleList", "size": len(items), "total": 5, "items": items, "next": following}

    script.append(cursor)
    assert list(rest.pages("/resource-bundles", {"search": "x = 'y'"}, size=2)) == ["a", "b", "c", "d", "e"]
    assert [q for _, _, q, _ in seen] == [
        {"search": "x = 'y'", "after": "", "size": "2"},
        {"search": "x = 'y'", "after": "t1", "size": "2"},
        {"search": "x = 'y'", "after": "t2", "size": "2"},
    ]
    assert all("page" not in q for _, _, q, _ in seen)


def test_a_hub_without_a_cursor_is_paged_by_number(hub: Any) -> None:
    rest, seen, script = hub
    rows = ["a", "b", "c", "d", "e"]

    def numbered(method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, object]:
        page, size = int(query.get("page", "1")), int(query["size"])
        items = rows[(page - 1) * size : page * size]
        return 200, {"kind": "ResourceBundleList", "page": page, "size": len(items), "total": 5, "items": items}

    script.append(numbered)
    assert list(rest.pages("/resource-bundles", size=2)) == rows
    assert [q.get("page") for _, _, q, _ in seen] == [None, "2", "3"]


def _dropping_the_first_post() -> Handler:
    posts = 0

    def answer(method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, object] | None:
        nonlocal posts
        if method == "GET":
            return 200, {"kind": "ResourceList", "items": []}
        posts += 1
        return None if posts == 1 else (200, {"id": json.loads(body)["id"], "kind": "Resource"})

    return answer


def test_a_create_naming_its_id_is_resent_once_when_the_connection_drops(hub: Any) -> None:
    rest, seen, script = hub
    script.append(_dropping_the_first_post())
    rest.get("/resources")  # NB: the keep-alive connection the POST then finds closed
    body = {"id": "5f0c6ad4-9d1f-4b43-bb52-7d0d3f8b7b11", "consumer_name": "cluster1"}
    assert rest.post("/resources", body, idempotent=True) == {"id": body["id"], "kind": "Resource"}
    posts = [b for m, _, _, b in seen if m == "POST"]
    assert len(posts) == 2
    assert posts[0] == posts[1]  # the same id both times: the hub answers the repeat with the first's resource


def test_a_create_without_its_own_id_is_not_resent(hub: Any) -> None:
    rest, seen, script = hub
    script.append(_dropping_the_first_post())
    rest.get("/resources")
    with pytest.raises(UnreachableError):
        rest.post("/resources", {"consumer_name": "cluster1"})
    assert [m for m, _, _, _ in seen] == ["GET", "POST"]


UNAVAILABLE = {"kind": "Error", "code": "maestro-9", "reason": "The database is unavailable; retry later"}


def _unavailable_first(times: int) -> Handler:
    """503 with ``Retry-After: 0`` for the first ``times`` requests, as the hub answers while PostgreSQL is away."""
    count = 0

    def answer(method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, object, dict[str, str]]:
        nonlocal count
        count += 1
        if count <= times:
            return 503, UNAVAILABLE, {"Retry-After": "0"}
        return 200, {"kind": "Resource", "id": "r1"}, {}

    return answer


def test_a_get_waits_out_an_unavailable_database(hub: Any) -> None:
    rest, seen, script = hub
    script.append(_unavailable_first(3))
    assert rest.get("/resources/r1") == {"kind": "Resource", "id": "r1"}
    assert len(seen) == 4


def test_a_create_naming_its_id_waits_out_an_unavailable_database(hub: Any) -> None:
    rest, seen, script = hub
    script.append(_unavailable_first(1))
    assert rest.post("/resources", {"id": "r1"}, idempotent=True) == {"kind": "Resource", "id": "r1"}
    assert [m for m, _, _, _ in seen] == ["POST", "POST"]


def test_an_update_is_not_resent_on_503(hub: Any) -> None:
    rest, seen, script = hub
    script.append(_unavailable_first(1))
    with pytest.raises(APIError, match="database is unavailable") as caught:
        rest.put("/resources/r1", {"version": 1})
    assert caught.value.status == 503
    assert len(seen) == 1


def test_the_patience_ends_with_the_hubs_reason(hub: Any) -> None:
    rest, seen, script = hub
    rest.unavailable_patience = 0.3
    script.append(_unavailable_first(1000))
    with pytest.raises(APIError, match="database is unavailable"):
        rest.get("/resources/r1")
    assert 2 <= len(seen) <= 5
