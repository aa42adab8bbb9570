"""The Plan & Usage page: `GET /` and its assets under `/portal/`, served from the package
(services/api/portal/), so the page needs no network but this service's.

The page itself is public and holds no data: it reads a portal token from the URL's fragment
(`/#token=pt_...`, never sent to a server) and calls the JSON routes with it. Headers: a strict
Content-Security-Policy (only this origin's scripts, styles and connections) whose
`frame-ancestors` is `CREDITS_PORTAL_FRAME_ANCESTORS`, and no referrer, so no address of the
page leaves with a click.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from services.api.errors import NOT_FOUND, HttpError
from services.api.resources import Resources, app_resources

ASSETS: dict[str, str] = {
    "portal.js": "text/javascript; charset=utf-8",
    "portal.css": "text/css; charset=utf-8",
}
PAGE = "index.html"

router = APIRouter(include_in_schema=False)


def _read(name: str) -> bytes:
    return resources.files("services.api").joinpath("portal", name).read_bytes()


def page_headers(frame_ancestors: str) -> dict[str, str]:
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors}"
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


@router.get("/")
async def plan_and_usage_page(held: Annotated[Resources, Depends(app_resources)]) -> Response:
    return Response(
        _read(PAGE),
        media_type="text/html; charset=utf-8",
        headers=page_headers(held.settings.portal_frame_ancestors),
    )


@router.get("/portal/{asset}")
async def page_asset(
    asset: Annotated[str, Path(max_length=32)],
    held: Annotated[Resources, Depends(app_resources)],
) -> Response:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise HttpError(404, NOT_FOUND, f"no asset {asset}")
    return Response(
        _read(asset),
        media_type=media_type,
        headers=page_headers(held.settings.portal_frame_ancestors),
    )
