"""`ChatSim`: one loopback server standing in for WeCom, DingTalk, Feishu/Lark, Slack, Telegram,
Discord and Twilio, answering the way each real service does (research `notifications.md`
§4.1–§4.7, classification §4.9).

It exists so pollerd's native channel adapters are tested against real HTTP that refuses like
the real services, above all the refusals carried in an HTTP 200 body (WeCom `errcode`, DingTalk
`errcode`, Feishu `code`), which tools that equate "200" with "delivered" lose silently.

Routes (point a channel's url / api_base at `ChatSim.url`):

    POST /cgi-bin/webhook/send?key=KEY                      WeCom          chat_bots.WeCom
    POST /robot/send?access_token=T[&timestamp&sign]        DingTalk       chat_bots.DingTalk
    POST /open-apis/bot/v2/hook/HOOK                        Feishu / Lark  chat_bots.Feishu
    POST {slack_path} (default /services/T000/B000/XXXX)    Slack          chat_hooks.Slack
    POST /bot{token}/sendMessage                            Telegram       chat_apis.Telegram
    POST /api[/v10]/webhooks/{id}/{token}[?wait=true]       Discord        chat_hooks.Discord
    POST /2010-04-01/Accounts/{sid}/Messages.json           Twilio         chat_apis.Twilio

Two records: `attempts()` holds every request with the answer it got, `received()` only the
messages a service accepted (what a person in the chat would really see). `fail()` queues forced
answers per service, taken before any check; "reset" drops the connection without an answer,
"slow" waits `slow_seconds` (35 s, longer than a client's usual timeout) and then answers
normally. Rate windows run on `clock` (monotonic, injectable); signature timestamps are checked
against `wall_clock` (Unix seconds, injectable: the research's test vectors are from 2023).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self

from pollerd_sim.chat_apis import Telegram, Twilio
from pollerd_sim.chat_bots import DingTalk, Feishu, WeCom
from pollerd_sim.chat_hooks import Discord, Slack
from pollerd_sim.chat_limits import RateWindows
from pollerd_sim.chat_wire import ChatRequest, text_reply
from pollerd_sim.loopback import LoopbackService, RoutedHandler
from pollerd_sim.wc_rest import Reply

SERVICES = ("wecom", "dingtalk", "feishu", "slack", "telegram", "discord", "twilio")
COMMON_FAULTS = ("reset", "slow")
UNROUTED = "unrouted"
# The published credentials of the simulator (the contract's defaults).
SIM_WECOM_KEY = "wecom-key-0001"
SIM_DINGTALK_TOKEN = "ding-token-0001"
SIM_DINGTALK_SECRET = "SECding0001"
SIM_FEISHU_HOOK = "feishu-hook-0001"
SIM_FEISHU_SECRET = "feishu-secret-0001"
SIM_TELEGRAM_TOKEN = "123456:ABC-telegram"
SIM_DISCORD_TOKEN = "discord-token-0001"
SIM_TWILIO_TOKEN = "twilio-token-0001"


class ChatService(Protocol):
    # read-only: each service's own tuple of faults has its own length (an invariant attribute
    # would not accept it)
    @property
    def name(self) -> str: ...

    @property
    def faults(self) -> tuple[str, ...]: ...

    def owns(self, path: str) -> bool: ...

    def answer(self, req: ChatRequest, now: float, wall: float) -> tuple[Reply, bool]: ...

    def fault(self, kind: str, retry_after: float | None) -> Reply: ...


@dataclass(frozen=True)
class Received:
    """One message a service accepted (`headers` keys lower-case; `at` from the sim's clock)."""

    service: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any | None
    form: dict[str, str] | None
    at: float


@dataclass(frozen=True)
class Attempt(Received):
    """Any request, with the answer it got (`status` 0 = connection reset, no answer)."""

    method: str = "POST"
    status: int = 0
    answer: bytes = b""
    accepted: bool = False
    forced: str | None = None
    """The `fail()` kind that produced the answer, None when the service answered itself."""

    def answer_json(self) -> Any:
        return json.loads(self.answer)


class ChatSim(LoopbackService):
    """The chat and SMS services on 127.0.0.1; see the module docstring."""

    handler_class = RoutedHandler

    def __init__(
        self,
        wecom_key: str = SIM_WECOM_KEY,
        dingtalk_token: str = SIM_DINGTALK_TOKEN,
        dingtalk_secret: str | None = SIM_DINGTALK_SECRET,
        dingtalk_keyword: str | None = None,
        feishu_hook: str = SIM_FEISHU_HOOK,
        feishu_secret: str | None = SIM_FEISHU_SECRET,
        feishu_keyword: str | None = None,
        slack_path: str = "/services/T000/B000/XXXX",
        telegram_token: str = SIM_TELEGRAM_TOKEN,
        telegram_chat: str = "-1001234567890",
        discord_id: str = "111",
        discord_token: str = SIM_DISCORD_TOKEN,
        twilio_sid: str = "AC0001",
        twilio_token: str = SIM_TWILIO_TOKEN,
        twilio_from: str = "+15550001111",
        enforce_rate_limits: bool = True,
        clock: Callable[[], float] | None = None,
        *,
        wall_clock: Callable[[], float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.clock = clock or time.monotonic
        self.wall_clock = wall_clock or time.time
        self.windows = RateWindows(enforce=enforce_rate_limits)
        self.slow_seconds = 35.0
        self.config = {
            "wecom_key": wecom_key,
            "dingtalk_token": dingtalk_token,
            "dingtalk_secret": dingtalk_secret,
            "feishu_hook": feishu_hook,
            "feishu_secret": feishu_secret,
            "slack_path": slack_path,
            "telegram_token": telegram_token,
            "telegram_chat": telegram_chat,
            "discord_id": discord_id,
            "discord_token": discord_token,
            "twilio_sid": twilio_sid,
            "twilio_token": twilio_token,
            "twilio_from": twilio_from,
        }
        w = self.windows
        self.services: dict[str, ChatService] = {
            "slack": Slack(slack_path, w),
            "wecom": WeCom(wecom_key, w),
            "dingtalk": DingTalk(dingtalk_token, dingtalk_secret, dingtalk_keyword, w),
            "feishu": Feishu(feishu_hook, feishu_secret, feishu_keyword, w),
            "telegram": Telegram(telegram_token, telegram_chat, w),
            "discord": Discord(discord_id, discord_token, w),
            "twilio": Twilio(twilio_sid, twilio_token, twilio_from),
        }
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._attempts: list[Attempt] = []
        self._forced: dict[str, deque[tuple[str, float | None]]] = {s: deque() for s in SERVICES}
        self._stopping = threading.Event()

    # -- the HTTP side ---------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        """Answer one request (everything but socket I/O; `headers` keys lower-case)."""
        req = ChatRequest.parse(method, path, query, headers, body)
        service = self._route(path)
        name = service.name if service is not None else UNROUTED
        with self._cond:
            forced = self._forced[name].popleft() if service and self._forced[name] else None
        label = forced[0] if forced is not None else None
        if label == "slow":
            self._stopping.wait(self.slow_seconds)
            forced = None
        with self._cond:
            now, wall = self.clock(), self.wall_clock()
            if service is None:
                reply, accepted = text_reply(404, "Not Found"), False
            elif forced is None:
                reply, accepted = service.answer(req, now, wall)
            elif forced[0] == "reset":
                reply, accepted = Reply(0, b"", reset=True), False
            else:
                reply, accepted = service.fault(forced[0], forced[1]), False
            self._record(name, req, now, reply, accepted, label)
        return reply

    def crash_reply(self) -> Reply:
        return text_reply(500, "Internal Server Error")

    def _route(self, path: str) -> ChatService | None:
        if path == self.config["slack_path"]:
            return self.services["slack"]
        for service in self.services.values():
            if service.owns(path):
                return service
        return None

    def _record(
        self,
        name: str,
        req: ChatRequest,
        now: float,
        reply: Reply,
        accepted: bool,
        forced: str | None,
    ) -> None:
        fields: dict[str, Any] = {
            "service": name,
            "path": req.path,
            "query": dict(req.query),
            "headers": dict(req.headers),
            "body": req.body,
            "json": req.json,
            "form": req.form,
            "at": now,
        }
        status = 0 if reply.reset else reply.status
        self._attempts.append(
            Attempt(
                **fields,
                method=req.method,
                status=status,
                answer=reply.body,
                accepted=accepted,
                forced=forced,
            )
        )
        if accepted:
            self._received.append(Received(**fields))
        self._cond.notify_all()

    # -- the test side ---------------------------------------------------------------------

    def endpoint(self, service: str) -> str:
        """The full URL a channel posts to for `service` (credentials included, unsigned)."""
        c = self.config
        paths = {
            "wecom": f"/cgi-bin/webhook/send?key={c['wecom_key']}",
            "dingtalk": f"/robot/send?access_token={c['dingtalk_token']}",
            "feishu": f"/open-apis/bot/v2/hook/{c['feishu_hook']}",
            "slack": str(c["slack_path"]),
            "telegram": f"/bot{c['telegram_token']}/sendMessage",
            "discord": f"/api/webhooks/{c['discord_id']}/{c['discord_token']}",
            "twilio": f"/2010-04-01/Accounts/{c['twilio_sid']}/Messages.json",
        }
        return self.url + paths[self._known(service)]

    def received(self, service: str | None = None) -> list[Received]:
        """Messages the services accepted, oldest first (only `service`'s when given)."""
        with self._cond:
            return [r for r in self._received if service is None or r.service == service]

    def attempts(self, service: str | None = None) -> list[Attempt]:
        """Every request with the answer it got, oldest first (`"unrouted"` for unknown paths)."""
        with self._cond:
            return [a for a in self._attempts if service is None or a.service == service]

    def wait_for(self, count: int, service: str | None = None, timeout: float = 10.0) -> bool:
        """Block until at least `count` accepted messages (for `service`) exist, or `timeout`."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    sum(service is None or r.service == service for r in self._received) >= count
                ),
                timeout=timeout,
            )

    def fail(
        self, service: str, kind: str, count: int = 1, *, retry_after: float | None = None
    ) -> None:
        """Force the next `count` answers of `service` (see each service's `faults`, plus
        "reset" and "slow"); `retry_after` sets the wait a 429-style kind announces."""
        name = self._known(service)
        known = self.services[name].faults + COMMON_FAULTS
        if kind not in known:
            raise ValueError(
                f"chatsim: {name} has no failure kind {kind!r}; known: {', '.join(known)}"
            )
        if count < 1:
            raise ValueError(f"chatsim: fail count must be at least 1, got {count}")
        with self._cond:
            self._forced[name].extend([(kind, retry_after)] * count)

    def clear(self) -> None:
        """Forget messages, attempts, queued failures and rate windows: a fresh sim."""
        with self._cond:
            self._received.clear()
            self._attempts.clear()
            for queue in self._forced.values():
                queue.clear()
            self.windows.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per service: `attempts`, `accepted`, `refused` (answered but not accepted),
        `forced` (answers from `fail()`), `pending_failures` (queued, not yet used)."""
        with self._cond:
            out: dict[str, dict[str, int]] = {}
            for name in (*SERVICES, UNROUTED):
                mine = [a for a in self._attempts if a.service == name]
                accepted = sum(a.accepted for a in mine)
                out[name] = {
                    "attempts": len(mine),
                    "accepted": accepted,
                    "refused": len(mine) - accepted,
                    "forced": sum(a.forced is not None for a in mine),
                    "pending_failures": len(self._forced.get(name, ())),
                }
            return out

    def _known(self, service: str) -> str:
        if service not in self.services:
            raise ValueError(f"chatsim: no service {service!r}; known: {', '.join(SERVICES)}")
        return service

    def start(self) -> Self:
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        self._stopping.set()  # a "slow" answer in progress returns now
        super().stop()
