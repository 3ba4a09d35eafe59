"""TLS, client certificates, basic auth, headers, rate limits and HTTP hardening, against the real daemon."""

import asyncio
import http.client
import socket
import ssl
import subprocess
import sys
import time

import bcrypt
import pytest

from helpers import PORT

from sockdiag_exporter.config import ConfigError
from sockdiag_exporter.webauth import Authenticator, ClientRateLimiter, RateLimiter
from sockdiag_exporter.webconfig import load


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1, and two client certificates (SAN scraper.example / other)."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=test CA", cwd=d)
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:scraper.example"),
                      ("other", "DNS:other.example")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


def client_context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


def basic(user, password):
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)


def write(tmp_path, text):
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def test_tls_and_basic_auth_like_exporter_toolkit(daemon, pki, tmp_path):
    """The exporter-toolkit's own example layout: TLS plus bcrypt users plus excluded paths."""
    web = write(tmp_path, f"""
tls_server_config:
  cert_file: {pki}/server.crt
  key_file: {pki}/server.key
basic_auth_users:
  alice: {HASH}
basic_auth_excluded_paths:
- /
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
""")
    d = daemon(f"--web.config.file={web}", tls=client_context(pki))
    status, headers, body = d.get("/metrics", basic("alice", "s3cret"))
    assert status == 200 and b"sockdiag_sockets" in body
    assert headers["X-Frame-Options"] == "deny" and headers["Strict-Transport-Security"] == "max-age=31536000"
    for wrong in (basic("alice", "nope"), basic("mallory", "s3cret"), {"Authorization": "Basic !!!"}, {}):
        status, headers, _ = d.get("/metrics", wrong)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert d.get("/")[0] == 200  # excluded from auth
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
        d.request("GET", "/", tls=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # untrusted: verification fails

    def plain():
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
        conn.request("GET", "/metrics")
        return conn.getresponse().status

    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        d.ns.run(plain)  # no plain HTTP on a TLS port


def test_client_certificates_and_allowed_sans(daemon, pki, tmp_path):
    web = write(tmp_path, f"""
tls_server_config:
  cert_file: {pki}/server.crt
  key_file: {pki}/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki}/ca.crt
  client_allowed_sans: [scraper.example]
  min_version: TLS12
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]
  curve_preferences: [CurveP256]
""")
    d = daemon(f"--web.config.file={web}", tls=client_context(pki, "client"))
    assert d.get("/metrics")[0] == 200
    for context in (client_context(pki), client_context(pki, "other")):  # no certificate; a SAN not allowed
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
            d.request("GET", "/metrics", tls=context)


BAD_WEB_CONFIGS = [
    ("nonsense: 1\n", "nonsense: unknown key"),
    ("tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n", "cannot load the certificate and key"),
    ("tls_server_config:\n  key_file: {pki}/server.key\n", "cert_file (or cert) is required"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  min_version: TLS14\n",
     "min_version: 'TLS14' is not one of"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  cipher_suites: [TLS_INVENTED_CIPHER]\n", "'TLS_INVENTED_CIPHER' is not a known cipher suite"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  curve_preferences: [CurveP999]\n", "'CurveP999' is not one of"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  client_auth_type: Maybe\n",
     "client_auth_type: 'Maybe' is not one of"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  min_version: TLS13\n  max_version: TLS12\n", "min_version is above max_version"),
    ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: always\n", "'always' is not one of deny, sameorigin"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "X-Powered-By: not one of"),
    ("rate_limit:\n  interval: soon\n  burst: 1\n", "'soon' is not a duration"),
    ("tls_server_config: [\n", "invalid YAML"),
    ('tls_server_config:\n  cert_file: ""\n  key_file: ""\n', "cert_file (or cert) is required"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n", "HTTP/2 (http_server_config.http2, on by default)"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  client_auth_type: RequireAnyClientCert\n", "Python's ssl verifies every client certificate"),
]


@pytest.mark.parametrize("text,message", BAD_WEB_CONFIGS, ids=[m.split(":")[0][:30] for _, m in BAD_WEB_CONFIGS])
def test_bad_web_config_is_one_line_and_exit_2(pki, tmp_path, text, message):
    web = write(tmp_path, text.replace("{pki}", str(pki)))
    result = subprocess.run([sys.executable, "-m", "sockdiag_exporter", f"--web.config.file={web}",
                             "--config.check"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_documented_keys_are_accepted(pki, tmp_path):
    """Every key of the exporter-toolkit documentation, in its documented form."""
    web = write(tmp_path, f"""
tls_server_config:
  cert: |
{''.join('    ' + line for line in (pki / 'server.crt').read_text().splitlines(True))}
  key: |
{''.join('    ' + line for line in (pki / 'server.key').read_text().splitlines(True))}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: ca.crt
  min_version: TLS12
  max_version: TLS13
  cipher_suites:
    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    - TLS_AES_128_GCM_SHA256
  prefer_server_cipher_suites: false
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: false
  headers:
    Content-Security-Policy: default-src 'self'
    X-XSS-Protection: "1; mode=block"
basic_auth_users:
  bob: {HASH}
rate_limit:
  interval: 100ms
  burst: 10
""")
    (tmp_path / "ca.crt").write_text((pki / "ca.crt").read_text())  # relative to the web config file
    security = load(str(web))
    assert security.tls is not None and security.users and security.rate_burst == 10
    assert security.headers["X-XSS-Protection"] == "1; mode=block"


def test_exporter_toolkit_test_data_forms_are_accepted(pki, tmp_path):
    """Forms from exporter-toolkit's own good test files: a number as a header value, rate_limit with interval 0
    (off) and burst 0, RequestClientCert and VerifyClientCertIfGiven without a CA, HTTP/2 cipher rule off with
    http2: false."""
    for text in (
        "http_server_config:\n  headers:\n    X-XSS-Protection: 1\n",
        "rate_limit:\n  interval: 0\n  burst: 0\n",
        'rate_limit:\n  interval: "1s"\n  burst: 0\n',
        f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
        "  client_auth_type: VerifyClientCertIfGiven\n",
        f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
        "  client_auth_type: RequestClientCert\n",
        f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n  max_version: TLS12\n"
        "http_server_config:\n  http2: false\n",
    ):
        load(str(write(tmp_path, text)))
    assert load(str(write(tmp_path, "http_server_config:\n  headers:\n    X-XSS-Protection: 1\n"))) \
        .headers["X-XSS-Protection"] == "1"


def test_reload_with_a_bad_web_config_keeps_the_old_one(daemon, tmp_path):
    web = write(tmp_path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    d = daemon(f"--web.config.file={web}")
    assert d.get("/")[1]["X-Frame-Options"] == "deny"
    web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n")
    d.proc.send_signal(__import__("signal").SIGHUP)
    time.sleep(0.5)
    assert d.get("/")[1]["X-Frame-Options"] == "sameorigin"
    web.write_text("basic_auth_users:\n  alice: not-a-hash\n")
    d.proc.send_signal(__import__("signal").SIGHUP)
    time.sleep(0.5)
    status, headers, _ = d.get("/metrics")
    assert status == 200 and headers["X-Frame-Options"] == "sameorigin"
    _, stderr = d.stop()
    assert sum("reload refused" in line for line in stderr.splitlines()) == 1


def raw_exchange(ns, payload: bytes, timeout=5.0) -> bytes:
    def work():
        with socket.create_connection(("127.0.0.1", PORT), timeout=timeout) as s:
            s.sendall(payload)
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)

    return ns.run(work)


def test_oversized_and_malformed_requests_get_short_answers(daemon):
    d = daemon()
    huge_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_exchange(d.ns, huge_header).startswith(b"HTTP/1.1 431 ")
    long_line = b"GET /" + b"m" * 20000 + b" HTTP/1.1\r\n\r\n"
    assert raw_exchange(d.ns, long_line).split(b" ")[1] in (b"414", b"431")
    garbage = raw_exchange(d.ns, b"\x16\x03\x01 not http at all\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ") and b"<html" not in garbage.lower()
    assert raw_exchange(d.ns, b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    _, stderr = d.stop()
    assert "Traceback" not in stderr


def test_protocol_rules(daemon):
    """HTTP/0.9 closed without an answer; 1.1 without Host 400; absolute-form served by its path; 1.0 closed
    (announced); Accept-Encoding by q-value; an unknown or malformed version in Accept is text, not a 500."""
    d = daemon()
    assert raw_exchange(d.ns, b"GET /metrics\r\n") == b""
    assert raw_exchange(d.ns, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    answer = raw_exchange(d.ns, b"GET http://x/metrics?name[]=sockdiag_build_info HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.split(b"\r\n\r\n")[1].count(b"\n") == 3
    answer = raw_exchange(d.ns, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")  # read until the close
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in answer
    for encoding, gzipped in (("gzip;q=0", False), ("identity", False), ("*", True), ("gzip;q=0.5", True),
                              ("*;q=1, gzip;q=0", False), ("GZIP", True)):
        headers = d.get("/metrics", {"Accept-Encoding": encoding})[1]
        assert (headers.get("Content-Encoding") == "gzip") == gzipped, encoding
    for accept in ("application/openmetrics-text; version=9.9.9", "text/plain; version=abc", ";;;", "a/b;q=x"):
        status, headers, _ = d.get("/metrics", {"Accept": accept})
        assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8", accept
    _, stderr = d.stop()
    assert "Traceback" not in stderr and "level=error" not in stderr


def test_slow_clients_are_cut_off_and_idle_connections_do_not_block_a_scrape(daemon, tmp_path):
    config = tmp_path / "c.yml"
    config.write_text("web: {read_timeout_seconds: 1}\n")
    d = daemon(f"--config.file={config}")

    def hold(n):  # from 10 addresses: one address may hold max_connections_per_client (32) at most
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=5, source_address=(f"127.0.0.{2 + i % 10}", 0))
            s.sendall(b"GET /metr")  # slowloris: a request that never ends
            socks.append(s)
        return socks

    idle = d.ns.run(hold, 200)
    try:
        started = time.monotonic()
        assert d.get("/metrics")[0] == 200  # 200 idle connections do not stop a scrape
        assert time.monotonic() - started < 5
        time.sleep(1.5)
        closed = sum(1 for s in idle if s.recv(1024, socket.MSG_DONTWAIT) is not None)
        assert closed == 200  # the read timeout cut every slow client off (recv saw data or EOF)
    finally:
        for s in idle:
            s.close()


def test_a_full_table_closes_idle_keepalive_first_then_the_oldest_unfinished_request(daemon, tmp_path):
    """max_connections 3: B and C never finish a request head, A finished one and idles in keep-alive. A newcomer
    closes A (idle first, though youngest); with E unfinished too, the next newcomer closes B (the oldest
    unfinished); C stays."""
    config = tmp_path / "c.yml"
    config.write_text("web: {max_connections: 3, read_timeout_seconds: 30, idle_timeout_seconds: 30}\n")
    d = daemon(f"--config.file={config}")

    def connect():
        return socket.create_connection(("127.0.0.1", PORT), timeout=5)

    def closed(s):
        try:
            s.settimeout(2)
            return s.recv(65536) in (b"",) or closed(s)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def work():
        b, c = connect(), connect()
        b.sendall(b"GET /metr")
        c.sendall(b"GET /metr")
        time.sleep(0.1)
        a = connect()
        a.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert a.recv(65536).startswith(b"HTTP/1.1 200 ")  # A is now an idle keep-alive connection
        e = None
        try:
            for expect_closed in (a, b):
                if expect_closed is b:
                    e = connect()  # the table full again
                    e.sendall(b"GET /metr")
                with connect() as newcomer:  # served, then closed by the server: its slot is free again at EOF
                    newcomer.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = b"".join(iter(lambda: newcomer.recv(65536), b""))
                assert answer.startswith(b"HTTP/1.1 200 ")
                assert closed(expect_closed)
            c.settimeout(0.5)
            with pytest.raises(socket.timeout):
                c.recv(1)  # still open, still waiting for the rest of its request
        finally:
            for s in (a, b, c, e):
                if s is not None:
                    s.close()

    d.ns.run(work)


def test_rate_limit_answers_429(daemon, tmp_path):
    web = write(tmp_path, "rate_limit:\n  interval: 1m\n  burst: 2\n")
    d = daemon(f"--web.config.file={web}")  # the start-up probe used one token
    statuses = [d.get("/")[0] for _ in range(3)]
    assert statuses.count(429) >= 2 and statuses[-1] == 429


def test_authenticator_remembers_and_rejects_cleanly():
    auth = Authenticator({"alice": HASH.encode()})
    check = lambda header: asyncio.run(auth.check(header))  # noqa: E731
    header = basic("alice", "s3cret")["Authorization"]
    assert check(header) and check(header)
    assert check(header.replace("Basic", "basic")) and check(header.replace("Basic", "BASIC"))  # RFC 7617
    assert not check(basic("alice", "x" * 100)["Authorization"])  # beyond bcrypt's 72 bytes: no error
    assert not check(basic("mallory", "s3cret")["Authorization"])
    assert not check("Bearer abc") and not check(None) and not check("Basic !!!")
    auth.close()


def test_rate_limiter_refills():
    now = [0.0]
    limiter = RateLimiter(1.0, 2, clock=lambda: now[0])
    assert limiter.allow() and limiter.allow() and not limiter.allow()
    now[0] = 1.0
    assert limiter.allow() and not limiter.allow()


def test_rate_limit_is_per_client_under_a_global_ceiling():
    now = [0.0]
    limiter = ClientRateLimiter(1.0, 2, clients=3, ceiling=2, clock=lambda: now[0])
    assert [limiter.allow("flood") for _ in range(5)] == [True, True, False, False, False]
    assert limiter.allow("prometheus") and limiter.allow("prometheus")  # the flood did not use its share
    assert not limiter.allow("third")  # the global ceiling (2 x 2) is reached
    now[0] = 1.0  # each bucket and the ceiling refilled
    assert limiter.allow("third") and limiter.allow("flood") and not limiter.allow("flood")
    for name in ("a", "b", "c", "d"):  # the least recently seen are forgotten beyond `clients`
        limiter.allow(name)
    assert len(limiter._clients) == 3


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "missing.yml"))
