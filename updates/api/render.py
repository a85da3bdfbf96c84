"""Answers the server built itself, sent without validating them a second time.

ninja validates a route's return value against its response schema and dumps it again: for a
page of 50 deployments that is most of the request. The read routes that matter under load
return `trusted_json(project(Schema, data))` instead: the selector's dicts cut down to the
schema's fields (what validation would have kept), encoded by ninja's own encoder. The schema
stays the route's `response=` (the OpenAPI document), and tests/api/test_render.py holds the two
answers byte for byte equal on real rows.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from django.http import HttpResponse
from ninja.responses import NinjaJSONEncoder
from pydantic import BaseModel

Projector = Callable[[Any], Any]


def trusted_json(data: Any, status: int = 200) -> HttpResponse:
    body = json.dumps(data, cls=NinjaJSONEncoder)
    return HttpResponse(body, status=status, content_type="application/json; charset=utf-8")


def project(schema: type[BaseModel], data: Any) -> Any:
    """`data` with only the fields `schema` declares, nested models included."""
    return _model(schema)(data)


@cache
def _model(schema: type[BaseModel]) -> Projector:
    fields = [(name, _projector(info.annotation)) for name, info in schema.model_fields.items()]

    def project_model(data: Any) -> Any:
        return {name: each(data[name]) for name, each in fields}

    return project_model


def _same(value: Any) -> Any:
    return value


def iso_moment(value: Any) -> Any:
    """A datetime as ninja's encoder writes it (`DjangoJSONEncoder`: milliseconds, UTC as "Z"),
    done while projecting: the encoder's `default` hook cost more per value than the format."""
    if not isinstance(value, datetime):
        return value  # already text, or a type the encoder handles itself
    text = value.isoformat()
    if value.microsecond:
        text = text[:23] + text[26:]
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


def _projector(annotation: Any) -> Projector:
    """How to cut down a value of this type: models and lists of them, `X | None`, datetimes
    (as the encoder's text); else as is."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model(annotation)
    if annotation is datetime:
        return iso_moment
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        each = _projector(item)
        return _same if each is _same else (lambda values: [each(v) for v in values])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            each = _projector(inner[0])
            return _same if each is _same else (lambda value: None if value is None else each(value))
    return _same
