"""What a WordPress answer says, read from status, headers and body (never from the URL, which
may carry the keys): a REST error's code and message, a bad OAuth signature, the GET arguments
of a route schema (the version gate), the paging headers. An HTML page from a WAF or proxy is
not a REST error and reads as ("", "").

`WordPressAnswers` is what a refusal *means* (research/woocommerce.md §1.6-§1.9): nothing in
front of the store is trusted to say "no orders" (429, 5xx, WAF 403 pages are retryable), and
auth, version and URL problems are permanent with the fix a merchant can apply."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from pollerd.errors import (
    BlockedSourceError,
    PermanentSourceError,
    RetryableSourceError,
    SourceError,
)
from pollerd.http import retry_after

__all__ = [
    "WAF_PAUSE",
    "WordPressAnswers",
    "content_type",
    "every_status",
    "get_args",
    "int_header",
    "is_bad_signature",
    "wp_error",
]


def wp_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of a WordPress REST error body; ("", "") when it is not one (an HTML
    page from a WAF or proxy)."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        return "", ""
    message = data.get("message")
    return data["code"], message[:300] if isinstance(message, str) else ""


def is_bad_signature(response: httpx.Response) -> bool:
    return response.status_code == 401 and wp_error(response)[1].startswith("Invalid signature")


def get_args(schema: Any) -> set[str] | None:
    """Names of the GET arguments in an `OPTIONS` route schema, None if unreadable."""
    args = _get_endpoint_args(schema)
    return None if args is None else set(args)


PROBE_SKIPS = frozenset({"any", "auto-draft"})
"""Not statuses of an order a seller sees: `any` would swallow the rest of the list
(`prepare_objects_query` breaks at it) and `auto-draft` is WordPress's internal placeholder."""


def every_status(schema: Any) -> tuple[str, ...] | None:
    """Every order status the route accepts, trash and plugins' own statuses included (the
    schema's `status` enum is built from `wc_get_order_statuses()`), minus `PROBE_SKIPS`; None
    if the schema does not say. Listed explicitly, they reach what `status=any` leaves out
    (trash) in one request: `any,trash` would mean `any`."""
    args = _get_endpoint_args(schema)
    status = args.get("status") if args is not None else None
    items = status.get("items") if isinstance(status, dict) else None
    enum = items.get("enum") if isinstance(items, dict) else None
    if not isinstance(enum, list) or "trash" not in enum:
        return None
    wanted = [s for s in enum if isinstance(s, str) and s and s not in PROBE_SKIPS]
    return tuple(dict.fromkeys(wanted)) or None


def _get_endpoint_args(schema: Any) -> dict[str, Any] | None:
    if not isinstance(schema, dict) or not isinstance(schema.get("endpoints"), list):
        return None
    for endpoint in schema["endpoints"]:
        if not isinstance(endpoint, dict):
            continue
        methods = endpoint.get("methods")
        args = endpoint.get("args")
        if isinstance(methods, list) and "GET" in methods and isinstance(args, dict):
            return args
    return None


def int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def content_type(response: httpx.Response) -> str:
    return response.headers.get("Content-Type", "no content type").split(";")[0]


# --- what an answer means ----------------------------------------------------------------------

ORDERS_PATH = "/wp-json/wc/v3/orders"
KEYS_PAGE = "WooCommerce → Settings → Advanced → REST API"
WAF_PAUSE = 60.0
"""A WAF that blocked us once will block the next request too; pause at least this long."""


@dataclass(frozen=True)
class WordPressAnswers:
    """How one store's answers are typed (the client's `classify`): the error each refusal
    means, with the fix in the words of that store's setup (its site address, URL scheme and
    auth mode). Every message passes through `scrub` (the store's keys) before it is raised."""

    name: str
    site: str
    scheme: str
    auth: str
    scrub: Callable[[str], str]

    def refusal(self, response: httpx.Response) -> SourceError | None:
        """None for a 2xx; otherwise what the answer means, typed from status *and* body:
        retryable (429, 5xx, 408; `BlockedSourceError` for a WAF's HTML 403) or permanent with
        the fix (auth, redirects, a missing API, a rejected parameter)."""
        status = response.status_code
        if 200 <= status < 300:
            return None
        wait = retry_after(response)
        code, message = wp_error(response)
        what = f"{response.request.method} {response.url.path}"
        if 300 <= status < 400:
            return self.fatal(self._redirect_message(response))
        if status == 429 or status >= 500 or status == 408:
            detail = f": {code}" if code else ""
            if status == 429:
                reason = "too many requests (the host or a WAF rate-limits the API)"
            else:
                reason = f"server error{detail} ({content_type(response)})"
            hint = f"; Retry-After {wait:g} s" if wait is not None else ""
            return self.retryable(f"{what}: HTTP {status} {reason}{hint}", wait)
        if status in (401, 403) and not code:
            if status == 403:
                return BlockedSourceError(
                    self.name,
                    "HTTP 403 with an HTML page: a WAF or security plugin in front of WordPress "
                    "blocked the request (Cloudflare, Wordfence, mod_security?); backing off. If "
                    "it persists, allow this server's IP or User-Agent for /wp-json/wc/",
                    max(wait or 0.0, WAF_PAUSE),
                )
            return self.fatal(
                "HTTP 401 from the web server itself, not WordPress (HTTP authentication in "
                "front of the site, e.g. a staging password): exempt /wp-json/wc/ from it"
            )
        if status in (401, 403):
            return self._auth_error(status, code, message)
        if status == 404:
            reason = (
                f"{code}: is the WooCommerce plugin active?"
                if code
                else 'an HTML 404 page: are permalinks "Plain" (WordPress → Settings → Permalinks)?'
            )
            return self.fatal(
                f"WooCommerce REST API not found at {self.site}{ORDERS_PATH} ({reason} is url "
                "the WordPress site address?)"
            )
        if status == 400 and code == "rest_invalid_param":
            return self.fatal(self._invalid_param_message(response, message))
        detail = f"{code}: {message}" if code else content_type(response)
        return self.fatal(f"{what}: unexpected HTTP {status} ({detail})")

    def _auth_error(self, status: int, code: str, message: str) -> SourceError:
        said = f'WooCommerce said "{message}"'
        lower = message.lower()
        if "read permission" in lower:
            return self.fatal(
                f"the API key has no read permission ({said}): create a key with Read or "
                f"Read/Write access in {KEYS_PAGE} and set consumer_key/consumer_secret"
            )
        if "consumer secret is invalid" in lower:
            return self.fatal(
                f"consumer_secret does not belong to consumer_key ({said}): copy the secret "
                f"again, or generate a new key in {KEYS_PAGE}"
            )
        if "consumer key is invalid" in lower:
            return self.fatal(
                f"consumer_key is not a key of this store ({said}): check it, or generate a new "
                f"key in {KEYS_PAGE}"
            )
        if lower.startswith("invalid signature"):
            return self.fatal(
                f"the OAuth 1.0a signature was rejected ({said}): the consumer secret is wrong "
                "(check consumer_secret), or "
                f"WordPress's own site address differs from url = {self.site} (scheme, www, "
                "port: WordPress → Settings → General)"
            )
        if lower.startswith("invalid timestamp"):
            return self.fatal(
                f"the OAuth timestamp was rejected ({said}): this machine's clock and the "
                "store's differ by more than 15 minutes; synchronise the clock (NTP)"
            )
        if lower.startswith("invalid nonce"):
            return self.retryable(f"the OAuth nonce was refused as reused ({said})")
        if lower.startswith("missing oauth"):
            return self.fatal(
                f"the store saw only part of the OAuth parameters ({said}): a proxy or cache "
                'is rewriting the query string; fix it, or use HTTPS with auth = "basic"'
            )
        if status == 403:
            return self.fatal(
                f"the key's WordPress user may not read orders ({said}): create the key for an "
                f"administrator or shop manager in {KEYS_PAGE}"
            )
        if self.auth == "oauth":
            return self.fatal(
                f"the store did not authenticate the request ({said}): the OAuth parameters "
                "did not reach WooCommerce (a proxy or cache dropping the query string?)"
            )
        if self.scheme == "http":
            return self.fatal(
                f"the store ignored the key ({said}): WooCommerce ignores {self.auth} auth over "
                'plain http:// unless the site detects HTTPS; set auth = "oauth" (or "auto") '
                "for this store, or use its https:// address"
            )
        stripped = " or the host strips the Authorization header," if self.auth == "basic" else ""
        alternative = ' (or auth = "query" if the host strips Authorization)' * (
            self.auth == "basic"
        )
        return self.fatal(
            f"the store ignored the key ({said}): consumer_key is unknown,{stripped} or the "
            "site does not detect HTTPS (is a proxy not forwarding X-Forwarded-Proto?); "
            f'check the key, set auth = "oauth"{alternative} for this store, or fix the proxy'
        )

    def _invalid_param_message(self, response: httpx.Response, message: str) -> str:
        try:
            params = json.loads(response.content).get("data", {}).get("params", {})
        except (ValueError, AttributeError):
            params = {}
        names = ", ".join(sorted(params)) if isinstance(params, dict) else ""
        if isinstance(params, dict) and {"modified_after", "after", "dates_are_gmt"} & set(params):
            return (
                f"the store rejected the date filter ({message}: {params}); pollerd sends "
                "naive UTC with dates_are_gmt, which WooCommerce accepts since 5.8: is the store "
                "older, or does a plugin replace the orders API? upgrade WooCommerce to ≥ 5.8"
            )
        return f"the store rejected the request ({message} {names}); this is a pollerd bug"

    def _redirect_message(self, response: httpx.Response) -> str:
        target = urllib.parse.urlsplit(
            urllib.parse.urljoin(str(response.url), response.headers.get("Location", ""))
        )
        path = target.path
        if path.endswith(ORDERS_PATH):
            path = path[: -len(ORDERS_PATH)]
        site = urllib.parse.urlunsplit((target.scheme, target.netloc, path.rstrip("/"), "", ""))
        status = response.status_code
        if "wp-login.php" in target.path:
            return (
                f"HTTP {status} redirect to a login page ({site}): a maintenance, coming-soon or "
                "membership plugin intercepts /wp-json/; exempt the REST API from it"
            )
        if target.scheme == "https" and self.scheme == "http":
            return (
                f'HTTP {status} redirect to https://: set url = "{site}" for this store (auth '
                '"auto" then uses Basic over HTTPS)'
            )
        return (
            f'HTTP {status} redirect to {site}: set url = "{site}" for this store if that is '
            "the site address (pollerd does not follow redirects: they drop credentials or end "
            "on login pages)"
        )

    def fatal(self, message: str) -> PermanentSourceError:
        return PermanentSourceError(self.name, self.scrub(message))

    def retryable(self, message: str, retry_after: float | None = None) -> RetryableSourceError:
        return RetryableSourceError(self.name, self.scrub(message), retry_after=retry_after)
