"""The Prometheus exporter-toolkit web configuration (--web.config.file): TLS, basic auth, headers, rate limit.

The same YAML keys node_exporter accepts, validated once into a WebSecurity with a ready ssl.SSLContext;
every problem is a ConfigError of one line. Differences from Go, forced by Python's ssl module, are checked
here rather than ignored: TLS 1.3 cipher suites cannot be chosen (as in Go), only the first of curve_preferences
is applied to ECDHE, RequireAnyClientCert needs client_ca_file and RequestClientCert verifies a certificate
that is sent (Python verifies every certificate it asks for), and http2 is accepted (its cipher rule included)
but the server speaks HTTP/1.1.
"""

import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import yaml

from .config import ConfigError, UniqueKeyLoader

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
               "RequireAnyClientCert": ssl.CERT_REQUIRED, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# Go's crypto/tls names -> OpenSSL names. TLS 1.3 suites are fixed in Go as in OpenSSL: accepted, not applied.
CIPHERS = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
# TLS 1.2 suites unless cipher_suites names others: forward secrecy and AEAD only, as in Go's defaults since 1.22
# (no CBC: testssl.sh rated OpenSSL's default list "potentially vulnerable" to LUCKY13).
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
HEADERS = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
            "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
            "curve_preferences"}
BCRYPT_HASH = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class WebSecurity:
    """What the HTTP server enforces: TLS, basic auth, extra headers, a rate limit."""

    tls: Optional[ssl.SSLContext] = None
    allowed_sans: Tuple[str, ...] = ()
    users: Dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    excluded_paths: Tuple[str, ...] = ()
    headers: Dict[str, str] = field(default_factory=dict)
    rate_interval: float = 0.0  # seconds between requests the token bucket refills; 0: no limit
    rate_burst: int = 0

    def needs_auth(self, path: str) -> bool:
        return bool(self.users) and path not in self.excluded_paths


NO_SECURITY = WebSecurity()


def _mapping(value, path):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping")
    return value


def _strings(value, path) -> Tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: expected a list of strings")
    return tuple(value)


def _string(value, path) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string")
    return value


def _duration(text, path) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text).strip())
    if not match:
        raise ConfigError(f"{path}: {text!r} is not a duration like 100ms, 1s or 1m")
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _tls(spec: dict, base: str, http2: bool) -> Tuple[ssl.SSLContext, Tuple[str, ...]]:
    inline_fds = []
    try:
        return _tls_context(spec, base, inline_fds, http2)
    finally:
        for fd in inline_fds:
            os.close(fd)


def _tls_context(spec: dict, base: str, inline_fds: list, http2: bool) -> Tuple[ssl.SSLContext, Tuple[str, ...]]:
    path = "tls_server_config"

    def pem_file(data: str) -> str:
        """A path holding inline PEM data, for ssl APIs that only read files: an anonymous in-memory file."""
        fd = os.memfd_create("sockdiag-web-config")
        inline_fds.append(fd)
        os.write(fd, data.encode())
        return f"/proc/self/fd/{fd}"

    unknown = set(spec) - TLS_KEYS
    if unknown:
        raise ConfigError(f"{path}.{sorted(unknown)[0]}: unknown key")

    def file_or_inline(file_key, inline_key, required):
        file_name, inline = spec.get(file_key), spec.get(inline_key)
        if file_name and inline:
            raise ConfigError(f"{path}: {file_key} and {inline_key} are both set; use one")
        if inline:
            return pem_file(_string(inline, f"{path}.{inline_key}")), None
        if not file_name:
            if required:
                raise ConfigError(f"{path}: {file_key} (or {inline_key}) is required with TLS")
            return None, None
        return os.path.join(base, _string(file_name, f"{path}.{file_key}")), file_name

    cert, _ = file_or_inline("cert_file", "cert", True)
    key, _ = file_or_inline("key_file", "key", True)
    ca, ca_name = file_or_inline("client_ca_file", "client_ca", False)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"{path}: cannot load the certificate and key: {getattr(e, 'strerror', None) or e}") \
            from None
    versions = []
    for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = spec.get(k) or default
        if name not in TLS_VERSIONS:
            raise ConfigError(f"{path}.{k}: {name!r} is not one of {', '.join(TLS_VERSIONS)}")
        versions.append(TLS_VERSIONS[name])
    try:
        ctx.minimum_version, ctx.maximum_version = versions
    except ValueError as e:
        raise ConfigError(f"{path}: this OpenSSL cannot use those TLS versions: {e}") from None
    if versions[0] > versions[1]:
        raise ConfigError(f"{path}: min_version is above max_version")
    auth = spec.get("client_auth_type") or "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise ConfigError(f"{path}.client_auth_type: {auth!r} is not one of {', '.join(CLIENT_AUTH)}")
    ctx.verify_mode = CLIENT_AUTH[auth]
    if auth != "NoClientCert":
        if not ca and auth == "RequireAndVerifyClientCert":
            raise ConfigError(f"{path}: client_auth_type {auth} needs client_ca_file (or client_ca)")
        if not ca and auth == "RequireAnyClientCert":  # Go requires any certificate without checking it
            raise ConfigError(f"{path}: client_auth_type {auth} needs client_ca_file here: Python's ssl verifies "
                              f"every client certificate it requires")
    if ca and auth != "NoClientCert":
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"{path}.client_ca_file: cannot load {ca_name or 'client_ca'}: "
                              f"{getattr(e, 'strerror', None) or e}") from None
    if ca and auth == "NoClientCert":
        raise ConfigError(f"{path}: client_ca_file is set but client_auth_type is NoClientCert")
    sans = _strings(spec.get("client_allowed_sans"), f"{path}.client_allowed_sans")
    if sans and ctx.verify_mode != ssl.CERT_REQUIRED:
        raise ConfigError(f"{path}.client_allowed_sans: needs client_auth_type RequireAnyClientCert or "
                          f"RequireAndVerifyClientCert")
    suites = _strings(spec.get("cipher_suites"), f"{path}.cipher_suites")
    for suite in suites:
        if suite not in CIPHERS:
            raise ConfigError(f"{path}.cipher_suites: {suite!r} is not a known cipher suite")
    if suites and http2 and not {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                 "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"} & set(suites):
        raise ConfigError(f"{path}.cipher_suites: HTTP/2 (http_server_config.http2, on by default) needs "
                          f"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or its ECDSA twin, as in exporter-toolkit")
    openssl = [CIPHERS[s] for s in suites if CIPHERS[s]]
    try:
        ctx.set_ciphers(":".join(openssl) or DEFAULT_CIPHERS)
    except ssl.SSLError:
        raise ConfigError(f"{path}.cipher_suites: none of them is available in this OpenSSL") from None
    if spec.get("prefer_server_cipher_suites", True) is not False:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    curves = _strings(spec.get("curve_preferences"), f"{path}.curve_preferences")
    for curve in curves:
        if curve not in CURVES:
            raise ConfigError(f"{path}.curve_preferences: {curve!r} is not one of {', '.join(CURVES)}")
    if curves:
        ctx.set_ecdh_curve(CURVES[curves[0]])
    return ctx, sans


def parse(data, base: str = ".") -> WebSecurity:
    """Validate a parsed web configuration; relative file names are relative to base (the file's folder)."""
    data = _mapping(data, "web config")
    unknown = set(data) - {"tls_server_config", "http_server_config", "basic_auth_users",
                           "basic_auth_excluded_paths", "rate_limit"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown key")
    http = _mapping(data.get("http_server_config"), "http_server_config")
    unknown = set(http) - {"http2", "headers"}
    if unknown:
        raise ConfigError(f"http_server_config.{sorted(unknown)[0]}: unknown key")
    tls, sans = None, ()
    spec = _mapping(data.get("tls_server_config"), "tls_server_config")
    if spec:  # any key at all means TLS, and then a certificate and key are required
        tls, sans = _tls(spec, base, http.get("http2", True) is not False)
    headers = {}
    for name, value in _mapping(http.get("headers"), "http_server_config.headers").items():
        if name not in HEADERS:
            raise ConfigError(f"http_server_config.headers.{name}: not one of {', '.join(HEADERS)}")
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"http_server_config.headers.{name}: expected a string")
        value = str(value)  # YAML reads X-XSS-Protection: 1 as a number
        allowed = HEADERS[name]
        if allowed and value.lower() not in allowed:
            raise ConfigError(f"http_server_config.headers.{name}: {value!r} is not one of {', '.join(allowed)}")
        if value:
            headers[name] = value
    users = {}
    for user, hashed in _mapping(data.get("basic_auth_users"), "basic_auth_users").items():
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            raise ConfigError(f"basic_auth_users.{user}: not a bcrypt hash ($2y$10$...)")
        users[str(user)] = hashed.encode()
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ConfigError("basic_auth_users needs the bcrypt module (Debian: python3-bcrypt; pip: bcrypt)") \
                from None
    rate = _mapping(data.get("rate_limit"), "rate_limit")
    if set(rate) - {"interval", "burst"}:
        raise ConfigError(f"rate_limit.{sorted(set(rate) - {'interval', 'burst'})[0]}: unknown key")
    interval = rate.get("interval", 0)
    interval = 0.0 if interval in (0, "0") else _duration(interval, "rate_limit.interval")  # 0: no limit
    burst = rate.get("burst", 0)
    if type(burst) is not int or burst < 0:
        raise ConfigError("rate_limit.burst: expected a whole number >= 0")
    return WebSecurity(tls, sans, users, _strings(data.get("basic_auth_excluded_paths"),
                                                     "basic_auth_excluded_paths"), headers, interval, burst)


def load(path: Optional[str]) -> WebSecurity:
    """Read and validate a web configuration file; no file means plain HTTP without auth."""
    if not path:
        return NO_SECURITY
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=UniqueKeyLoader)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        return parse(data, os.path.dirname(os.path.abspath(path)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
