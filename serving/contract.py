"""What the APIs promise beyond BentoML's generated OpenAPI document: a sentence must hold a visible character,
and every status code the service answers is documented with the body it really carries."""

from __future__ import annotations

import copy
import json
import re
import unicodedata


def _invisible_class() -> str:
    """A regex class body of every whitespace and Unicode format character (Cf: zero-width spaces, joiners, BOM).

    Listed one by one (no \\s, whose reach differs between Python and the ECMA 262 regexes of OpenAPI), and only
    the Basic Multilingual Plane's: ECMA 262 has no escape for the astral planes' few (tag characters, musical
    notation controls), and fuzzers refuse the pattern then.
    """
    invisible = [chr(code) for code in range(0x10000) if chr(code).isspace() or unicodedata.category(chr(code)) == "Cf"]
    ranges: list[list[str]] = []
    for char in invisible:
        if ranges and ord(char) == ord(ranges[-1][1]) + 1:
            ranges[-1][1] = char
        else:
            ranges.append([char, char])
    return "".join(first if first == last else f"{first}-{last}" for first, last in ranges)


# A sentence made only of whitespace and format characters is as empty as a blank one (one was scored about
# 1.05). The same pattern goes into the OpenAPI document, so a fuzzer generates only sentences the API accepts.
VISIBLE_TEXT = re.compile(f"[^{_invisible_class()}]")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what was wrong, in one line"},
        "detail": {"type": "array", "items": {"type": "object"}, "description": "pydantic's errors, field by field (400)"},
    },
}
ERROR_STATUSES = {
    400: "The body is not valid JSON, breaks the input schema, or holds a pair the model refused (unscorable_input)",
    401: "Missing or wrong API key (only when KSTS_SERVE_API_KEY is set)",
    408: "The body did not arrive within serve.body_timeout_seconds",
    413: "The body is larger than serve.max_request_bytes",
    415: "The body is a form (multipart or urlencoded): the APIs take JSON",
    500: "A fault of the service (never client input)",
    503: "Over capacity: the batch queue would wait longer than serve.max_latency_ms (Retry-After)",
    504: "The request ran longer than serve.timeout_seconds",
}


def documented_spec(spec: dict, api_paths: tuple[str, ...], bearer_auth: bool) -> bytes:
    """BentoML's OpenAPI document with each API's error answers as the service gives them.

    BentoML documents a 400's `detail` as a string (it is pydantic's list of errors) and none of the statuses
    the request guard answers; with an API key the document also declares the bearer scheme.
    """
    spec = copy.deepcopy(spec)
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    if bearer_auth:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path in api_paths:
        operation = spec["paths"][path]["post"]
        operation["requestBody"]["required"] = True  # an empty body is refused with 400 (BentoML reads it as {})
        success = {str(status): answer for status, answer in operation["responses"].items()}["200"]
        operation["responses"] = {
            "200": success,
            **{str(status): {"description": text, "content": error_content} for status, text in ERROR_STATUSES.items()},
        }
        if bearer_auth:
            operation["security"] = [{"bearer": []}]
    return json.dumps(spec).encode()
