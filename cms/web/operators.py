"""Operators: private download links, playback receipts and the compliance view."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("operators", __name__)
