"""The JSON API under /api/v1 (a blueprint) and its OpenAPI document.

- :mod:`.openapi`: the OpenAPI 3.1 document, the contract (content schemas generated from
  the content model in :mod:`cms.services.content`);
- :mod:`.validation`: requests checked with jsonschema against that document;
- :mod:`.representations`: how announcements, revisions and areas are shown;
- :mod:`.errors`: the one JSON error shape;
- :mod:`.views`: the routes (:mod:`.template_views`: notice templates).
"""

from cms.web.api import template_views  # noqa: F401  (its routes join the blueprint)
from cms.web.api.errors import error_response
from cms.web.api.openapi import openapi_document
from cms.web.api.views import bp

__all__ = ["bp", "error_response", "openapi_document"]
