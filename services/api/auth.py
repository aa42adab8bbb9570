"""Who may call what: API keys with a scope, and portal tokens for one account.

Every `/v1` route declares the scope it needs (`Security(authorize, scopes=[...])`, which also
puts it in the OpenAPI document) and whether portal tokens may call it (`PORTAL`, the
`x-portal-token` extension). Scopes nest: `admin` includes `write`, which includes `read`;
`ops` stands alone. A route may also declare a route-only scope that several key scopes reach
(`ROUTE_SCOPES`: `analytics`, reached by `ops` and `admin` keys). 401 `unauthenticated`
without a valid credential, 403 `forbidden` with one that does not reach the route (docs/API.md
has the table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_args

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from domain.commands import Command
from services.api.errors import FORBIDDEN, UNAUTHENTICATED, HttpError
from services.api.keys import KEY_PREFIX, ApiKey, Scope, verify_key
from services.api.portal_tokens import TOKEN_PREFIX, PortalToken
from services.api.resources import Resources

# What a key of each scope may do.
GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.read: frozenset({Scope.read}),
    Scope.write: frozenset({Scope.read, Scope.write}),
    Scope.admin: frozenset({Scope.read, Scope.write, Scope.admin}),
    Scope.ops: frozenset({Scope.ops}),
}
# Route-only scopes: no key has them; the key scopes listed reach them.
ANALYTICS = "analytics"
ROUTE_SCOPES: dict[str, frozenset[Scope]] = {ANALYTICS: frozenset({Scope.ops, Scope.admin})}
# The scope each command type needs through `POST /v1/accounts/{id}/commands`; any type not
# listed (grant, revoke, purchase, open_account, change_plan, configure_top_up, migrate,
# request_top_up, renew, expire, fail_top_up, and any added later) needs `admin`.
COMMAND_SCOPES: dict[str, Scope] = {
    "consume": Scope.write,
    "reserve": Scope.write,
    "capture": Scope.write,
    "release": Scope.write,
    "extend_hold": Scope.write,
    # The product's own setting (seed 000: a customer limits one QR code), as for spends.
    "set_resource_limit": Scope.write,
}
COMMAND_TYPES = frozenset(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(Command)[0])
)
# The only commands a portal token may send, for its own account.
PORTAL_COMMANDS = frozenset({"request_top_up"})
# Route extension: portal tokens may call this route (for their own account only).
PORTAL_EXTENSION = "x-portal-token"
PORTAL: dict[str, Any] = {PORTAL_EXTENSION: True}

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="ck_<key_id>.<secret> (API key) or pt_<payload>.<signature> (portal token)",
    description="An API key (`credits keys create`) or a portal token (`POST /v1/portal-tokens`).",
)


@dataclass(frozen=True)
class KeyCaller:
    key: ApiKey

    def may(self, scope: Scope) -> bool:
        return scope in GRANTS[self.key.scope]

    def reaches(self, route_scope: str) -> bool:
        """A route's scope: a key scope this key grants, or a route-only one it reaches."""
        return reaches(self.key.scope, route_scope)


def reaches(key_scope: Scope, route_scope: str) -> bool:
    if route_scope in ROUTE_SCOPES:
        return key_scope in ROUTE_SCOPES[route_scope]
    return Scope(route_scope) in GRANTS[key_scope]


@dataclass(frozen=True)
class PortalCaller:
    token: PortalToken


Caller = KeyCaller | PortalCaller


async def authorize(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller, if it may call this route: its key has the route's scope, or it is a portal
    token, the route takes portal tokens, and the path's account (if any) is the token's."""
    caller = await _authenticate(request, credentials)
    # One scope per route (a dependency chain may name it more than once).
    (needed,) = set(security_scopes.scopes)
    if isinstance(caller, KeyCaller):
        if not caller.reaches(needed):
            raise forbidden(f"this route needs a key with scope {needed}")
        return caller
    extra = getattr(request.scope.get("route"), "openapi_extra", None) or {}
    if not extra.get(PORTAL_EXTENSION):
        raise forbidden("a portal token cannot call this route")
    path_account = request.path_params.get("account_id")
    if path_account is not None:
        require_account(caller, str(path_account))
    return caller


def require_account(caller: Caller, account_id: str) -> None:
    """A portal token acts for its own account only; keys act for any."""
    if isinstance(caller, PortalCaller) and caller.token.account_id != account_id:
        raise forbidden("this portal token is for another account")


def require_command(caller: Caller, account_id: str, command_type: Any) -> None:
    """The route needs `write`; the command's type may need more (`COMMAND_SCOPES`)."""
    if isinstance(caller, PortalCaller):
        require_account(caller, account_id)
        if command_type not in PORTAL_COMMANDS:
            raise forbidden(f"a portal token may send only {', '.join(sorted(PORTAL_COMMANDS))}")
        return
    # An unknown or missing type is the ledger's invalid_command, which any writer may learn.
    known = isinstance(command_type, str) and command_type in COMMAND_TYPES
    needed = COMMAND_SCOPES.get(command_type, Scope.admin) if known else Scope.write
    if not caller.may(needed):
        raise forbidden(f"command {command_type} needs a key with scope {needed.value}")


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    if credentials is None:
        raise unauthenticated("send Authorization: Bearer <API key or portal token>")
    resources: Resources = request.app.state.resources
    presented = credentials.credentials
    if presented.startswith(TOKEN_PREFIX):
        token = resources.portal_tokens.verify(presented)
        if token is None:
            raise unauthenticated("the portal token is invalid or has expired")
        return PortalCaller(token)
    if presented.startswith(KEY_PREFIX):
        pool = await resources.pool()
        async with pool.acquire() as conn:
            key = await verify_key(conn, presented)
        if key is not None:
            return KeyCaller(key)
    raise unauthenticated("the API key is invalid or revoked")


def unauthenticated(message: str) -> HttpError:
    return HttpError(401, UNAUTHENTICATED, message, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> HttpError:
    return HttpError(403, FORBIDDEN, message)
