"""docs/asyncapi.json, generated from the code: `python -m contracts.asyncapi`."""

from contracts.asyncapi.document import asyncapi_document, render

__all__ = ["asyncapi_document", "render"]
