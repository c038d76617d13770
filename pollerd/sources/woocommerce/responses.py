"""What a WordPress answer says, read from status, headers and body (never from the URL, which
may carry the keys): a REST error's code and message, a bad OAuth signature, the GET arguments
of a route schema (the version gate), the paging headers. An HTML page from a WAF or proxy is
not a REST error and reads as ("", "")."""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = ["content_type", "get_args", "int_header", "is_bad_signature", "wp_error"]


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
    if not isinstance(schema, dict) or not isinstance(schema.get("endpoints"), list):
        return None
    for endpoint in schema["endpoints"]:
        if not isinstance(endpoint, dict):
            continue
        methods = endpoint.get("methods")
        args = endpoint.get("args")
        if isinstance(methods, list) and "GET" in methods and isinstance(args, dict):
            return set(args)
    return None


def int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def content_type(response: httpx.Response) -> str:
    return response.headers.get("Content-Type", "no content type").split(";")[0]
