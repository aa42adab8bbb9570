"""The routes an app serves, flattened: (methods, path) of each, whatever the FastAPI version
nests them in (0.165 keeps included routers as branches; earlier versions copy their routes)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import fastapi.routing
from fastapi import FastAPI
from starlette.routing import compile_path


@dataclass(frozen=True)
class ServedRoute:
    path: str
    methods: frozenset[str]
    path_regex: re.Pattern[str]


def served_routes(app: FastAPI) -> list[ServedRoute]:
    """Every route with methods (mounts such as the docs' static files are not routes)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(app.routes)) if flatten is not None else list(app.routes)
    served = []
    for route in routes:
        methods = getattr(route, "methods", None)
        path = getattr(route, "path", None)
        if methods and path:
            served.append(ServedRoute(path, frozenset(methods), compile_path(path)[0]))
    return served


def methods_at(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at this concrete path."""
    found: set[str] = set()
    for route in served_routes(app):
        if route.path_regex.match(path):
            found |= route.methods
    return sorted(found)
