"""Administration: the area tree, outlets and slots, users and roles, topics, settings, audit.

One blueprint, ``admin``, with its pages in the modules beside this one: ``areas`` (the area
tree, outlets and their slots), ``users`` (users, roles and API tokens), ``configuration`` (the
settings of the county and each township, and the topic list) and ``audit`` (the audit log).
Importing the package adds them all.
"""

from __future__ import annotations

from flask import Blueprint

from cms.models import Role

bp = Blueprint("admin", __name__, url_prefix="/admin")
ADMIN = Role.ADMIN

# The pages add themselves to ``bp``, so they are imported after it (Flask's pattern for a
# blueprint spread over modules).
from cms.web.admin import areas, audit, configuration, users  # noqa: E402,F401
