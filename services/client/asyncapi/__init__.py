"""docs/asyncapi.json, generated from the code: `python -m services.client.asyncapi`."""

from services.client.asyncapi.document import asyncapi_document, render

__all__ = ["asyncapi_document", "render"]
