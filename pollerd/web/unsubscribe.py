"""pollerd's small HTTP endpoint (`[pollerd] listen`, reached as `public_url`): unsubscribe.

    GET  /unsubscribe?c=&r=&t=   200  a page with one POST button; never unsubscribes
    POST /unsubscribe?c=&r=&t=   200  the opt-out is recorded (the page's button, or a mail
                                      client's RFC 8058 `List-Unsubscribe=One-Click` POST)
    either, token wrong/missing  403
    anything else                404

GET never acts because mail scanners, link previews and SMTP firewalls fetch links in messages;
GitLab unsubscribed people that way before it added `List-Unsubscribe-Post` (research §5.3).
The token is read from the query only, and the body is ignored, so a POST needs no cookies or
other context (RFC 8058 §3.2). A path that ends in `/unsubscribe` counts too, for a reverse
proxy that forwards `public_url`'s path prefix unchanged.

The HTTP/1.1 subset is deliberately tiny: one request per connection (`Connection: close`),
bodies up to 8 KiB (Content-Length or chunked), 10 s to send the request. Everything reflected
into a page is HTML-escaped; pages forbid scripts, framing and referrers (the link carries the
token).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

from loguru import logger

from pollerd.errors import ControlFlow
from pollerd.unsubscribe import PATH, MetaStore, UnsubscribeLinks, recipient_key, suppress

READ_TIMEOUT = 10.0
MAX_HEAD = 16 * 1024
MAX_BODY = 8 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    500: "Internal Server Error",
}
_HEADERS = (
    "Content-Type: text/html; charset=utf-8\r\n"
    "Cache-Control: no-store\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'\r\n"
    "Connection: close\r\n"
)
_TEXT = {
    "en": {
        "confirm_title": "Unsubscribe",
        "confirm": "Stop alerts from pollerd channel “{channel}” to {address}?",
        "button": "Unsubscribe",
        "done_title": "Unsubscribed",
        "done": "{address} will no longer get alerts from pollerd channel “{channel}”.",
        "bad_title": "This unsubscribe link is not valid",
        "bad": "It may have been cut short by a mail program. Open the link from the message "
        "again, or ask whoever runs pollerd to remove you.",
        "missing_title": "Not found",
        "missing": "There is nothing here.",
        "broken_title": "Something went wrong",
        "broken": "Your request was not recorded. Please try again in a minute.",
    },
    "zh-CN": {
        "confirm_title": "退订",
        "confirm": "不再向 {address} 发送 pollerd 渠道“{channel}”的提醒？",
        "button": "退订",
        "done_title": "已退订",
        "done": "{address} 将不再收到 pollerd 渠道“{channel}”的提醒。",
        "bad_title": "退订链接无效",
        "bad": "链接可能被邮件程序截断。请从邮件中重新打开链接，或联系 pollerd 的管理员。",
        "missing_title": "未找到",
        "missing": "此处没有内容。",
        "broken_title": "出错了",
        "broken": "请求未能记录，请稍后再试。",
    },
}


class BadRequest(ControlFlow):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class UnsubscribeServer:
    """Serves the endpoint on one address; `start` binds (OSError if it cannot), `close` stops
    listening and abandons requests still in flight."""

    def __init__(
        self,
        links: UnsubscribeLinks,
        store: MetaStore,
        *,
        locale: str = "en",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.links = links
        self.store = store
        self.text = _TEXT["zh-CN" if locale == "zh-CN" else "en"]
        self.lang = "zh-CN" if locale == "zh-CN" else "en"
        self.clock = clock
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(
            self._handle, host.strip("[]"), int(port), limit=MAX_HEAD
        )

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)  # type: ignore[arg-type]
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    method, target = await _read_request(reader)
                status, page = await self._respond(method, target)
            except BadRequest as exc:
                status, page = exc.status, ""
            except TimeoutError:
                status, page = 408, ""
            writer.write(_encode(status, page))
            with contextlib.suppress(OSError):
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._handlers.discard(task)  # type: ignore[arg-type]

    async def _respond(self, method: str, target: str) -> tuple[int, str]:
        parts = urlsplit(target)
        if method not in ("GET", "POST") or not (parts.path == PATH or parts.path.endswith(PATH)):
            return 404, self._page("missing", {})
        query = parse_qs(parts.query, keep_blank_values=True)
        channel, recipient, token = (query.get(key, [""])[0] for key in ("c", "r", "t"))
        valid = (
            0 < len(channel) <= 64
            and 0 < len(recipient) <= 320
            and self.links.verify(channel, recipient, token)
        )
        if not valid:
            return 403, self._page("bad", {})
        values = {"channel": channel, "address": recipient_key(recipient)}
        if method == "GET":
            action = "?" + urlencode({"c": channel, "r": values["address"], "t": token})
            return 200, self._page("confirm", values, action=action)
        try:
            await asyncio.to_thread(suppress, self.store, channel, recipient, self.clock())
        except Exception:  # noqa: BLE001 - the database is down: say so, the link still works
            logger.exception("unsubscribe: could not record the opt-out of channel {}", channel)
            return 500, self._page("broken", {})
        logger.info("unsubscribe: {} opted out of channel {}", values["address"], channel)
        return 200, self._page("done", values)

    def _page(self, name: str, values: dict[str, str], *, action: str = "") -> str:
        title = html.escape(self.text[f"{name}_title"])
        body = self.text[name]
        for key, value in values.items():
            body = body.replace("{" + key + "}", value)  # values are escaped below, as a whole
        form = ""
        if action:
            form = (
                f'<form method="post" action="{html.escape(action, quote=True)}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                f'<button type="submit">{html.escape(self.text["button"])}</button></form>'
            )
        return (
            f'<!DOCTYPE html><html lang="{self.lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title></head><body><h1>{title}</h1>"
            f"<p>{html.escape(body)}</p>{form}</body></html>\n"
        )


def _encode(status: int, page: str) -> bytes:
    body = page.encode("utf-8")
    start = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
    return f"{start}{_HEADERS}Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Method and target of one request; its body is read (so the client sees our answer,
    not a reset) and ignored."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(413) from None
    lines = head.decode("latin-1").split("\r\n")
    request = lines[0].split(" ")
    if len(request) != 3 or not request[2].startswith("HTTP/1."):
        raise BadRequest(400)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        await _skip_chunked(reader)
    elif headers.get("content-length"):
        length = headers["content-length"]
        if not length.isdigit():
            raise BadRequest(400)
        if int(length) > MAX_BODY:
            raise BadRequest(413)
        await reader.readexactly(int(length))
    return request[0], request[1]


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise BadRequest(400) from None
        total += size
        if total > MAX_BODY:
            raise BadRequest(413)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return
        await reader.readexactly(size + 2)
