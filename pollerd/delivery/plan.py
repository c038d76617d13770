"""What one round sends to a rate-limited destination: the first pending event of each order
(single sends), or the longest head of its backlog that ONE digest can name in full."""

from __future__ import annotations

from pollerd.channels.base import Channel
from pollerd.model import Event
from pollerd.store import Due
from pollerd.templates import DigestTooLong, complete_digests


def first_of_each_order(backlog: list[Due]) -> list[Due]:
    """The rows `Store.due` would hand out: the first pending one of each order."""
    seen: set[tuple[str, str]] = set()
    heads = []
    for row in backlog:
        if (row.store, row.order_id) not in seen:
            seen.add((row.store, row.order_id))
            heads.append(row)
    return heads


def fit_digest(channel: Channel, backlog: list[Due], guess: int) -> tuple[int, str]:
    """How many rows of `backlog` (a head of it) one digest NAMES within the channel's limit
    (WeCom 4,096 bytes, ...), and that digest. The digest marks exactly those rows sent; the
    rest stay pending for the next one, so no alert is only ever "… and 30 more" (issue 11). A
    head of the backlog keeps each order's events together and in order (the backlog is in
    event order). A count of 1 means: send it as a single alert (the text is then "").

    `guess` is where to start (the channel's last fit: a flash sale's lines are alike): from
    there it gallops up (+1, +2, +4, ...) or searches down, a few renders per digest instead
    of one per row. A channel that cannot render a digest at all raises."""
    events = [Event.from_json(row.payload) for row in backlog]

    def render(count: int) -> str | None:
        try:
            with complete_digests():
                return channel.render_digest(events[:count])
        except DigestTooLong:
            return None

    guess = max(1, min(len(backlog), guess))
    best = render(guess)
    low, high = (1, guess - 1) if best is None else (guess, len(backlog))
    step = 1
    while best is not None and low < high:
        probe = min(high, low + step)
        attempt = render(probe)
        if attempt is None:
            high = probe - 1
            break
        low, best, step = probe, attempt, step * 2
    while low < high:
        middle = (low + high + 1) // 2
        attempt = render(middle)
        if attempt is None:
            high = middle - 1
        else:
            low, best = middle, attempt
    return low, (best or "") if low > 1 else ""
