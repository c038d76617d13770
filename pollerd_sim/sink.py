"""`WebhookSink`: a loopback receiver for pollerd's webhook channel, with switchable failures.

Delivery guarantees (DESIGN §6) are proved by what arrives here: every message carries the
Standard Webhooks headers `webhook-id` (the idempotency key `store:order_id:type`),
`webhook-timestamp` and `webhook-signature`, and a retried message must arrive with the same id.
The sink therefore records two lists: `attempts` (every POST, whatever it was answered) and
`receipts` (only those answered 2xx: what the receiver really accepted).

Modes, settable at runtime (`set_mode`, or `POST /__sink/mode` from another process):
`ok` 200; `down` drops the connection without an answer (receiver crashed); `500`; `429` (with
`Retry-After` when `retry_after` is set); `410` (gone: a permanent failure); `slow` waits `delay`
seconds, then 200 (a sender with a shorter timeout sees a timeout although the sink accepted the
message: its retry is a legitimate duplicate with the same `webhook-id`); `accept_reset` accepts
the message (a receipt) and then resets the connection instead of answering (a receiver that
crashed after acting on it: to the sender the same as `down`, so its retry is a duplicate).
`queue_modes("500", "500")` makes the next requests fail before falling back to `mode`.
A request cut short (fewer body bytes than its Content-Length: the sender was killed while
writing it) is an attempt answered with nothing, never a receipt, whatever the mode.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Any

from pollerd_sim.loopback import LoopbackHandler, LoopbackService

SINK_MODES = ("ok", "down", "500", "429", "410", "slow", "accept_reset")
_STATUS = {"ok": 200, "slow": 200, "500": 500, "429": 429, "410": 410}


@dataclass(frozen=True)
class Receipt:
    """One POST as the sink saw it (`status` is what it answered; 0 = connection dropped)."""

    webhook_id: str | None
    timestamp: str | None
    signature: str | None
    body: bytes
    headers: dict[str, str]  # lower-case names
    path: str
    received_at: float  # time.time()
    status: int = 200

    def json(self) -> Any:
        return json.loads(self.body)


class SinkHandler(LoopbackHandler):
    def do_POST(self) -> None:
        sink: WebhookSink = self.server.owner
        body = self.read_body()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/__sink/mode":
            self._set_mode(sink, body)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        mode, retry_after, delay = sink._next_mode()
        sink._arrived(mode)
        status = 0 if mode in ("down", "accept_reset") else _STATUS[mode]
        if len(body) < int(headers.get("content-length") or 0):
            # The sender died mid-request (kill -9 between headers and body): no receiver
            # would act on half a message, so it is an attempt, never a receipt.
            mode, status = "down", 0
        receipt = Receipt(
            webhook_id=headers.get("webhook-id"),
            timestamp=headers.get("webhook-timestamp"),
            signature=headers.get("webhook-signature"),
            body=body,
            headers=headers,
            path=path,
            received_at=time.time(),
            status=status,
        )
        if mode == "slow":
            time.sleep(delay)
        # Recorded before answering, so a sender that saw its 2xx always finds its receipt. A
        # slow answer is still a receipt when the sender has timed out meanwhile: the receiver
        # did process it, and the sender's retry is a duplicate with the same webhook-id.
        sink._record(receipt, accepted=200 <= status < 300 or mode == "accept_reset")
        if mode in ("down", "accept_reset"):
            self.abort_connection()
            return
        extra = [("Retry-After", str(retry_after))] if mode == "429" and retry_after else []
        reply = b'{"ok":true}' if status < 300 else json.dumps({"error": mode}).encode()
        with contextlib.suppress(OSError):  # the sender may have given up already
            self.send_body(status, reply, headers=extra)

    def do_GET(self) -> None:
        sink: WebhookSink = self.server.owner
        path = urllib.parse.urlsplit(self.path).path
        if path == "/__sink/receipts":
            self.send_json(
                200,
                [
                    {
                        "webhook_id": r.webhook_id,
                        "body": r.body.decode("utf-8", "replace"),
                        "received_at": r.received_at,
                    }
                    for r in sink.receipts
                ],
            )
        elif path == "/__sink/attempts":
            self.send_json(
                200,
                [
                    {"webhook_id": r.webhook_id, "status": r.status, "received_at": r.received_at}
                    for r in sink.attempts
                ],
            )
        else:
            self.send_json(405, {"error": "POST webhooks here"}, [("Allow", "POST")])

    def _set_mode(self, sink: WebhookSink, body: bytes) -> None:
        try:
            data = json.loads(body or b"{}")
            sink.set_mode(
                str(data["mode"]), retry_after=data.get("retry_after"), delay=data.get("delay")
            )
        except (ValueError, KeyError, TypeError) as exc:
            self.send_json(400, {"error": str(exc)})
            return
        self.send_json(200, {"mode": sink.mode})


class WebhookSink(LoopbackService):
    """Records webhook POSTs on 127.0.0.1; see the module docstring."""

    handler_class = SinkHandler

    def __init__(
        self,
        *,
        mode: str = "ok",
        retry_after: int | str | None = None,
        delay: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self._cond = threading.Condition()
        self.receipts: list[Receipt] = []
        self.attempts: list[Receipt] = []
        self._queued: deque[str] = deque()
        self.arrivals: dict[str, int] = {}  # mode → requests answered in it, counted on arrival
        self.mode = "ok"
        self.retry_after: int | str | None = None
        self.delay = delay
        self.set_mode(mode, retry_after=retry_after, delay=delay)

    def set_mode(
        self, mode: str, *, retry_after: int | str | None = None, delay: float | None = None
    ) -> None:
        if mode not in SINK_MODES:
            raise ValueError(f"unknown sink mode {mode!r}; known: {', '.join(SINK_MODES)}")
        with self._cond:
            self.mode = mode
            self.retry_after = retry_after
            if delay is not None:
                self.delay = float(delay)

    def queue_modes(self, *modes: str) -> None:
        """Answer the next requests with these modes, one each, then fall back to `mode`."""
        for mode in modes:
            if mode not in SINK_MODES:
                raise ValueError(f"unknown sink mode {mode!r}")
        with self._cond:
            self._queued.extend(modes)

    def _next_mode(self) -> tuple[str, int | str | None, float]:
        with self._cond:
            mode = self._queued.popleft() if self._queued else self.mode
            return mode, self.retry_after, self.delay

    def _arrived(self, mode: str) -> None:
        with self._cond:
            self.arrivals[mode] = self.arrivals.get(mode, 0) + 1
            self._cond.notify_all()

    def wait_for_arrival(self, mode: str, n: int, timeout: float = 10.0) -> bool:
        """Block until the `n`-th request answered in `mode` has arrived (read, not yet
        answered: with `slow`, a send is in flight at the sender for `delay` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.arrivals.get(mode, 0) >= n, timeout=timeout)

    def _record(self, receipt: Receipt, *, accepted: bool) -> None:
        with self._cond:
            self.attempts.append(receipt)
            if accepted:
                self.receipts.append(receipt)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least `n` 2xx receipts arrived (True) or `timeout` passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.receipts) >= n, timeout=timeout)

    def wait_for_ids(self, ids: set[str], timeout: float = 10.0) -> bool:
        """Block until every id in `ids` has a 2xx receipt. Counting receipts is not enough when
        a crash may repeat a delivery: duplicates would make up for a missing event."""
        with self._cond:
            return self._cond.wait_for(
                lambda: ids <= {r.webhook_id for r in self.receipts}, timeout=timeout
            )

    def wait_for_attempts(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least `n` attempts (any answer) arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.attempts) >= n, timeout=timeout)

    def ids(self) -> list[str | None]:
        """`webhook-id` of every 2xx receipt, duplicates included (a duplicate is a bug or a
        documented crash window, DESIGN §6)."""
        with self._cond:
            return [r.webhook_id for r in self.receipts]

    def clear(self) -> None:
        with self._cond:
            self.receipts.clear()
            self.attempts.clear()


class HangingReceiver:
    """A receiver on loopback that accepts every connection and never answers (a webhook whose
    server hangs): each send to it ends at its timeout. Raw sockets, not HTTP: nothing is read."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
