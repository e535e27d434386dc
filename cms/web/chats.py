"""Group chats in the CMS: bound chats, binding codes, deliveries and the local outbox."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("chats", __name__)
