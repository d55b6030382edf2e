"""The one gate for outbound traffic to user-supplied hosts.

Every connection to a host a user typed in (webhook URL, S3 endpoint, FTP/SFTP/WebDAV host) is
checked against the address the socket actually connected to, so DNS tricks cannot reach the
metadata service or the private network. Private ranges are reachable only when listed in
APERTUR_ALLOWED_PRIVATE_NETWORKS.

Delivery attempts keep their HTTP connections alive in a per-thread session (`kept_outbound_session`), so a
receiver's next delivery skips the TCP and TLS set-up; the check above runs whenever a connection is dialled, and a
kept connection is put under each later attempt's deadline again (docs/destinations.md "How attempts run").
"""

import http.cookiejar
import ipaddress
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from time import monotonic
from typing import Any

import requests
from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool
from botocore.utils import S3RegionRedirectorv2
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from apertur.deadlines import register_socket

USER_AGENT = "Apertur/0.1 (+self-hosted)"

# Beyond `is_global`, CGNAT (100.64/10) is called out by docs/api.md "Host safety"; ipaddress treats it as not
# global too.
_ALWAYS_REFUSED = [ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("100.64.0.0/10")]
# What a refusal calls "private" (loopback and link-local are named by their own tests); anything else outside the
# internet (multicast, unspecified, documentation, IPv6 outside global unicast …) is "reserved".
_PRIVATE = [
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]
# The well-known NAT64 prefix (RFC 6052): a DNS64 network reaches IPv4 hosts through it, so
# 64:ff9b::a9fe:a9fe is 169.254.169.254 in disguise (ipaddress calls it global).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Only global unicast IPv6 is the internet; outside it lie IPv4-compatible (::a.b.c.d), site-local (fec0::/10),
# local-use NAT64 (64:ff9b:1::/48) and other forms that `is_global` does not all catch.
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?")


def is_host_name_or_address(host: str) -> bool:
    """Whether `host` (as `urlsplit(...).hostname` gives it) is an IP address or a host name a lookup can take:
    labels of 1 to 63 characters, non-ASCII ones as IDNA encodes them."""
    if _is_address(host):
        return True
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _HOST_NAME.fullmatch(encoded) is not None


class HostNotAllowed(Exception):
    """The destination resolved to an address outside the public internet and no setting allows it."""


@cache
def _allowed_private_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in settings.APERTUR_ALLOWED_PRIVATE_NETWORKS)


def ensure_address_allowed(address: str, *, host: str | None = None) -> None:
    """Raise HostNotAllowed unless `address` (an IP literal) is public or explicitly allowed.

    `host` is the name the user gave when `address` is what it resolved to: the refusal then names the host and
    the kind of address only, never the address, so error messages cannot be used to map internal DNS.
    """
    ip = _reached_address(_parsed_address(address))
    if any(ip in network for network in _allowed_private_networks()):
        return
    kind = _kind_outside_internet(ip)
    if kind is None:
        return
    hint = "allow it with APERTUR_ALLOWED_PRIVATE_NETWORKS"
    if host is not None and not _is_address(host):
        raise HostNotAllowed(f"{host} resolves to a {kind} address; {hint}")
    raise HostNotAllowed(f"{host or address} is a {kind} address; {hint}")


def _parsed_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(address.split("%", 1)[0])


def _is_address(host: str) -> bool:
    try:
        _parsed_address(host)
    except ValueError:
        return False
    return True


def _kind_outside_internet(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """None for an address on the public internet; otherwise what a refusal calls it."""
    outside_internet = isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6
    if ip.is_global and not ip.is_multicast and not outside_internet and not any(ip in n for n in _ALWAYS_REFUSED):
        return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if any(ip in network for network in _PRIVATE):
        return "private"
    return "reserved"


def _reached_address(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 address really reaches when it embeds one (mapped, 6to4, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def ensure_host_allowed(host: str, port: int) -> str:
    """Resolve `host`, check every address, and return the first: the one to connect to.

    For protocols whose library owns the socket (FTP, SFTP), connect to the returned address.
    """
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:
        raise HostNotAllowed(f"cannot resolve {host}: {error.strerror}") from error
    except (UnicodeError, ValueError) as error:
        # The IDNA codec refuses a label that is empty or longer than 63 characters ("a..b"); no lookup can succeed.
        raise HostNotAllowed(f"{host} is not a valid host name") from error
    for info in infos:
        ensure_address_allowed(info[4][0], host=host)
    return infos[0][4][0]


def check_connected_socket(sock: socket.socket, *, host: str | None = None) -> socket.socket:
    """Close `sock` and raise HostNotAllowed unless its peer is allowed; `host` as for ensure_address_allowed."""
    try:
        ensure_address_allowed(sock.getpeername()[0], host=host)
    except HostNotAllowed:
        sock.close()
        raise
    return sock


class _DeadlineMixin:
    """Every socket a connection uses is put under the attempt's deadline (apertur/deadlines.py): the one `connect`
    leaves (for HTTPS, the TLS socket: wrapping detaches the plain one), and, for a kept-alive connection that a
    later attempt reuses, the same socket again at each request."""

    def connect(self) -> None:
        super().connect()
        register_socket(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:
            register_socket(self.sock)
        return super().request(*args, **kwargs)


class _GuardedMixin(_DeadlineMixin):
    def _new_conn(self) -> socket.socket:
        # Connect only to an address that passed the check (checking after connecting would let a refused
        # destination probe which private ports are open), then check the socket's peer once more.
        # urllib3 derives `host` from `_dns_host`, and `host` is the TLS server name and certificate check and the
        # Host header of later requests on this connection: the checked address stands in only while dialling.
        host = self._dns_host
        self._dns_host = ensure_host_allowed(host, self.port)
        try:
            sock = super()._new_conn()
        finally:
            self._dns_host = host
        # (A TLS handshake is not under the deadline: wrapping detaches this socket first. The connect timeout
        # bounds it.)
        return register_socket(check_connected_socket(sock, host=host))


class _DeadlineOnlyMixin(_DeadlineMixin):
    """For hosts the operator configured (OAuth providers' endpoints), not a user: no address check, but the
    attempt's total deadline still applies."""

    def _new_conn(self) -> socket.socket:
        return register_socket(super()._new_conn())


def _pool_classes(kind: str, mixin: type, http_pool: type, https_pool: type) -> dict[str, type]:
    """urllib3 pool classes (by scheme) whose connections carry `mixin`, e.g. GuardedHTTPSConnectionPool."""
    return {
        scheme: type(
            f"{kind}{pool.__name__}",
            (pool,),
            {"ConnectionCls": type(f"{kind}{pool.ConnectionCls.__name__}", (mixin, pool.ConnectionCls), {})},
        )
        for scheme, pool in (("http", http_pool), ("https", https_pool))
    }


GUARDED_POOLS = _pool_classes("Guarded", _GuardedMixin, HTTPConnectionPool, HTTPSConnectionPool)
PROVIDER_POOLS = _pool_classes("Provider", _DeadlineOnlyMixin, HTTPConnectionPool, HTTPSConnectionPool)
GUARDED_AWS_POOLS = _pool_classes("Guarded", _GuardedMixin, AWSHTTPConnectionPool, AWSHTTPSConnectionPool)


class _PoolsAdapter(HTTPAdapter):
    pools: dict[str, type]

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self.pools)


class GuardedAdapter(_PoolsAdapter):
    pools = GUARDED_POOLS


class ProviderAdapter(_PoolsAdapter):
    pools = PROVIDER_POOLS


def _session(adapter: HTTPAdapter) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    if settings.APERTUR_OUTBOUND_CA_BUNDLE:  # receivers behind a private CA; verification is never switched off
        session.verify = settings.APERTUR_OUTBOUND_CA_BUNDLE
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def outbound_session() -> requests.Session:
    """A requests session for user-supplied URLs: guarded sockets, no proxies from the environment. Callers close
    it; for delivery attempts, see `kept_outbound_session`."""
    return _session(GuardedAdapter())


# Receivers one delivery thread keeps a connection to (urllib3 closes the least recently used pool beyond it); one
# connection each, as a thread sends one request at a time.
KEPT_POOLS_PER_THREAD = 16
# A thread's kept session unused for longer is closed and replaced by a new one at its next use.
KEPT_IDLE_SECONDS = 30


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Stores no cookie and sends none: a kept session serves every tenant's destinations in its thread, so one
    receiver's Set-Cookie must never reach another destination, or a later attempt."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


_kept = threading.local()


def kept_outbound_session() -> requests.Session:
    """This thread's outbound session, kept open across delivery attempts so that connections are reused.

    Shared by every destination a delivery thread serves, so it holds no per-destination state: no cookies
    (`_NoCookies`), and callers pass credentials and headers per request and never change the session. Connections
    are pooled by scheme, host name, port and TLS settings, so a kept connection only serves the host it was dialled
    and checked for; a new host is dialled and checked as always. urllib3 drops a connection that failed and checks
    a kept one on checkout (`is_connection_dropped`), so a socket the deadline shut down is never reused. A response
    goes back to the pool only once its body has been read to the end: read a short body, or close the response.
    """
    session = getattr(_kept, "session", None)
    now = monotonic()
    if session is not None and now - _kept.used_at > KEPT_IDLE_SECONDS:
        # Connections idle this long are dropped rather than trusted: a firewall or NAT may have forgotten them
        # without a word, and a request on one would wait out its whole timeout.
        session.close()
        session = None
    if session is None:
        session = _session(GuardedAdapter(pool_connections=KEPT_POOLS_PER_THREAD, pool_maxsize=1))
        session.cookies.set_policy(_NoCookies())
        _kept.session = session
    _kept.used_at = now
    # Read at each use: requests keys its pools by the CA bundle, so a connection verified against one bundle is
    # never reused under another.
    session.verify = settings.APERTUR_OUTBOUND_CA_BUNDLE or True
    return session


@contextmanager
def attempt_session(*, kept: bool) -> Iterator[requests.Session]:
    """The session for one attempt: this thread's kept session (left open) when `kept`, else a fresh
    `outbound_session()`, closed at the end (destination tests, scripts)."""
    if kept:
        yield kept_outbound_session()
        return
    with outbound_session() as session:
        yield session


def token_endpoint_session() -> requests.Session:
    """A requests session for an OAuth provider's token endpoint: under no attempt deadline (a refresh cut half-way
    can lose a rotated refresh token), so callers give it its own timeout and start it only with time to spare."""
    return _session(HTTPAdapter())


def provider_session() -> requests.Session:
    """A requests session for the endpoints of a provider the operator configured (OAuth token endpoints, cloud
    APIs): not a user's host, so no address check; the attempt's deadline still applies."""
    return _session(ProviderAdapter())


def guard_botocore_client(client: Any) -> Any:
    """Make a boto3 client's sockets pass the same check (botocore pools are urllib3 pools), and stop it
    following S3 redirects.

    botocore keeps the pool-class dict it hands to its PoolManager; updating it in place swaps
    the connection classes for every pool the client opens afterwards.
    """
    client._endpoint.http_session._pool_classes_by_scheme.update(GUARDED_AWS_POOLS)
    _stop_following_s3_redirects(client)
    return client


def _stop_following_s3_redirects(client: Any) -> None:
    """Remove botocore's S3 region redirector from this client.

    On a 301/302/307 (or an error naming another region) it re-sends the request to where the answer points,
    and when the answer names no region it first sends HeadBucket, whose own redirect it handles the same way:
    an endpoint answering everything with 307 got 80 requests and a RecursionError out of one upload. Like every
    outbound call here, S3 gets one request per attempt and no redirects; the 3xx then reaches the backend as an
    ordinary error response. botocore has no setting for this, and the redirector lives only as bound methods in
    the client's own event emitter (each client has its own copy), so they are looked up there.
    """
    events, event = client.meta.events, "needs-retry.s3"
    for handler in list(events._emitter._handlers.prefix_search(event)):
        if isinstance(getattr(handler, "__self__", None), S3RegionRedirectorv2):
            events.unregister(event, handler)
