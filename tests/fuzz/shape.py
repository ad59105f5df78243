"""The error shape of the public contract: `{"error": str, "error_details": [{"field": str,
"message": str}]}`, for every 4xx and for each rejected item of a batch."""

from __future__ import annotations

import json
from typing import Any


def shape_problem(payload: Any) -> str | None:
    """Why `payload` is not `{"error": str, "error_details": [{"field", "message"}]}`."""
    if not isinstance(payload, dict):
        return "the body is not a JSON object"
    if not isinstance(payload.get("error"), str):
        return "'error' is missing or not a string"
    details = payload.get("error_details")
    if not isinstance(details, list):
        return "'error_details' is missing or not a list"
    for detail in details:
        if not (
            isinstance(detail, dict)
            and isinstance(detail.get("field"), str)
            and isinstance(detail.get("message"), str)
        ):
            return f"an error detail is not {{field: str, message: str}}: {str(detail)[:200]}"
    return None


def response_shape_problem(status: int, content: bytes, path: str) -> str | None:
    """The error shape of a 4xx (and of each rejected item of a batch)."""
    try:
        payload = json.loads(content) if content else None
    except ValueError:
        payload = None
        if 400 <= status < 500:
            return f"{status} with a body that is not JSON: {content[:200]!r}"
    if 400 <= status < 500:
        problem = shape_problem(payload)
        return f"{status} not in the error shape: {problem}" if problem else None
    if path == "/function-calls/batch" and status == 202 and isinstance(payload, dict):
        for item in payload.get("rejected") or []:
            problem = shape_problem(item)
            if problem:
                return f"a rejected batch item is not in the error shape: {problem}"
    return None
