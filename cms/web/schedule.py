"""Scheduling in the CMS: renders, programs, the lexicon, run sheets and the scheduler's status."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("schedule", __name__)
