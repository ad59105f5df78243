"""passthru's exceptions.

PassthruError
├── ApiError                 answered to a caller as {error, error_details}
│   ├── InvalidRequest       400: will not execute (bad params, host, credentials)
│   ├── Unauthorized         401
│   ├── NotFound             404
│   ├── Conflict             409
│   ├── TooLarge             413: a request body over its limit
│   └── TooManyRequests      429: a per-tenant bound (with Retry-After)
├── ConfigError              an operator's setting or catalog file is wrong
├── CredentialsError         stored credentials cannot be read or used
│   └── SecretOfAnotherRow   a ciphertext bound to another row, copied onto this one
└── IllegalTransition        a status change its state machine forbids (models/machine.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field


class PassthruError(Exception):
    """Base of every error passthru raises on purpose."""


@dataclass(frozen=True)
class ErrorDetail:
    field: str
    message: str


@dataclass
class ApiError(PassthruError):
    error: str
    details: list[ErrorDetail] = field(default_factory=list)
    status_code: int = 400
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After on a 429

    def __post_init__(self) -> None:
        super().__init__(self.error)

    def body(self) -> dict[str, object]:
        return {
            "error": self.error,
            "error_details": [{"field": d.field, "message": d.message} for d in self.details],
        }


def invalid(field_name: str, message: str, error: str = "invalid_params") -> ApiError:
    return ApiError(error, [ErrorDetail(field_name, message)], 400)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError("not_found", [ErrorDetail(what, f"no {what} {ident!r} for this tenant")], 404)


class ConfigError(PassthruError):
    """An operator-supplied setting or file is invalid; the message says how to fix it."""


class CredentialsError(PassthruError):
    """Stored credentials cannot be decrypted or do not fit the app."""


class SecretOfAnotherRow(CredentialsError):
    """A ciphertext opens, but was encrypted for another row: it was copied onto this one."""


class IllegalTransition(PassthruError):
    """A status change that the row's state machine does not allow."""

    def __init__(self, what: str, current: str, target: str) -> None:
        super().__init__(f"a {what} cannot go from {current} to {target}")
        self.what, self.current, self.target = what, current, target
