"""Access tokens for the Shopify Admin API: a static `shpat_` token, or the client-credentials
grant (research/shopify.md §1.1).

- A custom app made in the shop admin has a static token that lives until the app is
  uninstalled or the token rotated: nothing to refresh; a 401 means a person must act.
- An app from the Dev Dashboard installed on one's own shop trades `client_id` + `client_secret`
  for a token at `POST https://{shop}/admin/oauth/access_token`. Those tokens last 24 h
  (`expires_in`), so a daemon must re-request them: proactively at 90 % of the lifetime (a poll
  never pays a 401 round trip in normal operation) and on a 401 (the token was revoked early, or
  the clock jumped).

Tokens are wrapped in `Secret` as soon as they arrive, which also registers them with the log
redactor; no message built here contains a token or the client secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from pollerd.errors import PermanentSourceError, RetryableSourceError
from pollerd.secrets import Secret
from pollerd.sources.shopify import ShopifyStore

if TYPE_CHECKING:
    from pollerd.sources.connection import StoreConnection

TOKEN_PATH = "/admin/oauth/access_token"  # noqa: S105 (a URL path, not a secret)
REFRESH_AT = 0.9
"""Fraction of `expires_in` after which a client-credentials token is re-requested."""
DEFAULT_TTL = 86400.0
"""Shopify's documented lifetime, used when an answer omits `expires_in`."""


class TokenProvider(Protocol):
    kind: str  # "static token" | "client credentials", for `check()` and messages
    can_refresh: bool

    async def token(self, connection: StoreConnection) -> str:
        """The current access token, fetched (through the store's `connection`) or refreshed
        first when needed."""
        ...

    def invalidate(self) -> None:
        """The API refused the token (401): the next `token()` must fetch a fresh one."""
        ...


class StaticToken:
    """The admin-created custom app's `shpat_…` token from the config."""

    kind = "static token"
    can_refresh = False

    def __init__(self, secret: Secret) -> None:
        self._secret = secret

    async def token(self, connection: StoreConnection) -> str:
        return self._secret.get()

    def invalidate(self) -> None:
        """Nothing to refresh: the caller turns the 401 into a fatal error with the fix."""


class ClientCredentials:
    """Client-credentials grant with proactive refresh (see the module docstring)."""

    kind = "client credentials"
    can_refresh = True

    def __init__(
        self,
        cfg: ShopifyStore,
        base_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert cfg.client_id is not None and cfg.client_secret is not None
        self.store = cfg.name
        self.client_id = cfg.client_id
        self._secret = cfg.client_secret
        self.url = base_url.rstrip("/") + TOKEN_PATH
        self.user_agent = cfg.user_agent
        self.clock = clock
        self._token: Secret | None = None
        self._refresh_at = 0.0
        self.scopes: tuple[str, ...] = ()
        self.issued = 0  # tokens obtained so far, for tests and `check()`

    async def token(self, connection: StoreConnection) -> str:
        if self._token is None or self.clock() >= self._refresh_at:
            await self._fetch(connection)
        assert self._token is not None
        return self._token.get()

    def invalidate(self) -> None:
        self._token = None

    async def _fetch(self, connection: StoreConnection) -> None:
        body = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret.get(),
        }
        # Its own failure: a token endpoint that does not answer is not a failed page (the
        # GraphQL client would retry or shrink on its `ShopifyServerError`).
        response = await connection.request(
            "POST",
            self.url,
            label=f"client-credentials token: POST {TOKEN_PATH}",
            failure=lambda text: RetryableSourceError(self.store, text),
            data=body,
            headers={"Accept": "application/json", "User-Agent": self.user_agent},
        )
        status = response.status_code
        payload = _json(response)
        if status == 429 or status >= 500:
            raise self._retryable(f"token endpoint answered HTTP {status}")
        if status != 200:
            raise self._refused(status, payload)
        data: dict[str, Any] = payload if isinstance(payload, dict) else {}
        raw = data.get("access_token")
        if not isinstance(raw, str) or not raw:
            raise self._retryable("token endpoint answered 200 without an access_token")
        ttl = data.get("expires_in")
        lifetime = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else DEFAULT_TTL
        scope = data.get("scope")
        if isinstance(scope, str):
            self.scopes = tuple(s.strip() for s in scope.split(",") if s.strip())
        self._token = Secret(raw)
        self._refresh_at = self.clock() + lifetime * REFRESH_AT
        self.issued += 1

    def _refused(self, status: int, payload: object) -> PermanentSourceError:
        error = payload.get("error") if isinstance(payload, dict) else None
        if error == "invalid_client" or status in (400, 401):
            return PermanentSourceError(
                self.store,
                f"Shopify refused the client credentials (HTTP {status}"
                f"{f', {error}' if isinstance(error, str) else ''}): client_id "
                f"{self.client_id!r} and client_secret do not match an app installed on this "
                "shop. Copy both from the app's Settings in the Dev Dashboard (and install the "
                "app on the shop), or use a custom app's access_token instead",
            )
        return PermanentSourceError(
            self.store,
            f"the token endpoint {TOKEN_PATH} answered HTTP {status}: is shop the "
            "*.myshopify.com domain of a shop the app is installed on?",
        )

    def _retryable(self, message: str) -> RetryableSourceError:
        return RetryableSourceError(self.store, f"client-credentials token: {message}")


def token_provider(
    cfg: ShopifyStore, base_url: str, *, clock: Callable[[], float] = time.monotonic
) -> TokenProvider:
    """A static token when one is configured (nothing to refresh), else client credentials."""
    if cfg.access_token is not None:
        return StaticToken(cfg.access_token)
    return ClientCredentials(cfg, base_url, clock=clock)


def _json(response: httpx.Response) -> object:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
