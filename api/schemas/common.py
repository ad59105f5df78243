"""What the bodies of several resources share: column lengths, the strict base of request
bodies, and the error shape."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Lengths of the database columns a value is stored in (models/db/tables.py), so no database
# ever refuses one.
USER_ID_CHARS = 200
ID_CHARS = 40
APP_CHARS = 80
FUNCTION_CHARS = 120
IDEMPOTENCY_KEY_CHARS = 200


class StrictIn(BaseModel):
    """A request body: a field it does not know is a 400, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetailOut(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    error: str
    error_details: list[ErrorDetailOut]
