"""Property tests (hypothesis) of the HTTP layer over whatever a client can put in Accept, Accept-Encoding,
Authorization and the request target: the status is never 500, the header names and Content-Type values come
from a fixed set, never from the client's text. A real server on loopback, in this process."""

import base64
import gzip
import re
import socket

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge

from sockdiag_exporter.web import Server
from sockdiag_exporter.webapp import HTML, OPENMETRICS, PLAIN, TEXT, App, choose_format, wants_gzip
from sockdiag_exporter.webconfig import WebSecurity

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4))
CONTENT_TYPES = {TEXT.content_type, OPENMETRICS.content_type, HTML, PLAIN}
HEADERS = {"content-type", "content-length", "date", "server", "content-encoding", "www-authenticate", "allow",
           "connection", "retry-after", "x-frame-options"}
STATUSES = {200, 400, 401, 404, 405, 414, 429, 431, 501}
FIELD = st.text(st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=300)
TOKEN = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=200)


@pytest.fixture(scope="module")
def port():
    registry = CollectorRegistry()
    Gauge("sockdiag_sockets", "A stand-in.", ["family"], registry=registry).labels("inet").set(3)
    security = WebSecurity(users={"alice": HASH}, excluded_paths=("/",), headers={"X-Frame-Options": "deny"})
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = Server(f"127.0.0.1:{free}", App(registry, "/metrics"), security=security)
    server.start()
    yield server.socket.getsockname()[1]
    server.shutdown()
    server.server_close()


def exchange(port, request: bytes):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: s.recv(65536), b""))
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def check(port, request: bytes):
    status, headers, body = exchange(port, request)  # the client half-closes: it is answered all the same
    assert status in STATUSES, (status, request)
    assert set(headers) <= HEADERS, (set(headers) - HEADERS, request)
    assert headers["content-type"] in CONTENT_TYPES, (headers["content-type"], request)
    assert headers.get("content-encoding", "gzip") == "gzip"
    return status, headers, body


def request(target="/metrics", accept="", encoding="", authorization="") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: x", f"Accept: {accept}", f"Accept-Encoding: {encoding}",
             f"Authorization: {authorization}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


GOOD = "Basic " + base64.b64encode(b"alice:s3cret").decode()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(accept=FIELD, encoding=FIELD)
def test_any_accept_and_accept_encoding(port, accept, encoding):
    status, headers, body = check(port, request(accept=accept, encoding=encoding, authorization=GOOD))
    if status == 200:
        fmt = choose_format(accept.strip())
        assert headers["content-type"] == fmt.content_type
        assert ("content-encoding" in headers) == wants_gzip(encoding.strip())
        if "content-encoding" in headers:
            body = gzip.decompress(body)
        assert b"sockdiag_sockets" in body


@SETTINGS
@given(authorization=FIELD, scheme=st.sampled_from(["Basic", "basic", "BASIC", "Bearer"]), user=FIELD,
       password=FIELD)
def test_any_authorization(port, authorization, scheme, user, password):
    status, headers, _ = check(port, request(authorization=authorization))
    assert status in (200, 400, 401) and (status != 200 or authorization.strip() == GOOD)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, headers, _ = check(port, request(authorization=f"{scheme} {token}"))
    assert status == 401 and headers["www-authenticate"].startswith("Basic")


@SETTINGS
@given(target=TOKEN, absolute=st.booleans())
def test_any_request_target(port, target, absolute):
    status, headers, _ = check(port, request(target=("http://x" if absolute else "") + target, authorization=GOOD))
    if status == 200:
        path = re.sub(r"^[^/?#]*", "", target) or "/" if absolute else target  # after the authority
        assert path.split("?")[0] in ("/", "/metrics") or path.startswith("?")


def test_case_insensitive_scheme_and_name_filter(port):
    for scheme in ("basic", "BASIC", "bAsIc"):
        status, _, body = check(port, request(authorization=GOOD.replace("Basic", scheme)))
        assert status == 200 and b"sockdiag_sockets" in body
    status, _, body = check(port, request("/metrics?name[]=nothing_here", authorization=GOOD))
    assert status == 200 and body == b""
    status, _, body = check(port, request("http://x/metrics?name[]=sockdiag_sockets", authorization=GOOD))
    assert status == 200 and b'sockdiag_sockets{family="inet"} 3.0' in body and b"process_" not in body
