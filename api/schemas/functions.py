"""`GET /functions`: one passthrough function per catalog app."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class FunctionOut(BaseModel):
    name: str
    app: str
    type: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema of the function's params


class FunctionList(BaseModel):
    functions: list[FunctionOut]
