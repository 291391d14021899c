"""The API speaks JSON only: request bodies are strictly parsed JSON, and answers are JSON
whatever the client asks for."""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404
from rest_framework.exceptions import NotAcceptable, ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every body (json.loads with an option builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


class StrictJSONParser(JSONParser):
    """UTF-8 JSON without NaN/Infinity. Absurd nesting exhausts the decoder's recursion
    limit; that is the client's fault, so it is a 400 rather than the 500 DRF would give."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
            if text.startswith("\ufeff"):  # as json.loads says it
                raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
            return _DECODER.decode(text)
        except UnicodeDecodeError as exc:
            raise ParseError("The body is not valid UTF-8.") from exc
        except RecursionError as exc:
            raise ParseError("The JSON is nested too deeply.") from exc
        except ValueError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc


class JSONFallbackNegotiation(DefaultContentNegotiation):
    """Honours `Accept` and `?format=` where a view offers a choice (the schema's JSON or
    YAML), but answers an unsatisfiable one (`Accept: text/html`, `?format=xml`) with the view's
    own format instead of DRF's 406 or 404: the contract promises JSON, not a refusal."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        # What nearly every request asks (no Accept, */* or the one format the view offers),
        # answered without parsing the header: what DRF's negotiation answers to it.
        if (
            len(renderers) == 1
            and format_suffix is None
            and request.META.get("HTTP_ACCEPT", "*/*") in ("*/*", renderers[0].media_type)
            and not request.META.get("QUERY_STRING")  # so no ?format= either
        ):
            return renderers[0], renderers[0].media_type
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (NotAcceptable, Http404):
            return renderers[0], renderers[0].media_type
