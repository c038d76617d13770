"""One-click unsubscribe (RFC 8058): the per-recipient link, its token, the suppression list.

A link names the channel and the recipient and proves both with a token that only this pollerd
can make:

    {public_url}/unsubscribe?c={channel}&r={recipient}&t={token}
    token = base64url(HMAC-SHA256(key, channel NUL recipient)), unpadded
    key   = HMAC-SHA256(unsubscribe_secret, "pollerd unsubscribe v1")

The key is derived rather than the secret used directly, so the same secret can never produce a
valid token for some other purpose. Tokens do not expire: a link in a months-old message must
still work. Changing `unsubscribe_secret` invalidates every link already sent.

Recipients are compared by their bare address, lowercased (`Ops@Example.com` and
`ops@example.com` are one person in practice, whatever RFC 5321 allows a local part to mean).
Suppressions are rows of the store's meta table, `suppressed:{channel}:{address}` → when (UTC,
ISO 8601): durable, and shared by every pollerd on the same database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlencode

PATH = "/unsubscribe"
_CONTEXT = b"pollerd unsubscribe v1"


class MetaStore(Protocol):
    def meta(self, key: str) -> str | None: ...

    def metas(self, prefix: str) -> dict[str, str]: ...

    def set_meta(self, key: str, value: str | None) -> None: ...


def recipient_key(address: str) -> str:
    """The form an address takes in tokens and suppression keys."""
    return address.strip().lower()


class UnsubscribeLinks:
    """Makes and checks the tokens of one `unsubscribe_secret`; `public_url` is only needed to
    make links (the web endpoint only checks)."""

    def __init__(self, secret: str, public_url: str = "") -> None:
        self._key = hmac.new(secret.encode("utf-8"), _CONTEXT, hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")

    def token(self, channel: str, recipient: str) -> str:
        message = f"{channel}\0{recipient_key(recipient)}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def verify(self, channel: str, recipient: str, token: str) -> bool:
        expected = self.token(channel, recipient).encode("ascii")
        return hmac.compare_digest(expected, token.encode("utf-8", "replace"))

    def link(self, channel: str, recipient: str) -> str:
        if not self.public_url:
            raise ValueError("public_url is not set")
        query = {"c": channel, "r": recipient_key(recipient), "t": self.token(channel, recipient)}
        return f"{self.public_url}{PATH}?{urlencode(query)}"


def suppression_key(channel: str, recipient: str) -> str:
    return f"suppressed:{channel}:{recipient_key(recipient)}"


def is_suppressed(store: MetaStore, channel: str, recipient: str) -> bool:
    return store.meta(suppression_key(channel, recipient)) is not None


def suppress(store: MetaStore, channel: str, recipient: str, when: datetime | None = None) -> None:
    """Record the opt-out; doing it twice keeps it (the time becomes the latest request)."""
    when = when or datetime.now(UTC)
    store.set_meta(suppression_key(channel, recipient), when.astimezone(UTC).isoformat())


def suppressions(store: MetaStore, channel: str | None = None) -> list[tuple[str, str, str]]:
    """(channel, address, when) of every opt-out, of one channel when given, oldest first."""
    prefix = "suppressed:" + (f"{channel}:" if channel else "")
    found = []
    for key, when in store.metas(prefix).items():
        name, _, address = key.removeprefix("suppressed:").partition(":")
        found.append((name, address, when))
    return sorted(found, key=lambda row: (row[2], row[0], row[1]))


def unsuppress(store: MetaStore, channel: str, recipient: str) -> bool:
    """Undo an opt-out (a recipient who clicked by mistake, or asked to be back); False when
    there was none. Alerts already skipped for them stay skipped."""
    key = suppression_key(channel, recipient)
    if store.meta(key) is None:
        return False
    store.set_meta(key, None)
    return True
