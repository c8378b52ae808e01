"""HTTP tools (http_get, http_post) that reach only allowlisted hosts.

Every URL, including every redirect target, must be http(s), carry no credentials, name a
port in 1..65535 (or none), and name a host on the allowlist exactly; numeric hosts must be
canonical IP addresses (no `2130706433` or `0x7f.1`). Redirects are followed by hand so each
hop is checked. Each request has an overall deadline, and the response body is capped while it
streams in. Request headers must be ASCII tokens with printable ASCII values.

A host name is resolved once per hop, and the request goes to the address that was checked
(TLS still verifies the certificate for the name): DNS that answers differently the second
time (rebinding) cannot redirect the connection. An allowlisted name may only resolve to public
addresses, or to addresses on the allowlist themselves: `localhost` or a name that resolves to
10.0.0.5 is refused unless `127.0.0.1` or `10.0.0.5` is listed too.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import re
import socket
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from asynclm.tooling import Tool, ToolError, ToolTimeoutError, tool

__all__ = [
    "HttpPolicy",
    "ResponseTooLargeError",
    "URLNotAllowedError",
    "make_http_tools",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RESULT_HEADERS = ("content-type", "content-length", "location", "date", "last-modified")
REFUSED_REQUEST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
TEXT_TYPES = frozenset(
    {"application/xml", "application/javascript", "application/x-www-form-urlencoded"}
)
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*$", re.IGNORECASE)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")  # printable ASCII, no CR or LF
_NO_BODY: Any = object()


class URLNotAllowedError(ToolError, ValueError):
    """A URL is malformed or points to a host outside the allowlist."""


class ResponseTooLargeError(ToolError):
    """A response body is larger than the size cap."""


def normalize_host(host: str) -> str:
    """The form hosts are compared in: lower case, IDNA-encoded, no brackets or final dot.

    Args:
        host: A host name or IP address.

    Returns:
        The normalized host.

    Raises:
        URLNotAllowedError: A numeric host that is not a canonical IP address.
    """
    name = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    with contextlib.suppress(UnicodeError):  # leave names the IDNA codec rejects as they are
        name = name.encode("idna").decode("ascii")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if _NUMERIC_HOST.match(name):
            raise URLNotAllowedError(f"{host!r} is not a canonical IP address") from None
        return name
    if str(address) != name:
        raise URLNotAllowedError(f"{host!r} is not a canonical IP address (use {address})")
    return name


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """What the HTTP tools may do.

    Attributes:
        allow_hosts: Normalized host names or IP addresses that may be contacted.
        timeout: Seconds a whole request (redirects and body included) may take.
        max_bytes: Largest response body accepted.
        max_redirects: Most redirects followed per request.
    """

    allow_hosts: frozenset[str]
    timeout: float = 10.0
    max_bytes: int = 1_000_000
    max_redirects: int = 5

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """Parses a URL and checks it against the policy.

        Args:
            url: The URL.

        Returns:
            The parsed URL.

        Raises:
            URLNotAllowedError: With the reason.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise URLNotAllowedError(f"invalid URL {str(url)!r}: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise URLNotAllowedError(f"{url}: only http and https URLs are allowed")
        if parsed.userinfo:
            raise URLNotAllowedError(f"{url}: credentials (user@host) are not allowed in URLs")
        if not parsed.host:
            raise URLNotAllowedError(f"{url}: the URL has no host")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise URLNotAllowedError(f"{url}: port {parsed.port} is not in 1..65535")
        if normalize_host(parsed.host) not in self.allow_hosts:
            allowed = ", ".join(sorted(self.allow_hosts))
            raise URLNotAllowedError(f"host {parsed.host!r} is not allowed (allowed: {allowed})")
        return parsed

    def allows_address(self, address: str) -> bool:
        """Whether an allowlisted name may resolve to `address`: a public address, or one on
        the allowlist itself."""
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return str(ip) in self.allow_hosts or (ip.is_global and not ip.is_multicast)

    async def pinned_address(self, url: httpx.URL) -> str:
        """The address to connect to for a checked URL: resolved once, checked.

        Raises:
            URLNotAllowedError: The name resolves to no address the policy allows.
            ToolError: The name does not resolve.
        """
        host = normalize_host(url.host)
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(host))  # an allowlisted address: no lookup
        addresses = await resolve_addresses(host, url.port or _DEFAULT_PORTS[url.scheme])
        for address in addresses:
            if self.allows_address(address):
                return address
        raise URLNotAllowedError(
            f"host {url.host!r} resolves to {', '.join(addresses)}, which is not a public "
            "address; list the address itself in allow_hosts to allow it"
        )


_DEFAULT_PORTS = {"http": 80, "https": 443}


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The addresses a host name resolves to, in the resolver's order (no duplicates).

    Raises:
        ToolError: The name does not resolve.
    """
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ToolError(f"cannot resolve host {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def make_http_tools(
    allow_hosts: Collection[str],
    *,
    timeout: float = 10.0,
    max_bytes: int = 1_000_000,
    max_redirects: int = 5,
) -> list[Tool]:
    """HTTP GET and POST tools limited to the given hosts.

    Args:
        allow_hosts: Host names or IP addresses that may be contacted (any port).
        timeout: Seconds a whole request may take.
        max_bytes: Largest response body accepted (checked while streaming).
        max_redirects: Most redirects followed per request.

    Returns:
        `[http_get, http_post]`. Each returns `{"status", "url", "headers", "body"}`; the body
        is parsed JSON when the response is JSON, else text.

    Raises:
        ValueError: Empty allowlist, a malformed host, or non-positive limits.
    """
    if isinstance(allow_hosts, str) or not allow_hosts:
        raise ValueError("allow_hosts must be a non-empty collection of host names")
    if timeout <= 0 or max_bytes <= 0 or max_redirects < 0:
        raise ValueError("timeout and max_bytes must be positive, max_redirects non-negative")
    hosts = frozenset(normalize_host(host) for host in allow_hosts)
    policy = HttpPolicy(hosts, timeout, max_bytes, max_redirects)
    return [_get_tool(policy), _post_tool(policy)]


def _get_tool(policy: HttpPolicy) -> Tool:
    allowed = ", ".join(sorted(policy.allow_hosts))

    @tool(description=f"Sends an HTTP GET request. Only these hosts are reachable: {allowed}.")
    async def http_get(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Sends an HTTP GET request.

        Args:
            url: The http(s) URL.
            headers: Extra request headers.
        """
        return await _request(policy, "http_get", "GET", url, _NO_BODY, headers)

    return http_get


def _post_tool(policy: HttpPolicy) -> Tool:
    allowed = ", ".join(sorted(policy.allow_hosts))

    @tool(description=f"Sends an HTTP POST request. Only these hosts are reachable: {allowed}.")
    async def http_post(
        url: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Sends an HTTP POST request.

        Args:
            url: The http(s) URL.
            json: The JSON request body; none when omitted.
            headers: Extra request headers.
        """
        return await _request(
            policy, "http_post", "POST", url, _NO_BODY if json is None else json, headers
        )

    return http_post


async def _request(
    policy: HttpPolicy,
    tool_name: str,
    method: str,
    url: str,
    body: Any,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    target = policy.check_url(url)
    request_headers = _request_headers(headers)
    try:
        with anyio.fail_after(policy.timeout):
            async with httpx.AsyncClient(
                timeout=policy.timeout,
                follow_redirects=False,
                trust_env=False,  # no proxies or .netrc from the environment
                verify=_ssl_context(),
            ) as client:
                return await _follow(client, policy, method, target, body, request_headers)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ToolTimeoutError(tool_name, policy.timeout) from exc
    except httpx.HTTPError as exc:
        raise ToolError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context loads the CA bundle (tens of ms): do it once, not per request.
    return httpx.create_ssl_context()


def _request_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    headers = dict(headers or {})
    bad = [
        f"{name!r}: {value!r}"
        for name, value in headers.items()
        if not (isinstance(name, str) and _HEADER_NAME.fullmatch(name))
        or not (isinstance(value, str) and _HEADER_VALUE.fullmatch(value))
    ]
    if bad:
        raise ToolError(
            "header names must be ASCII tokens and values printable ASCII (no line breaks): "
            + ", ".join(bad[:5])
        )
    refused = sorted(name for name in headers if name.lower() in REFUSED_REQUEST_HEADERS)
    if refused:
        raise ToolError(f"these request headers cannot be set: {', '.join(refused)}")
    # Uncompressed bodies: the size cap then bounds memory (no decompression bombs).
    return {"accept-encoding": "identity", **headers}


async def _follow(
    client: httpx.AsyncClient,
    policy: HttpPolicy,
    method: str,
    url: httpx.URL,
    body: Any,
    headers: dict[str, str],
) -> dict[str, Any]:
    for _ in range(policy.max_redirects + 1):
        request = await _pinned_request(client, policy, method, url, body, headers)
        response = await client.send(request, stream=True)
        try:
            location = response.headers.get("location")
            if response.status_code not in REDIRECT_STATUSES or location is None:
                return _result(response, url, await _read_capped(response, policy.max_bytes))
        finally:
            await response.aclose()
        next_url = policy.check_url(url.join(location))
        method, body = _redirected_method(response.status_code, method, body)
        if next_url.host != url.host:
            headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        url = next_url
    raise ToolError(f"too many redirects (more than {policy.max_redirects})")


async def _pinned_request(
    client: httpx.AsyncClient,
    policy: HttpPolicy,
    method: str,
    url: httpx.URL,
    body: Any,
    headers: dict[str, str],
) -> httpx.Request:
    """A request for `url` sent to the address the policy checked, not resolved again.

    The Host header and TLS (SNI and certificate name) keep the URL's host name.
    """
    address = await policy.pinned_address(url)
    host_header = url.netloc.decode("ascii")
    pinned = url.copy_with(host=address)
    return client.build_request(
        method,
        pinned,
        headers={**headers, "host": host_header},
        extensions={"sni_hostname": url.host},
        **({} if body is _NO_BODY else {"json": body}),
    )


def _redirected_method(status: int, method: str, body: Any) -> tuple[str, Any]:
    # 307/308 repeat the request as is; 303 (and, by browser custom, 301/302 after a POST)
    # turn it into a GET without a body.
    if status in (307, 308) or method == "GET":
        return method, body
    return "GET", _NO_BODY


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLargeError(
            f"response body is {declared} bytes, over the {max_bytes}-byte limit"
        )
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLargeError(f"response body is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _result(response: httpx.Response, url: httpx.URL, content: bytes) -> dict[str, Any]:
    headers = {name: response.headers[name] for name in RESULT_HEADERS if name in response.headers}
    return {
        "status": response.status_code,
        "url": str(url),
        "headers": headers,
        "body": _body(response, content),
    }


def _body(response: httpx.Response, content: bytes) -> Any:
    mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = mime == "application/json" or mime.endswith("+json")
    if mime and not (is_json or _is_text(mime)):
        return f"<{len(content)} bytes of {mime}>"
    text = _decode(content, response.charset_encoding)
    if is_json:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith("+xml")


def _decode(content: bytes, charset: str | None) -> str:
    try:
        return content.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return content.decode("utf-8", errors="replace")
