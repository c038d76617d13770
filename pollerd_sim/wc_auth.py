"""WooCommerce REST key authentication, written from the WooCommerce docs and research §1.6.

`WC_REST_Authentication::authenticate` in outline:
1. only if the site believes the request is HTTPS (`is_ssl()`): Basic auth, where
   `?consumer_key=&consumer_secret=` in the query string take precedence over the
   `Authorization: Basic` header; a known key with a wrong secret records "Consumer secret is
   invalid."; an unknown key records nothing;
2. otherwise (or if Basic did not authenticate) OAuth 1.0a one-legged, with parameters from the
   query string and/or an `Authorization: OAuth` header: signature first, then the ±15 minute
   timestamp window, then the nonce (kept per timestamp, so re-use inside the window fails);
3. a recorded error is the answer (401); no user at all falls through to the route's permission
   check, whose "Sorry, you cannot list resources." is therefore what a missing key, an unknown key
   and Basic over plain HTTP all look like (fixtures `error_401_*.json`);
4. an authenticated key needs read permission for GET.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

NONCE_WINDOW = 15 * 60
"""`check_oauth_timestamp_and_nonce`: timestamps within ±900 s; nonces remembered that long."""

OAUTH_REQUIRED = (
    "oauth_consumer_key",
    "oauth_timestamp",
    "oauth_nonce",
    "oauth_signature",
    "oauth_signature_method",
)


def auth_error(message: str, code: str = "woocommerce_rest_authentication_error") -> dict[str, Any]:
    return {"code": code, "message": message, "data": {"status": 401}}


def rfc3986(value: str) -> str:
    """`wc_rest_urlencode_rfc3986`: rawurlencode, i.e. everything but A-Z a-z 0-9 - _ . ~."""
    return urllib.parse.quote(value, safe="~")


def parse_oauth_header(header: str) -> dict[str, str]:
    """`WC_REST_Authentication::parse_header`: `oauth_*` pairs of an `OAuth ...` header,
    each urldecoded (so a raw `+` becomes a space, which the signature check turns back)."""
    header = header.strip()
    if not header.startswith("OAuth "):
        return {}
    params = {}
    for name, quoted, bare in re.findall(r'(oauth_[a-z_-]*)=(?:"([^"]*)"|([^,]*))', header):
        params[name] = urllib.parse.unquote_plus(quoted or bare)
    return params


def signature_base(
    method: str, base_url: str, params: Mapping[str, str | Mapping[str, str]]
) -> str:
    """The OAuth 1.0a string to sign, as `check_oauth_signature` builds it: keys sorted with
    strcmp, each key and value encoded once, `k=v` joined by `&`, the whole encoded once more."""
    pairs: list[str] = []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, Mapping):
            # join_with_equals_sign: arrays sign as key%5Bsub%5D=value.
            pairs += [f"{rfc3986(key)}%5B{sub}%5D={rfc3986(v)}" for sub, v in value.items()]
        else:
            pairs.append(f"{rfc3986(key)}={rfc3986(value)}")
    return f"{method.upper()}&{rfc3986(base_url)}&{rfc3986('&'.join(pairs))}"


class KeyAuth:
    """One REST API key and the state WooCommerce keeps for it (the used-nonce list)."""

    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        permissions: str,
        clock: Callable[[], datetime],
    ) -> None:
        if permissions not in ("read", "write", "read_write"):
            raise ValueError("permissions must be read, write or read_write")
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.permissions = permissions
        self.clock = clock
        self._lock = threading.Lock()
        self._nonces: dict[int, str] = {}
        self.nonce_writes = 0
        """Every accepted OAuth request rewrites the key's nonce list: a DB write per poll."""

    def authenticate(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, str | Mapping[str, str]],
        headers: Mapping[str, str],
        https: bool,
        home_url: str,
    ) -> tuple[bool, dict[str, Any] | None]:
        """(authenticated, recorded error body). An error body is the response (401)."""
        error: dict[str, Any] | None = None
        if https:
            ok, error = self._basic(query, headers.get("authorization", ""))
            if ok:
                return self._permitted(method)
        params = self._oauth_params(query, headers.get("authorization", ""))
        if isinstance(params, dict) and params:
            oauth_error = self._oauth(method, path, params, https, home_url)
            if oauth_error is None:
                return self._permitted(method)
            error = oauth_error
        elif isinstance(params, str):
            error = auth_error(params, "woocommerce_rest_authentication_missing_parameter")
        return False, error

    def _permitted(self, method: str) -> tuple[bool, dict[str, Any] | None]:
        if method in ("GET", "HEAD") and self.permissions not in ("read", "read_write"):
            return False, auth_error("The API key provided does not have read permissions.")
        if method in ("POST", "PUT", "PATCH", "DELETE") and self.permissions not in (
            "write",
            "read_write",
        ):
            return False, auth_error("The API key provided does not have write permissions.")
        return True, None

    def _basic(
        self, query: Mapping[str, Any], authorization: str
    ) -> tuple[bool, dict[str, Any] | None]:
        key = query.get("consumer_key")
        secret = query.get("consumer_secret")
        if not (isinstance(key, str) and key and isinstance(secret, str) and secret):
            key = secret = ""
            if authorization[:6].lower() == "basic ":
                try:
                    decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    decoded = ""
                key, _, secret = decoded.partition(":")
        if not key or not secret or key != self.consumer_key:
            return False, None
        if not hmac.compare_digest(secret.encode(), self.consumer_secret.encode()):
            return False, auth_error("Consumer secret is invalid.")
        return True, None

    @staticmethod
    def _oauth_params(
        query: Mapping[str, Any], authorization: str
    ) -> dict[str, str | Mapping[str, str]] | str:
        """`get_oauth_parameters`: {} when not trying OAuth, a message when half-trying."""
        params: dict[str, str | Mapping[str, str]] = dict(query)
        params.update(parse_oauth_header(authorization))
        missing = [name for name in OAUTH_REQUIRED if not params.get(name)]
        if len(missing) == len(OAUTH_REQUIRED):
            return {}
        if missing:
            noun = "parameter" if len(missing) == 1 else "parameters"
            return f"Missing OAuth {noun} {', '.join(missing)}"
        return params

    def _oauth(
        self,
        method: str,
        path: str,
        params: dict[str, str | Mapping[str, str]],
        https: bool,
        home_url: str,
    ) -> dict[str, Any] | None:
        if params["oauth_consumer_key"] != self.consumer_key:
            return auth_error("Consumer key is invalid.")
        signed = {k: v for k, v in params.items() if k != "oauth_signature"}
        given = urllib.parse.unquote(str(params["oauth_signature"]).replace(" ", "+"))
        sig_method = signed["oauth_signature_method"]
        if sig_method not in ("HMAC-SHA1", "HMAC-SHA256"):
            return auth_error("Invalid signature - signature method is invalid.")
        # Signed against the site's own URL (scheme from is_ssl()), not the URL that was called.
        site = urllib.parse.urlsplit(home_url)
        site_path = site.path.rstrip("/")
        if site_path and path.startswith(site_path + "/"):
            path = path[len(site_path) :]
        base_url = f"{'https' if https else 'http'}://{site.netloc}{site_path}{path}"
        digest = hashlib.sha1 if sig_method == "HMAC-SHA1" else hashlib.sha256
        expected = base64.b64encode(
            hmac.new(
                (self.consumer_secret + "&").encode(),
                signature_base(method, base_url, signed).encode(),
                digest,
            ).digest()
        ).decode()
        if not hmac.compare_digest(expected, given):
            return auth_error("Invalid signature - provided signature does not match.")
        return self._timestamp_and_nonce(str(params["oauth_timestamp"]), str(params["oauth_nonce"]))

    def _timestamp_and_nonce(self, timestamp: str, nonce: str) -> dict[str, Any] | None:
        now = int(self.clock().timestamp())
        try:
            stamp = int(timestamp)
        except ValueError:
            return auth_error("Invalid timestamp.")
        if stamp < now - NONCE_WINDOW or stamp > now + NONCE_WINDOW:
            return auth_error("Invalid timestamp.")
        with self._lock:
            if nonce in self._nonces.values():
                return auth_error("Invalid nonce - nonce has already been used.")
            # Keyed by timestamp, as WooCommerce stores it: a second nonce with the same
            # timestamp replaces the first (which then becomes reusable).
            self._nonces[stamp] = nonce
            for old in [t for t in self._nonces if t < now - NONCE_WINDOW]:
                del self._nonces[old]
            self.nonce_writes += 1
        return None
