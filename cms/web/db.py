"""The per-request database session, owned by the request (commit at the edge)."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from cms.settings import Settings


def db() -> Session:
    if "db" not in g:
        g.db = current_app.extensions["dalaba.sessions"]()
    return g.db


def settings() -> Settings:
    return current_app.extensions["dalaba.settings"]
