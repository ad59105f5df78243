"""CSRF tokens for the console's and the connect pages' forms: an HMAC of what the form is
bound to (the session token, before sign-in the pre-session token, a connect session and
its browser), under a key derived from the current encryption key. Every POST carries it in
a hidden field and is refused (403) when it does not match the cookie the request came
with; another site can neither read the cookie nor forge the HMAC. Each binding is signed
with its purpose, so a token one page hands out is never the token of another kind of
form, whatever value a cookie is made to hold.
"""

from __future__ import annotations

import hashlib
import hmac

from models.errors import ApiError, ErrorDetail

# What the derived key is for, so it is never the same as any other use of the key.
_PURPOSE = b"passthru console csrf v1"
FIELD = "csrf_token"


class Csrf:
    def __init__(self, encryption_key: str) -> None:
        self._key = hmac.new(encryption_key.encode(), _PURPOSE, hashlib.sha256).digest()

    def token_for(self, purpose: str, binding: str) -> str:
        """The token of `binding` for forms of `purpose` (`console`, `sign-in`, `connect`)."""
        signed = f"{purpose}\n{binding}".encode()
        return hmac.new(self._key, signed, hashlib.sha256).hexdigest()

    def check(self, purpose: str, binding: str | None, submitted: str | None) -> None:
        """Raise a 403 unless `submitted` is the token of `binding` for `purpose`."""
        expected = self.token_for(purpose, binding).encode() if binding else b""
        if not expected or not hmac.compare_digest(expected, (submitted or "").encode()):
            raise ApiError(
                "csrf_failed",
                [ErrorDetail(FIELD, "the form has expired; reload the page and try again")],
                403,
            )
