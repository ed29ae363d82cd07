"""The API key and the body-size limit, checked before a request reaches a route.

A plain ASGI middleware: Starlette's @app.middleware("http") wraps every request and response in extra tasks and
queues, which cost more than a batched classification of one text. The body is counted as it arrives, so a
chunked upload (no Content-Length) is stopped at the limit instead of being buffered whole first."""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse

from .errors import ApiError


class Guard:
    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.max_body = app, max_body_bytes
        self.expected = api_key.encode() if api_key is not None else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.expected is not None and not _authorized(headers.get(b"authorization", b""), self.expected):
            return await _refuse(
                ApiError(
                    401,
                    "Missing or wrong API key: send Authorization: Bearer <key>.",
                    "authentication_error",
                    code="invalid_api_key",
                ),
                scope,
                receive,
                send,
            )
        size = headers.get(b"content-length", b"").decode("latin-1")
        if size.isdigit() and int(size) > self.max_body:
            return await _refuse(
                _too_big(f"Request body of {size} bytes is over the limit of {self.max_body}."), scope, receive, send
            )
        messages, total = [], 0
        while True:  # read the body here, counting: the route then reads it from memory
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            total += len(message.get("body", b""))
            if total > self.max_body:
                return await _refuse(
                    _too_big(f"Request body over the limit of {self.max_body} bytes."), scope, receive, send
                )
            if not message.get("more_body"):
                break

        async def replay():
            return (
                messages.pop(0) if messages else await receive()
            )  # then the live channel: disconnects reach the route

        await self.app(scope, replay, send)


def _authorized(header: bytes, key: bytes) -> bool:
    """`Bearer KEY`; the scheme's case does not matter (RFC 7235), the key is compared in constant time."""
    scheme, _, token = header.strip().partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)


def _too_big(message: str) -> ApiError:
    return ApiError(413, message, code="max_body_bytes")


async def _refuse(error: ApiError, scope, receive, send):
    await JSONResponse(error.body, status_code=error.status)(scope, receive, send)
