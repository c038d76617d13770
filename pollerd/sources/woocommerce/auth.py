"""How WooCommerce wants to be signed (research woocommerce.md §1.6): Basic only where WordPress
detects HTTPS, OAuth 1.0a one-legged otherwise, exactly as `WC_REST_Authentication` verifies it.
Pure functions: the client decides when to use them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

__all__ = ["oauth_params", "resolve_auth", "rfc3986"]


def resolve_auth(auth: str, scheme: str) -> str:
    """`auto` is Basic over https:// and OAuth 1.0a over http:// (Basic is ignored there)."""
    if auth == "auto":
        return "basic" if scheme == "https" else "oauth"
    return auth


def rfc3986(value: str) -> str:
    """rawurlencode: everything but A-Z a-z 0-9 - _ . ~ (what WooCommerce re-encodes to)."""
    return urllib.parse.quote(value, safe="~")


def oauth_params(
    method: str,
    base_url: str,
    params: dict[str, str],
    *,
    consumer_key: str,
    consumer_secret: str,
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """OAuth 1.0a one-legged parameters as `WC_REST_Authentication::check_oauth_signature`
    verifies them: HMAC-SHA256, no `oauth_version`, every query parameter signed (keys sorted
    by byte value, keys and values RFC 3986-encoded once, `k=v` joined by `&`, the whole encoded
    again), key = consumer_secret + "&", base URL = the site's own URL + path."""
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce,
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": str(timestamp),
    }
    signed = {**params, **oauth}
    pairs = "&".join(f"{rfc3986(k)}={rfc3986(signed[k])}" for k in sorted(signed))
    base = f"{method.upper()}&{rfc3986(base_url)}&{rfc3986(pairs)}"
    digest = hmac.new(f"{consumer_secret}&".encode(), base.encode(), hashlib.sha256).digest()
    return {**oauth, "oauth_signature": base64.b64encode(digest).decode()}
