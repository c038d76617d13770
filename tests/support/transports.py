"""`RecordingTransport`: a real httpx transport that remembers every request that went on the
wire and the status and headers of every answer, for tests that assert what a client sent
(pagination parameters, auth headers, what went to a storage URL) against a loopback
simulator. Subclass it to add views of the record (`graphql()`, `queries()`) or to play a
proxy (`rewrite`, `answer`)."""

from __future__ import annotations

import httpx


class RecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.answers: list[tuple[int, httpx.Headers]] = []

    def rewrite(self, request: httpx.Request) -> httpx.Request:
        """The request as it reaches the server (after it was recorded as the client sent it)."""
        return request

    def answer(self, response: httpx.Response) -> httpx.Response:
        """The response as it reaches the client (before its status and headers are recorded)."""
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.answer(await self.inner.handle_async_request(self.rewrite(request)))
        self.answers.append((response.status_code, response.headers))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
