"""HTTP Strict Transport Security, when the operator says passthru is reached over https.

With `PASSTHRU_PUBLIC_URL` on https, every answer carries `Strict-Transport-Security:
max-age=31536000`: a browser that has seen it once goes to this host over https only for a
year, so nobody on its network can serve it a plain-http page of this host (and plant or
read a cookie there). `includeSubDomains` is left out: the operator's other hosts are not
passthru's to bind. A browser ignores the header on a plain-http answer.

`api/baseline_headers.py`'s middleware adds it (`headers_for(public_origin)`). Starlette
answers an unexpected exception outside every middleware, so the handler of those 500s adds
it itself (api/errors.py).
"""

from __future__ import annotations

HEADER = {"Strict-Transport-Security": "max-age=31536000"}


def wanted(public_origin: str) -> bool:
    return public_origin.startswith("https://")


def headers_for(public_origin: str) -> dict[str, str]:
    """HEADER as a response's headers, when `public_origin` is https; else none."""
    return dict(HEADER) if wanted(public_origin) else {}
