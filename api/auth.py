"""Who is calling: the API key in `Authorization: Bearer <key>`, resolved to its tenant.

One path for every request. `RequestLimits` asks it before a byte of a body is read, so a
client without a valid key cannot make the API read, hold or parse anything; the route's
`CurrentTenant` dependency then takes the tenant found there (or asks here, for requests
without a body). A key's tenant is remembered for `tenant_cache.TTL_S`, a refused key for
`tenant_cache.REFUSED_TTL_S`; lookups of keys not seen valid are bounded (`key_lookups`).
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import Headers
from starlette.types import Scope

from api.errors import database_unavailable
from api.key_lookups import KeyLookups
from api.tenant_cache import TenantCache
from models.crypto.secrets import hash_api_key
from models.db.tables import Tenant
from models.errors import ApiError, ErrorDetail

# Where a request's tenant is kept once known (Starlette's `request.state`).
_STATE_KEY = "tenant"


def unauthorized(message: str) -> ApiError:
    return ApiError("unauthorized", [ErrorDetail("Authorization", message)], 401)


class Authenticator:
    def __init__(self, engine: Engine, cache: TenantCache) -> None:
        self._cache = cache
        self._lookups = KeyLookups(engine)

    async def tenant_for(self, authorization: str | None) -> Tenant:
        """The tenant the header's key belongs to; raises a 401 ApiError, or the database's
        own error when it cannot be asked."""
        if not authorization:
            raise unauthorized("send 'Authorization: Bearer <API key>'")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise unauthorized("use the Bearer scheme: 'Authorization: Bearer <API key>'")
        tenant = await self.tenant_by_hash(hash_api_key(key.strip()))
        if tenant is None:
            raise unauthorized("this API key is not valid")
        return tenant

    async def tenant_by_hash(self, key_hash: str) -> Tenant | None:
        """The tenant whose API key has this SHA-256 (the console's sessions keep it), or
        None; a 503 ApiError when the database cannot be asked, or when too many keys not
        seen valid are being looked up."""
        tenant = self._cache.get(key_hash)
        if tenant is not None:
            return tenant
        if self._cache.refused(key_hash):
            return None
        try:
            if self._cache.known(key_hash):
                tenant = await self._lookups.known(key_hash)
            else:
                tenant = await self._lookups.unknown(key_hash)
        except (OperationalError, PoolTimeout) as exc:
            raise database_unavailable(exc) from None
        if tenant is None:
            self._cache.refuse(key_hash)
        else:
            self._cache.put(key_hash, tenant)
        return tenant

    async def check(self, scope: Scope) -> None:
        """`RequestLimits`' hook: find the request's tenant and remember it, or raise."""
        tenant = await self.tenant_for(Headers(scope=scope).get("authorization"))
        scope.setdefault("state", {})[_STATE_KEY] = tenant


def remembered(scope: Scope) -> Tenant | None:
    tenant: Tenant | None = scope.get("state", {}).get(_STATE_KEY)
    return tenant
