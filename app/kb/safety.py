"""Fetching URLs without reaching into private networks (SSRF): every hop vetted after DNS, connected by IP."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

USER_AGENT = "JourneyGuideBot/0.1 (+https://github.com/journey-guide)"
MAX_REDIRECTS = 5


class UnsafeURLError(ValueError):
    """A URL the crawler refuses to fetch: not http(s), or its host resolves to a non-public address."""


class FetchError(RuntimeError):
    """A fetch that failed: network error, too large, too slow or too many redirects."""


def parse_allow_hosts(value: str) -> frozenset[str]:
    """JOURNEY_CRAWL_ALLOW_HOSTS ('a.example, 127.0.0.1') as a set of lower-case host names."""
    return frozenset(h.strip().lower().strip("[]") for h in value.split(",") if h.strip())


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a globally routable unicast address (not private, loopback, link-local, multicast or reserved)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local)


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Vetted:
    """A URL that may be fetched, and the address to connect to."""

    url: str
    host: str
    port: int
    address: str


def vet(url: str, allow_hosts: frozenset[str]) -> Vetted:
    """Check a URL before fetching it: http(s) only, no credentials, and every resolved address public.

    Hosts in allow_hosts are let through whatever they resolve to (an operator's own intranet, tests on localhost).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeURLError(f"only http and https URLs can be fetched: {url}")
    if parts.username or parts.password:
        raise UnsafeURLError(f"URLs with credentials are refused: {parts.hostname}")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeURLError(f"the URL has no host: {url}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURLError(f"bad port in {url}") from exc
    addresses = resolve(host, port)
    if host not in allow_hosts:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address.split("%", 1)[0])):
                raise UnsafeURLError(
                    f"refused: {host} resolves to {address}, a private, loopback, link-local or reserved address "
                    "(allow the host with JOURNEY_CRAWL_ALLOW_HOSTS if you mean it)"
                )
    if not addresses:
        raise FetchError(f"cannot resolve {host}")
    return Vetted(url=url, host=host, port=port, address=addresses[0])


@dataclass
class Fetched:
    """A fetched page: the final URL after redirects, status, content type and body."""

    url: str
    status: int
    content_type: str
    body: bytes
    redirects: list[str]


class SafeFetcher:
    """GET with redirects followed by hand, each hop vetted, connected to the vetted IP, with size and time limits."""

    def __init__(self, *, allow_hosts: frozenset[str], max_bytes: int, timeout: float) -> None:
        self.allow_hosts = allow_hosts
        self.max_bytes = max_bytes
        self.timeout = timeout
        # trust_env=False: no proxy from the environment, so the connection goes to the address vetted here
        self._client = httpx.Client(trust_env=False, follow_redirects=False, headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def get(self, url: str, *, deadline: float | None = None, follow: Callable[[str], bool] | None = None) -> Fetched:
        """Fetch url within `timeout` seconds in all (redirects and a slowly sent body included) and by `deadline`.

        A redirect to a URL `follow` refuses is not requested: the result is that redirect, its target as `url`.
        Raises UnsafeURLError for a refused hop and FetchError for any other failure.
        """
        until = time.monotonic() + self.timeout
        if deadline is not None:
            until = min(until, deadline)
        redirects: list[str] = []
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            vetted = vet(current, self.allow_hosts)
            response_url, status, content_type, body, location = self._once(vetted, until)
            if status in {301, 302, 303, 307, 308} and location:
                current = urlunsplit(urlsplit(urljoin(current, location))._replace(fragment=""))
                redirects.append(current)
                if follow is not None and not follow(current):
                    return Fetched(url=current, status=status, content_type=content_type, body=b"", redirects=redirects)
                continue
            return Fetched(url=response_url, status=status, content_type=content_type, body=body, redirects=redirects)
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url}")

    def _once(self, vetted: Vetted, until: float) -> tuple[str, int, str, bytes, str | None]:
        parts = urlsplit(vetted.url)
        address = f"[{vetted.address}]" if ":" in vetted.address else vetted.address
        default_port = 443 if parts.scheme == "https" else 80
        netloc = address if vetted.port == default_port else f"{address}:{vetted.port}"
        host_header = parts.hostname if vetted.port == default_port else f"{parts.hostname}:{vetted.port}"
        timeout = until - time.monotonic()
        if timeout <= 0:
            raise FetchError(f"{vetted.url}: out of time")
        request = self._client.build_request(
            "GET",
            urlunsplit(parts._replace(netloc=netloc)),
            headers={"Host": host_header or ""},
            timeout=timeout,
            extensions={"sni_hostname": parts.hostname},
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise FetchError(f"{vetted.url}: {exc.__class__.__name__}: {exc}") from exc
        # a read timeout counts per read: a server that sends a byte now and then must still stop at `until`
        cut = threading.Event()
        watchdog = threading.Timer(max(until - time.monotonic(), 0.0), _cut, args=(response, cut))
        watchdog.daemon = True
        watchdog.start()
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"{vetted.url}: {int(declared):,} bytes, over the {self.max_bytes:,}-byte limit")
            chunks, size = [], 0
            if response.status_code < 300:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FetchError(f"{vetted.url}: over the {self.max_bytes:,}-byte limit")
                    if time.monotonic() > until:
                        raise FetchError(f"{vetted.url}: out of time while reading ({self.timeout:g}s per request)")
                    chunks.append(chunk)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            if cut.is_set():
                raise FetchError(f"{vetted.url}: out of time while reading ({self.timeout:g}s per request)") from exc
            raise FetchError(f"{vetted.url}: {exc.__class__.__name__}: {exc}") from exc
        finally:
            watchdog.cancel()
            response.close()
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        return vetted.url, response.status_code, content_type, b"".join(chunks), response.headers.get("location")


def _cut(response: httpx.Response, cut: threading.Event) -> None:
    """Wake a read blocked on the response's socket: the request's time is up."""
    cut.set()
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's shutdown, also under TLS
    except OSError:
        pass
