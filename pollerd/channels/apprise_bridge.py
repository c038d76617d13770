"""`apprise`: one Apprise URL per channel, for the ~180 services pollerd has no adapter for.

Optional (`pip install 'pollerd[apprise]'`, apprise ≥ 2.2): the package is imported only when an
`apprise` channel is configured. One channel is one URL (`ntfys://…`, `pover://…`, `json://…`);
pollerd routes, so Apprise tags are unused.

What the bridge cannot do (research §1.5, §1.8), and what it does about it:
- Apprise decides success from the HTTP status alone. WeCom, DingTalk and Feishu/Lark answer
  business failures (bad key, signature, keyword, rate limit) with HTTP 200 and an error code,
  which Apprise reports as sent; Apprise's Feishu/Lark cannot sign. Their schemes (and their
  native hook URLs, which Apprise also accepts) are refused at config time in favour of the
  native channel types.
- Apprise retries in-process with a fixed wait and retries a 404 like a 503; the outbox owns
  retries, so every URL's `retry` is forced to 0 and each send is exactly one attempt.
- A 2.x result says sent / failed / timed out per service, never the HTTP status or whether the
  failure is permanent. So every failed delivery is a retry, with Apprise's own WARNING line as
  the detail; only a URL Apprise cannot use at all is a permanent channel failure.
- Redirects are not followed unless the URL says `redirect=yes` (a POST through a 301/302
  arrives as a bodyless GET, and Apprise would call that a success).
- No idempotency key travels with the message: a crash between send and mark re-sends it
  (at-least-once). The order number in the text lets a person spot the duplicate.

Outcomes:

    SUCCESS                                  ok
    FAILURE, TIMEOUT, PARTIAL                retry (the outbox's back-off, max_attempts and
                                             dead_after bound it)
    NOMATCH, URL no longer usable            permanent, channel
    message refused before any service ran   permanent, message

The message is the `markdown` template flavour, sent as Apprise `markdown`: Apprise converts it
for each service (HTML for mail-like services, as is for Markdown ones), so the order link stays
a link and the summary bold. Order data is made inert by the templates (lookalike characters:
`∗∗x∗∗ ＠everyone ［x］(http：//evil)`), in the title too, because Apprise writes the title into
the Markdown body (`# title`) of services that have no title field. The summary is the title
and is not repeated as the body's first line (unless a fixed `title` is configured). Texts are
shortened to the service's own `body_maxlen` ("… (+N items)", the link kept), never split.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import AfterValidator, model_validator

from pollerd.channels.base import Channel, ChannelContext, ChannelOptions, SendResult
from pollerd.config.types import Duration, invalid
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Message

if TYPE_CHECKING:
    from apprise import Apprise, AppriseResult
    from apprise.plugins.base import NotifyBase

MIN_VERSION = (2, 2)  # 2.0 made notify() return a result object; 2.2 is what was measured
INSTALL = "pip install 'pollerd[apprise]'"
# Apprise schemes pollerd implements natively, and why Apprise must not be used for them.
NATIVE: dict[str, tuple[str, str]] = {
    "wecombot": ("wecom", "Apprise reports WeCom's HTTP 200 errcode failures as sent"),
    "dingtalk": ("dingtalk", "Apprise reports DingTalk's HTTP 200 errcode failures as sent"),
    "feishu": (
        "feishu",
        "Apprise cannot sign Feishu requests and reports its HTTP 200 error codes as sent",
    ),
    "lark": (
        "lark",
        "Apprise cannot sign Lark requests and reports its HTTP 200 error codes as sent",
    ),
}
# The robots' own API hosts: `https://qyapi…/webhook/send?key=` and `https://open.larksuite…`
# are parsed by Apprise into the plugins above; `json://` to these hosts has the same blind spot.
NATIVE_HOSTS = {
    "qyapi.weixin.qq.com": "wecombot",
    "oapi.dingtalk.com": "dingtalk",
    "open.feishu.cn": "feishu",
    "open.larksuite.com": "lark",
}
GENERIC = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})  # the host is a host
_MENTION = re.compile(r"@(?=(?:everyone|here|channel|all|room)\b)", re.IGNORECASE)
_MIN_PIECE = 4  # URL pieces shorter than this are not masked: they would garble the text
_EXCERPT = 300
# The `format` of a stored rendering; older ones (no `format`) and plain text are sent as text.
_FORMAT = "markdown"


def _load() -> ModuleType:
    """The apprise package; ImportError when it is missing or older than `MIN_VERSION`."""
    import apprise

    version = tuple(int(p) for p in re.findall(r"\d+", apprise.__version__)[:2])
    if version < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        raise ImportError(f"apprise {apprise.__version__} is installed, pollerd needs >= {need}")
    return apprise


def _scheme(url: str) -> str:
    return url.partition("://")[0].strip().lower() if "://" in url else ""


def _native_fix(scheme: str) -> tuple[str, str]:
    kind, why = NATIVE[scheme]
    problem = f"{scheme}:// is not supported through Apprise: {why}"
    return problem, f'use the native channel: type = "{kind}"'


def _apprise_url(value: Secret) -> Secret:
    """Shape checks that need no Apprise. The URL is never echoed: it carries the tokens."""
    url = value.get().strip()
    scheme = _scheme(url)
    if not scheme:
        raise invalid("must be an Apprise URL", 'e.g. "ntfys://ntfy.sh/my-topic" or env:NAME')
    if scheme in NATIVE:
        raise invalid(*_native_fix(scheme))
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        host = ""
    if host in NATIVE_HOSTS:
        problem, fix = _native_fix(NATIVE_HOSTS[host])
        raise invalid(problem.replace(f"{NATIVE_HOSTS[host]}://", host, 1), fix)
    return value


def _instantiate(apprise: ModuleType, url: str) -> Any:
    """The plugin instance for one URL (None when Apprise cannot use it), set up the way
    pollerd sends: one attempt, no redirects by default, nothing written to disk."""
    asset = apprise.AppriseAsset(storage_mode="memory", http_redirects=False)
    return apprise.Apprise.instantiate(url, asset=asset)


def _usable(apprise: ModuleType, url: str) -> None:
    """Raise a config error unless Apprise turns `url` into exactly one usable service."""
    from apprise.manager_plugins import NotificationManager
    from apprise.utils.parse import parse_urls

    if len(parse_urls(url)) != 1:
        raise invalid("holds more than one URL", "give each URL a channel of its own", "url")
    scheme = _scheme(url)
    plugins = NotificationManager()
    if scheme not in plugins:
        fix = "check the scheme against Apprise's list of services"
        raise invalid(f"Apprise has no service for {scheme}://", fix, "url")
    plugin = plugins[scheme]
    name = getattr(plugin, "service_name", scheme)
    if not getattr(plugin, "enabled", True):
        needs = (getattr(plugin, "requirements", None) or {}).get("packages_required")
        fix = (
            f"pip install {' '.join(needs) if isinstance(needs, list) else needs}" if needs else ""
        )
        raise invalid(f"Apprise's {name} service is disabled on this machine", fix, "url")
    service = _instantiate(apprise, url)
    if service is None:
        fix = f"check it against the {name} URL format in Apprise's documentation"
        raise invalid(f"Apprise cannot parse this {name} URL", fix, "url")
    protocols = _protocols(service)
    native = sorted(protocols & NATIVE.keys())
    if native:  # a native hook URL (https://qyapi…) that Apprise maps onto a robot plugin
        raise invalid(*_native_fix(native[0]), "url")


def _protocols(service: Any) -> set[str]:
    found: set[str] = set()
    for attr in ("protocol", "secure_protocol"):
        value = getattr(service, attr, None)
        found.update([value] if isinstance(value, str) else (value or ()))
    return {p.lower() for p in found}


class AppriseChannel(Channel):
    """Sends the summary (title) and detail lines (Markdown body) to one Apprise URL, one
    attempt per send."""

    kind: ClassVar[str] = "apprise"
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)
    flavour: ClassVar[str] = "markdown"

    class Options(ChannelOptions):
        url: Annotated[Secret, AfterValidator(_apprise_url)]
        title: str | None = None  # a fixed title; the alert's summary line when unset
        timeout: Duration = timedelta(seconds=10)

        @model_validator(mode="after")
        def _apprise_accepts(self) -> AppriseChannel.Options:
            try:
                apprise = _load()
            except ImportError as exc:
                problem = (
                    "the apprise channel needs the apprise package, which is not installed"
                    if exc.name == "apprise"
                    else f"the apprise channel cannot use the installed apprise: {exc}"
                )
                raise invalid(problem, INSTALL, "type") from None
            _usable(apprise, self.url.get().strip())
            return self

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        url = self.options.url.get().strip()
        self._masks = _pieces(url)
        self._where = _describe(url)
        self._service: NotifyBase | None = None
        self._apprise = self._build(url)

    def _build(self, url: str) -> Apprise | None:
        apprise = _load()
        service = _instantiate(apprise, url)
        if service is None:
            return None
        self._service = service
        seconds = self.options.timeout.total_seconds()
        service.retry = 0  # the outbox retries, with back-off and dead letters; ?retry= loses
        service.socket_connect_timeout = seconds  # replace Apprise's 4 s cto/rto defaults
        service.socket_read_timeout = seconds
        bridge: Apprise = apprise.Apprise(asset=service.asset)
        bridge.add(service)
        return bridge

    def render(self, event: Event) -> str:
        """`{"title", "body", "format"}` as JSON, from the `markdown` template flavour."""
        return self._stored(self.message(event, fits=self.fits))

    def render_digest(self, events: list[Event]) -> str:
        """The `markdown` digest, stored like one alert."""
        return self._stored(self.digest_message(events, fits=self.fits))

    def fits(self, message: Message) -> bool:
        """Within the service's `body_maxlen` (a title the service has no field for is
        written into the body, `# title`, and counts too); no known service: no limit."""
        service = self._service
        if service is None:
            return True
        title, body = self._payload(message)
        size = len(body) + (len(title) + 4 if service.title_maxlen <= 0 and title else 0)
        return size <= service.body_maxlen

    def _payload(self, message: Message) -> tuple[str, str]:
        """(title, body) as sent: the summary as title and the body without its bold summary
        line; with a fixed title, the whole body. A user template whose body does not start
        with the bold summary is sent whole."""
        if self.options.title:
            return _MENTION.sub("@\u2060", self.options.title), message.body
        head, _, rest = message.body.partition("\n")
        if head.strip() == f"**{message.title}**" and rest.strip():
            return message.title, rest.strip("\n")
        return message.title, message.body

    def _stored(self, message: Message) -> str:
        title, body = self._payload(message)
        payload = {"title": title, "body": body, "format": _FORMAT}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def send(self, event: Event, rendered: str) -> SendResult:
        if self._apprise is None:
            fix = "check the channel's url against Apprise's documentation (pollerd check)"
            return SendResult.permanent(
                f"{self._where}: Apprise cannot use the URL; {fix}", "channel"
            )
        title, body, body_format = _message(rendered)
        timeout = self.options.timeout.total_seconds()
        try:
            # Sends run in Apprise's own thread pool (its plugins use blocking `requests`), so
            # the event loop is free; `timeout` bounds the call even if a socket hangs.
            result = await self._apprise.async_notify(
                body=body, title=title, body_format=body_format, timeout=timeout
            )
        except Exception as exc:  # noqa: BLE001 - a third-party plugin may raise anything
            return SendResult.retry(f"{self._where}: {type(exc).__name__}: {self._mask(str(exc))}")
        try:
            return self._classify(result, timeout)
        finally:
            result.close()

    def _classify(self, result: AppriseResult, timeout: float) -> SendResult:
        from apprise import AppriseResultStatus as Status

        if result.status == Status.SUCCESS:
            return SendResult.ok(f"{self._where}: sent")
        if result.status == Status.NOMATCH:
            return SendResult.permanent(
                f"{self._where}: Apprise had no service to notify", "channel"
            )
        reason = self._reason(result)
        if len(result) == 0:  # refused before any service ran: this stored message is unusable
            return SendResult.permanent(f"{self._where}: Apprise refused the message{reason}")
        if result.status == Status.TIMEOUT:
            return SendResult.retry(f"{self._where}: no answer within {timeout:g}s{reason}")
        return SendResult.retry(f"{self._where}: not sent{reason}")

    def _reason(self, result: AppriseResult) -> str:
        """Apprise's first WARNING-or-worse line (its only record of why), masked, one line."""
        for entry in result.logs():
            if str(entry.level).upper() in ("WARNING", "ERROR", "CRITICAL"):
                text = " ".join(self._mask(str(entry.message)).split())
                return f": {text[:_EXCERPT]}" if text else ""
        return ""

    def where(self) -> str:
        return self._where

    def secrets(self) -> list[str]:
        return self._masks

    def _mask(self, text: str) -> str:
        return self.scrub(text)


def _message(rendered: str) -> tuple[str, str, str]:
    """(title, body, Apprise body format) of what `render` stored (renderings stored before
    the templates have no `format` and are text); any other text (a plain-text rendering from
    the base class) is sent as text with its first line as the title."""
    try:
        data = json.loads(rendered)
        body_format = "markdown" if data.get("format") == _FORMAT else "text"
        return str(data["title"]), str(data["body"]), body_format
    except (ValueError, KeyError, TypeError, AttributeError):
        text = _MENTION.sub("@\u2060", rendered)
        head, _, rest = text.partition("\n")
        return head, rest or head, "text"


def _describe(url: str) -> str:
    """`apprise json://host:port` for the generic HTTP schemes (their host is a host), else
    `apprise tgram://`: elsewhere the "host" is often the token (`tgram://BOTTOKEN/…`)."""
    scheme = _scheme(url)
    if scheme in GENERIC:
        try:
            parts = urlsplit(url)
            port = f":{parts.port}" if parts.port else ""
            return f"apprise {scheme}://{parts.hostname or ''}{port}"
        except ValueError:
            pass
    return f"apprise {scheme}://"


def _pieces(url: str) -> list[str]:
    """Every part of the URL that may be a credential, longest first, to blank out of the
    texts Apprise produces (its log lines quote URLs, hosts and paths). The host of a generic
    HTTP scheme stays readable; its user, password, path and query are masked."""
    rest = url.partition("://")[2]
    netloc, tail = re.match(r"([^/?#]*)(.*)", rest).groups()  # type: ignore[union-attr]
    userinfo, _, hostport = netloc.rpartition("@")
    found = {url, *re.split(r"[:@]", userinfo)}
    if _scheme(url) not in GENERIC:
        found.update([netloc, hostport, *hostport.split(":")])
    path, _, query = tail.partition("#")[0].partition("?")
    found.update(path.split("/"))
    found.update(value for _, value in parse_qsl(query, keep_blank_values=True))
    found.update([unquote(piece) for piece in found])
    return sorted((p for p in found if len(p) >= _MIN_PIECE), key=len, reverse=True)
