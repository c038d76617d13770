"""The three group robots that answer HTTP 200 to (almost) everything: WeCom, DingTalk, Feishu/Lark.

Their errors live in the JSON body (`errcode` / `code`), which is exactly how a client that treats
"HTTP 200 = delivered" loses alerts (research `notifications.md` §4, "HTTP 200 is not success").
Each robot checks, in order: its credential (key, token, hook), its signature when a secret is
configured, the message shape and byte limits, its custom keyword, then its rate limit; only a
message that passes all of them is accepted.

Signatures (§4.2, §4.3), with the research's test vectors (`tests/unit/test_sim_chat.py`):

- DingTalk: `sign = base64(HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\\n{secret}"))`, sent
  URL-encoded in the query next to `timestamp` (milliseconds, within 1 h of the server clock);
- Feishu/Lark: `sign = base64(HMAC-SHA256(key=f"{timestamp_s}\\n{secret}", msg=b""))`, sent in
  the JSON body next to `timestamp` (seconds, within 1 h).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from typing import Any, ClassVar

from pollerd_sim.chat_limits import DINGTALK, DINGTALK_BLOCK, FEISHU, WECOM, RateWindows
from pollerd_sim.chat_wire import ChatRequest, json_reply, strings_in, text_reply
from pollerd_sim.wc_rest import Reply

Outcome = tuple[Reply, bool]
"""The answer and whether the service accepted the message."""

SIGN_WINDOW = 3600.0  # both robots: "within one hour from current time"


def dingtalk_sign(secret: str, timestamp_ms: int | str) -> str:
    """DingTalk's `sign` before URL-encoding (§4.2)."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int | str) -> str:
    """Feishu/Lark's `sign`: the key is `timestamp\\nsecret`, the message is empty (§4.3)."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _within_hour(stamp: Any, now: float, scale: int) -> bool:
    try:
        value = int(str(stamp)) / scale
    except ValueError:
        return False
    return abs(value - now) <= SIGN_WINDOW


class WeCom:
    """`POST /cgi-bin/webhook/send?key=KEY` (§4.1): no signing, the key is the credential."""

    name = "wecom"
    faults = ("93000", "45009", "40058", "40008", "44004", "-1", "500")
    limits: ClassVar[dict[str, int]] = {"text": 2048, "markdown": 4096, "markdown_v2": 4096}
    msgtypes = (
        "text",
        "markdown",
        "markdown_v2",
        "image",
        "news",
        "file",
        "voice",
        "template_card",
    )

    def __init__(self, key: str, windows: RateWindows) -> None:
        self.key = key
        self.windows = windows
        self._hints = itertools.count(1)

    def owns(self, path: str) -> bool:
        return path == "/cgi-bin/webhook/send"

    def error(self, code: int, text: str) -> Reply:
        # The shape of the real errmsg (quoted in client bug reports for 40058, 45002, 93000).
        hint = f"{1700000000 + next(self._hints)}_sim_{code & 0xFFFF:04x}"
        errmsg = (
            f"{text}, hint: [{hint}], from ip: 127.0.0.1, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
        )
        return json_reply(200, {"errcode": code, "errmsg": errmsg})

    def answer(self, req: ChatRequest, now: float, wall: float) -> Outcome:
        if req.method != "POST" or req.query.get("key") != self.key:
            return self.error(93000, "invalid webhook url"), False
        data = req.json
        if not isinstance(data, dict):
            return self.error(40058, "Warning: wrong json format. invalid Request Parameter"), False
        msgtype = data.get("msgtype")
        if msgtype not in self.msgtypes:
            return self.error(40008, "invalid message type"), False
        part = data.get(msgtype)
        if not isinstance(part, dict):
            return self.error(40058, f"missing {msgtype}. invalid Request Parameter"), False
        if msgtype in self.limits:
            content = part.get("content")
            if not isinstance(content, str) or not content:
                return self.error(44004, "empty content"), False
            limit = self.limits[msgtype]
            if len(content.encode("utf-8")) > limit:
                text = f"{msgtype}.content exceed max length {limit}. invalid Request Parameter"
                return self.error(40058, text), False
        if self.windows.take(f"wecom:{self.key}", WECOM, now):
            return self.error(45009, "api freq out of limit"), False
        return json_reply(200, {"errcode": 0, "errmsg": "ok"}), True

    def fault(self, kind: str, retry_after: float | None) -> Reply:
        if kind == "500":
            return text_reply(500, "Internal Server Error")
        if kind == "-1":
            return json_reply(200, {"errcode": -1, "errmsg": "system busy"})
        texts = {
            "93000": "invalid webhook url",
            "45009": "api freq out of limit",
            "40058": "text.content exceed max length 2048. invalid Request Parameter",
            "40008": "invalid message type",
            "44004": "empty content",
        }
        return self.error(int(kind), texts[kind])


_DING_MORE = ", more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"


class DingTalk:
    """`POST /robot/send?access_token=T[&timestamp=ms&sign=…]` (§4.2)."""

    name = "dingtalk"
    faults = ("310000", "300001", "130101", "400402", "460101", "400", "500")
    max_bytes = 20000  # Apprise stays at 19 985 (§4.2)
    fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "text": ("content",),
        "markdown": ("title", "text"),
        "link": ("title", "text", "messageUrl"),
        "actionCard": ("title", "text"),
        "feedCard": ("links",),
    }

    def __init__(
        self, token: str, secret: str | None, keyword: str | None, windows: RateWindows
    ) -> None:
        self.token = token
        self.secret = secret
        self.keyword = keyword
        self.windows = windows

    def owns(self, path: str) -> bool:
        return path == "/robot/send"

    @staticmethod
    def error(code: int, errmsg: str) -> Reply:
        return json_reply(200, {"errcode": code, "errmsg": errmsg})

    def answer(self, req: ChatRequest, now: float, wall: float) -> Outcome:
        token = req.query.get("access_token", "")
        if not token:
            return self.error(300005, "token is not exist"), False
        if req.method != "POST" or token != self.token:
            return self.error(300001, "token is not exist"), False
        if "application/json" not in req.headers.get("content-type", ""):
            return self.error(43004, "无效的HTTP HEADER Content-Type"), False
        if self.secret is not None:
            stamp = req.query.get("timestamp", "")
            if not _within_hour(stamp, wall, 1000):
                return self.error(310000, "invalid timestamp" + _DING_MORE), False
            expected = dingtalk_sign(self.secret, stamp)
            if not hmac.compare_digest(req.query.get("sign", ""), expected):
                return self.error(310000, "sign not match" + _DING_MORE), False
        data = req.json
        if not isinstance(data, dict):
            return self.error(40035, "缺少参数 json"), False
        msgtype = data.get("msgtype")
        if msgtype not in self.fields:
            return self.error(40035, "缺少参数 msgtype"), False
        part = data.get(msgtype)
        if not isinstance(part, dict):
            return self.error(40035, f"缺少参数 {msgtype}"), False
        for name in self.fields[msgtype]:
            if not part.get(name):
                if (msgtype, name) == ("markdown", "title"):
                    return self.error(400402, "缺少参数 markdown.title"), False
                return self.error(40035, f"缺少参数 {msgtype}.{name}"), False
        if len(json.dumps(part, ensure_ascii=False).encode()) > self.max_bytes:
            return self.error(460101, "message too long, exceed 20000 bytes"), False
        if self.keyword and not any(self.keyword in s for s in strings_in(part)):
            return self.error(310000, "keywords not in content" + _DING_MORE), False
        if self.windows.take(f"dingtalk:{self.token}", DINGTALK, now, block=DINGTALK_BLOCK):
            return self.error(130101, "send too fast, exceed 20 times per minute"), False
        return self.error(0, "ok"), True

    def fault(self, kind: str, retry_after: float | None) -> Reply:
        if kind in ("400", "500"):
            return text_reply(int(kind), "Bad Request" if kind == "400" else "Internal Error")
        texts = {
            "310000": "sign not match" + _DING_MORE,
            "300001": "token is not exist",
            "130101": "send too fast, exceed 20 times per minute",
            "400402": "缺少参数 markdown.title",
            "460101": "message too long, exceed 20000 bytes",
        }
        return self.error(int(kind), texts[kind])


class Feishu:
    """`POST /open-apis/bot/v2/hook/HOOK` (§4.3); Lark's host serves the same paths."""

    name = "feishu"
    faults = ("19001", "19021", "19022", "19024", "11232", "9499", "500")
    max_bytes = 20 * 1024  # "request body ≤ 20 KB" (§4.3)
    prefix = "/open-apis/bot/v2/hook/"
    content_keys: ClassVar[dict[str, tuple[str, str | None]]] = {
        "text": ("content", "text"),
        "post": ("content", "post"),
        "image": ("content", "image_key"),
        "share_chat": ("content", "share_chat_id"),
        "interactive": ("card", None),
    }

    def __init__(
        self, hook: str, secret: str | None, keyword: str | None, windows: RateWindows
    ) -> None:
        self.hook = hook
        self.secret = secret
        self.keyword = keyword
        self.windows = windows

    def owns(self, path: str) -> bool:
        return path.startswith(self.prefix)

    @staticmethod
    def error(code: int, msg: str, status: int = 200) -> Reply:
        return json_reply(status, {"code": code, "data": {}, "msg": msg})

    def answer(self, req: ChatRequest, now: float, wall: float) -> Outcome:
        if req.method != "POST" or req.path != self.prefix + self.hook:
            return self.error(19001, "param invalid: incoming webhook access token invalid"), False
        if len(req.body) > self.max_bytes:
            return self.error(9499, "Bad Request", 400), False
        data = req.json
        if not isinstance(data, dict):
            return self.error(9499, "Bad Request", 400), False
        if self.secret is not None:
            stamp = data.get("timestamp", "")
            sign = data.get("sign")
            if (
                not _within_hour(stamp, wall, 1)
                or not isinstance(sign, str)
                or not hmac.compare_digest(sign, feishu_sign(self.secret, stamp))
            ):
                text = "sign match fail or timestamp is not within one hour from current time"
                return self.error(19021, text), False
        msg_type = data.get("msg_type")
        if msg_type not in self.content_keys:
            return self.error(19002, "params error, msg_type need"), False
        outer, inner = self.content_keys[msg_type]
        part = data.get(outer)
        if not isinstance(part, dict) or (inner is not None and not part.get(inner)):
            return self.error(19002, f"params error, {outer} need"), False
        if self.keyword and not any(self.keyword in s for s in strings_in(part)):
            return self.error(19024, "Key Words Not Found"), False
        if self.windows.take(f"feishu:{self.hook}", FEISHU, now):
            return self.error(11232, "frequency limited psm[lark.oapi.app_platform_runtime]"), False
        # Current deployments answer both the new and the old shape at once (§4.3).
        ok = {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
        return json_reply(200, ok), True

    def fault(self, kind: str, retry_after: float | None) -> Reply:
        if kind == "500":
            return text_reply(500, "Internal Server Error")
        if kind == "9499":
            return self.error(9499, "Bad Request", 400)
        texts = {
            "19001": "param invalid: incoming webhook access token invalid",
            "19021": "sign match fail or timestamp is not within one hour from current time",
            "19022": "Ip Not Allowed",
            "19024": "Key Words Not Found",
            "11232": "frequency limited psm[lark.oapi.app_platform_runtime]",
        }
        return self.error(int(kind), texts[kind])
