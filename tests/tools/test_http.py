"""HTTP tools against a real HTTP server on loopback."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import asynclm.tools.http as http_module
from asynclm.tooling import Tool, ToolError, ToolTimeoutError
from asynclm.tools.http import (
    ResponseTooLargeError,
    URLNotAllowedError,
    make_http_tools,
    normalize_host,
)

CHUNK = b"x" * 65536


class Handler(BaseHTTPRequestHandler):
    """Routes for the tests; `server.stop` (an Event) releases handlers that stall."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        route = getattr(self, "route_" + self.path.strip("/").split("?")[0].replace("-", "_"), None)
        if route is None:
            self.reply(404, "text/plain", b"not found")
        else:
            route()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode()
        if self.path == "/post-redirect":
            self.redirect(303, "/echo")
        elif self.path == "/post-redirect-307":
            self.redirect(307, "/echo")
        else:
            payload = {"method": "POST", "body": json.loads(body) if body else None}
            self.reply(200, "application/json", json.dumps(payload).encode())

    def reply(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_json(self) -> None:
        self.reply(200, "application/json; charset=utf-8", b'{"hello": "world", "n": [1, 2]}')

    def route_text(self) -> None:
        self.reply(200, "text/plain; charset=utf-8", "héllo".encode())

    def route_binary(self) -> None:
        self.reply(200, "image/png", bytes(range(256)))

    def route_bad_json(self) -> None:
        self.reply(200, "application/json", b"{not json")

    def route_headers(self) -> None:
        seen = {k.lower(): v for k, v in self.headers.items()}
        self.reply(200, "application/json", json.dumps(seen).encode())

    def route_echo(self) -> None:
        self.reply(200, "application/json", b'{"method": "GET"}')

    def route_slow(self) -> None:
        self.server.stop.wait(5)  # type: ignore[attr-defined]
        self.reply(200, "text/plain", b"late")

    def route_trickle(self) -> None:
        # One byte at a time: no single read times out, only an overall deadline helps.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        while not self.server.stop.wait(0.05):  # type: ignore[attr-defined]
            if not self.write(b"."):
                return

    def route_huge(self) -> None:
        # 1 MB, then a stall: a client reading the whole body would time out instead of
        # stopping at the cap.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        for _ in range(16):
            if not self.write(CHUNK):
                return
        self.server.stop.wait(5)  # type: ignore[attr-defined]

    def route_declared_huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "50000000")
        self.end_headers()
        self.write(b"x" * 1000)
        self.server.stop.wait(5)  # type: ignore[attr-defined]

    def route_redirect_ok(self) -> None:
        self.redirect(302, "/json")

    def route_redirect_away(self) -> None:
        self.redirect(302, f"http://localhost:{self.server.server_port}/json")

    def route_redirect_userinfo(self) -> None:
        self.redirect(301, f"http://user:pw@127.0.0.1:{self.server.server_port}/json")

    def route_redirect_loop(self) -> None:
        self.redirect(302, "/redirect-loop")

    def write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.stop = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.stop.set()  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def tools(**options: Any) -> tuple[Tool, Tool]:
    get, post = make_http_tools(["127.0.0.1"], **options)
    return get, post


@pytest.mark.anyio
async def test_get_json_body(server: str) -> None:
    get, _ = tools()
    result = await get.invoke({"url": f"{server}/json"})
    assert result["status"] == 200
    assert result["url"] == f"{server}/json"
    assert result["body"] == {"hello": "world", "n": [1, 2]}
    assert result["headers"]["content-type"] == "application/json; charset=utf-8"
    assert set(result["headers"]) <= {"content-type", "content-length", "date", "location"}


@pytest.mark.anyio
async def test_get_text_binary_and_broken_json(server: str) -> None:
    get, _ = tools()
    assert (await get.invoke({"url": f"{server}/text"}))["body"] == "héllo"
    assert (await get.invoke({"url": f"{server}/binary"}))["body"] == "<256 bytes of image/png>"
    assert (await get.invoke({"url": f"{server}/bad-json"}))["body"] == "{not json"
    missing = await get.invoke({"url": f"{server}/nowhere"})
    assert (missing["status"], missing["body"]) == (404, "not found")


@pytest.mark.anyio
async def test_request_headers(server: str) -> None:
    get, _ = tools()
    result = await get.invoke({"url": f"{server}/headers", "headers": {"X-Test": "yes"}})
    assert result["body"]["x-test"] == "yes"
    assert result["body"]["accept-encoding"] == "identity"
    with pytest.raises(ToolError, match="cannot be set: Host"):
        await get.invoke({"url": f"{server}/headers", "headers": {"Host": "evil.example"}})


@pytest.mark.anyio
async def test_post_json(server: str) -> None:
    _, post = tools()
    result = await post.invoke({"url": f"{server}/echo", "json": {"a": [1, "b"]}})
    assert result["body"] == {"method": "POST", "body": {"a": [1, "b"]}}
    empty = await post.invoke({"url": f"{server}/echo"})
    assert empty["body"] == {"method": "POST", "body": None}


@pytest.mark.anyio
async def test_post_redirects(server: str) -> None:
    _, post = tools()
    after_303 = await post.invoke({"url": f"{server}/post-redirect", "json": {"a": 1}})
    assert after_303["body"] == {"method": "GET"}
    after_307 = await post.invoke({"url": f"{server}/post-redirect-307", "json": {"a": 1}})
    assert after_307["body"] == {"method": "POST", "body": {"a": 1}}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://localhost/json", "'localhost' is not allowed"),
        ("http://example.com/", "'example.com' is not allowed"),
        ("http://user:pw@127.0.0.1/json", "credentials"),
        ("http://127.0.0.1@example.com/", "credentials"),
        ("http://2130706433/", "not a canonical IP address"),
        ("http://0x7f.0.0.1/", "not a canonical IP address"),
        ("http://127.1/", "not a canonical IP address"),
        ("http://0177.0.0.1/", "invalid URL"),
        ("http://[::1]/", "'::1' is not allowed"),
        ("http://127.0.0.%31/", "is not allowed"),
        ("http:/127.0.0.1/json", "no host"),
        ("not a url", "only http and https"),
    ],
)
async def test_refused_urls(url: str, reason: str) -> None:
    get, _ = tools()
    with pytest.raises(URLNotAllowedError, match=reason):
        await get.invoke({"url": url})


@pytest.mark.anyio
async def test_redirect_followed_within_allowlist(server: str) -> None:
    get, _ = tools()
    result = await get.invoke({"url": f"{server}/redirect-ok"})
    assert result["url"] == f"{server}/json"
    assert result["body"]["hello"] == "world"


@pytest.mark.anyio
async def test_redirect_to_other_host_refused(server: str) -> None:
    get, _ = tools()
    with pytest.raises(URLNotAllowedError, match="'localhost' is not allowed"):
        await get.invoke({"url": f"{server}/redirect-away"})
    with pytest.raises(URLNotAllowedError, match="credentials"):
        await get.invoke({"url": f"{server}/redirect-userinfo"})


@pytest.mark.anyio
async def test_redirect_loop_stops(server: str) -> None:
    get, _ = tools(max_redirects=3)
    with pytest.raises(ToolError, match="too many redirects"):
        await get.invoke({"url": f"{server}/redirect-loop"})


@pytest.mark.anyio
async def test_timeout_on_slow_endpoint(server: str) -> None:
    get, _ = tools(timeout=0.3)
    start = time.monotonic()
    with pytest.raises(ToolTimeoutError, match="http_get"):
        await get.invoke({"url": f"{server}/slow"})
    assert time.monotonic() - start < 2


@pytest.mark.anyio
async def test_overall_deadline_on_trickling_body(server: str) -> None:
    get, _ = tools(timeout=0.4)
    start = time.monotonic()
    with pytest.raises(ToolTimeoutError):
        await get.invoke({"url": f"{server}/trickle"})
    assert time.monotonic() - start < 2


@pytest.mark.anyio
async def test_size_cap_enforced_while_streaming(server: str) -> None:
    # The server sends 1 MB and then stalls for seconds: only a streaming cap fails fast.
    get, _ = tools(max_bytes=100_000, timeout=3)
    start = time.monotonic()
    with pytest.raises(ResponseTooLargeError, match="100000-byte limit"):
        await get.invoke({"url": f"{server}/huge"})
    assert time.monotonic() - start < 1.5


@pytest.mark.anyio
async def test_declared_size_refused_before_reading(server: str) -> None:
    get, _ = tools(max_bytes=100_000, timeout=3)
    with pytest.raises(ResponseTooLargeError, match="50000000 bytes"):
        await get.invoke({"url": f"{server}/declared-huge"})


@pytest.mark.anyio
async def test_connection_error_is_a_tool_error() -> None:
    get, _ = tools(timeout=2)
    with pytest.raises(ToolError, match="failed: ConnectError"):
        await get.invoke({"url": "http://127.0.0.1:1/"})


def test_normalize_host_and_factory_validation() -> None:
    assert normalize_host("Example.COM.") == "example.com"
    assert normalize_host("[::1]") == "::1"
    assert normalize_host("bücher.de") == "xn--bcher-kva.de"
    with pytest.raises(URLNotAllowedError):
        normalize_host("127.000.0.1")
    with pytest.raises(ValueError):
        make_http_tools([])
    with pytest.raises(ValueError):
        make_http_tools("127.0.0.1")
    with pytest.raises(ValueError):
        make_http_tools(["127.0.0.1"], timeout=0)


def test_schemas_and_descriptions() -> None:
    get, post = tools()
    assert (get.name, post.name, get.is_async, post.is_async) == (
        "http_get",
        "http_post",
        True,
        True,
    )
    assert "127.0.0.1" in get.description
    assert get.parameters["required"] == ["url"]
    assert set(post.parameters["properties"]) == {"url", "json", "headers"}


# ---- ports and headers -----------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("port", ["0", "65536", "70000", "99999999999999"])
async def test_ports_out_of_range_are_tool_errors(port: str) -> None:
    get, _ = tools()
    with pytest.raises(URLNotAllowedError, match=f"port {port} is not in 1..65535"):
        await get.invoke({"url": f"http://127.0.0.1:{port}/json"})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Test": "héllo"},
        {"X-Test": "中文"},
        {"Ünicode": "x"},
        {"X-Test": "a\r\nInjected: yes"},
        {"X-Test": "a\nb"},
        {"X-Test": "nul\x00"},
        {"Bad Name": "x"},
        {"": "x"},
    ],
)
async def test_bad_request_headers_are_tool_errors(server: str, headers: dict) -> None:
    get, post = tools()
    for tool in (get, post):
        with pytest.raises(ToolError, match="header names must be ASCII tokens"):
            await tool.invoke({"url": f"{server}/headers", "headers": headers})


# ---- resolution pinned to the checked address ------------------------------------------------
@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Fake DNS: a name's answers, in order; every lookup is recorded under "calls"."""
    answers: dict[str, list[str]] = {"calls": []}

    async def resolve(host: str, port: int) -> list[str]:
        answers["calls"].append(host)
        if host not in answers:
            raise ToolError(f"cannot resolve host {host!r}")
        return answers[host]

    monkeypatch.setattr(http_module, "resolve_addresses", resolve)
    return answers


@pytest.mark.anyio
async def test_the_connection_goes_to_the_address_that_was_checked(
    server: str, resolver: dict[str, list[str]]
) -> None:
    port = server.rsplit(":", 1)[1]
    resolver["pinned.invalid"] = ["10.1.2.3", "127.0.0.1"]  # the private one is skipped
    get, _ = make_http_tools(["pinned.invalid", "127.0.0.1"])
    result = await get.invoke({"url": f"http://pinned.invalid:{port}/headers"})
    # `.invalid` never resolves for real: the request reached the server at the checked
    # address, with the name in its Host header, after exactly one lookup.
    assert result["body"]["host"] == f"pinned.invalid:{port}"
    assert result["url"] == f"http://pinned.invalid:{port}/headers"
    assert resolver["calls"] == ["pinned.invalid"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["10.0.0.5"],
        ["192.168.1.1", "169.254.169.254"],
        ["::1"],
        ["::ffff:127.0.0.1"],
    ],
)
async def test_a_name_resolving_to_an_address_the_allowlist_refuses_is_refused(
    server: str, resolver: dict[str, list[str]], answers: list[str]
) -> None:
    port = server.rsplit(":", 1)[1]
    resolver["rebind.invalid"] = answers
    get, _ = make_http_tools(["rebind.invalid"])
    with pytest.raises(URLNotAllowedError, match="not a public address"):
        await get.invoke({"url": f"http://rebind.invalid:{port}/json"})


@pytest.mark.anyio
async def test_every_redirect_hop_is_resolved_and_checked(
    server: str, resolver: dict[str, list[str]]
) -> None:
    port = server.rsplit(":", 1)[1]
    resolver["localhost"] = ["10.0.0.7"]  # the redirect's target name now points elsewhere
    get, _ = make_http_tools(["127.0.0.1", "localhost"])
    with pytest.raises(URLNotAllowedError, match=r"'localhost' resolves to 10\.0\.0\.7"):
        await get.invoke({"url": f"http://127.0.0.1:{port}/redirect-away"})
    assert resolver["calls"] == ["localhost"]  # the IP host needed no lookup


@pytest.mark.anyio
async def test_localhost_needs_its_address_on_the_allowlist(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    get, _ = make_http_tools(["localhost"])
    with pytest.raises(URLNotAllowedError, match="not a public address"):
        await get.invoke({"url": f"http://localhost:{port}/json"})
    get, _ = make_http_tools(["localhost", "127.0.0.1"])
    assert (await get.invoke({"url": f"http://localhost:{port}/json"}))["status"] == 200
