"""Kaltura's wire format: request parameters in, JSON or XML envelopes out (facts.md "Wire format").

Parameters arrive three ways and all end up as one nested dict of strings:
- form fields with brackets: ``filter[objectType]=KalturaEntryVendorTaskFilter``;
- colon notation: ``filter:objectType=...`` (and ``1:filter:statusIn`` in a multirequest);
- a JSON body (what the official client sends): ``{"filter": {"objectType": ...}}``.
``<field>__null`` sets a field to null (``NULL`` below). Query-string parameters merge with the body.

Responses: ``format=1`` is JSON; anything else (the official client sends ``format=2``) is the XML
envelope ``<xml><result>...</result><executionTime>..</executionTime></xml>`` that the client
parses with lxml. Errors are KalturaAPIException objects inside ``result``, with HTTP 200.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from emulators.kaltura.errors import KalturaAPIError


class _Null:
    """A field explicitly set to null (``field__null``), as opposed to a field not sent."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()
_KEY_PART = re.compile(r"[^\[\]:]+")


class KMap(dict):
    """A Kaltura map (e.g. ``relatedObjects``): an object in JSON, ``<item><itemKey>`` in XML."""


# ----------------------------------------------------------------------------- parsing


def _scalar(value: Any) -> Any:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return {str(i): _scalar(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    return str(value)


def _set_path(root: dict[str, Any], path: list[str], value: Any) -> None:
    node = root
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    leaf = path[-1]
    if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
        return  # ``filter`` and ``filter[x]`` both sent: the structured one wins
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        _merge(node[leaf], value)
    else:
        node[leaf] = value


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        _set_path(into, [key], value)


def _apply_nulls(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            value = _apply_nulls(value)
        if key.endswith("__null"):
            out[key[: -len("__null")]] = NULL
        elif not (key in out and out[key] is NULL):
            out[key] = value
    return out


def nest_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Bracket and colon keys → a nested dict."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _KEY_PART.findall(key)
        if path:
            _set_path(root, path, value)
    return root


def parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    """All request parameters (query string merged with a form or JSON body) as a nested dict."""
    params = nest_pairs(parse_qsl(query, keep_blank_values=True))
    ctype = (content_type or "").split(";")[0].strip().lower()
    if body:
        text = body.decode("utf-8", errors="replace")
        if ctype == "application/json" or (not ctype and text.lstrip().startswith("{")):
            try:
                doc = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"invalid JSON body: {exc}") from exc
            if isinstance(doc, dict):
                # JSON keys may themselves use brackets or colons (``"filter:objectType"``).
                for key, value in doc.items():
                    path = _KEY_PART.findall(str(key))
                    if path:
                        _set_path(params, path, _scalar(value))
        else:
            _merge(params, nest_pairs(parse_qsl(text, keep_blank_values=True)))
    return _apply_nulls(params)


def flat(params: dict[str, Any], base: str = "") -> dict[str, Any]:
    """A nested dict → bracket keys (for records and fault matching)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{base}[{key}]" if base else key
        if isinstance(value, dict):
            out.update(flat(value, name))
        else:
            out[name] = None if value is NULL else value
    return out


# ----------------------------------------------------------------------------- rendering

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return escape(_INVALID_XML_CHARS.sub("", str(value)))


def _xml_value(value: Any) -> str:
    """The inside of an element for ``value``."""
    if isinstance(value, KalturaAPIError):
        return _xml_error(value)
    if isinstance(value, KMap):
        return "".join(f"<item><itemKey>{_text(k)}</itemKey>{_xml_fields(v)}</item>" for k, v in value.items())
    if isinstance(value, dict):
        return _xml_fields(value)
    if isinstance(value, list | tuple):
        return "".join(f"<item>{_xml_value(v)}</item>" for v in value)
    return _text(value)


def _xml_fields(obj: dict[str, Any]) -> str:
    # Kaltura's XML serializer writes objectType first; null fields are left out.
    parts = []
    if "objectType" in obj:
        parts.append(f"<objectType>{_text(obj['objectType'])}</objectType>")
    for key, value in obj.items():
        if key == "objectType" or value is None:
            continue
        inner = _xml_value(value)
        parts.append(f"<{key}>{inner}</{key}>" if inner != "" else f"<{key}/>")
    return "".join(parts)


def _xml_error(err: KalturaAPIError) -> str:
    args = "".join(
        f"<item><objectType>KalturaApiExceptionArg</objectType><name>{_text(k)}</name><value>{_text(v)}</value></item>"
        for k, v in err.args_map.items()
    )
    return (
        f"<error><code>{_text(err.code)}</code><message>{_text(err.message)}</message>"
        f"<objectType>KalturaAPIException</objectType><args>{args}</args></error>"
    )


def render_xml(result: Any, execution_time: float) -> bytes:
    """The XML envelope the official client parses (``Client.parsePostResult``)."""
    inner = _xml_value(result) if result is not None else ""
    return (
        f'<?xml version="1.0" encoding="utf-8"?><xml><result>{inner}</result>'
        f"<executionTime>{execution_time:.6f}</executionTime></xml>"
    ).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, KalturaAPIError):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def render_json(result: Any) -> bytes:
    """``format=1``: the object itself (or the KalturaAPIException object), no envelope."""
    return json.dumps(_jsonable(result), ensure_ascii=False, separators=(",", ":")).encode()
