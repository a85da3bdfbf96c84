"""Uploads go to disk chunk by chunk, with a size limit, and never outlive their request.

A body over `UPLOAD_MAX_BYTES` is cut off as soon as it is known (the Content-Length up front, the
count while it streams) and its partial file is deleted; a client that disconnects mid-upload
leaves nothing either, whatever the parser raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse

from updates.engine.errors import ExitCode, OrchestratorError


class UploadTooLarge(OrchestratorError):
    """The request body exceeds UPLOAD_MAX_BYTES; nothing of it was kept."""

    code = "too_large"
    exit_code = ExitCode.INVALID
    http_status = 413


class UploadIncomplete(OrchestratorError):
    """The body ended before its Content-Length (the client went away); nothing of it was kept."""

    code = "upload_incomplete"
    exit_code = ExitCode.INVALID
    http_status = 400


class LimitedUploadHandler(TemporaryFileUploadHandler):
    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: Any = None
    ) -> None:
        if content_length > settings.UPLOAD_MAX_BYTES:
            raise UploadTooLarge(_too_large(content_length))
        self.received = 0
        Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > settings.UPLOAD_MAX_BYTES:
            self.upload_interrupted()
            raise UploadTooLarge(_too_large(self.received))
        return super().receive_data_chunk(raw_data, start)

    def upload_complete(self) -> None:
        # The multipart parser takes a body that simply stops as complete; the stream knows better.
        stream = getattr(self.request, "_stream", None)
        position, limit = getattr(stream, "_pos", None), getattr(stream, "limit", None)
        if position is not None and limit is not None and position < limit:
            self.upload_interrupted()
            raise UploadIncomplete(f"the upload ended after {position} of {limit} bytes")


def _too_large(size: int) -> str:
    return f"upload of {size}+ bytes exceeds the limit of {settings.UPLOAD_MAX_BYTES} bytes (ORCH_UPLOAD_MAX_BYTES)"


def uploads_discard(request: HttpRequest) -> None:
    """Delete every temporary upload file of this request (a closed temporary file is removed)."""
    for handler in getattr(request, "_upload_handlers", None) or ():
        if isinstance(handler, TemporaryFileUploadHandler):
            handler.upload_interrupted()
    files = getattr(request, "_files", None)
    for _, items in files.lists() if files is not None else ():
        for item in items:
            with contextlib.suppress(OSError):
                item.close()


class UploadCleanupMiddleware:
    """After every request, whatever happened in it (an exception, a dropped connection)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        finally:
            uploads_discard(request)
