"""Who may do what: the one table of role sets.

The web's route rules, the API's, the services' own checks and the scheduler's alerts all
name these sets, so a page, the API and the service behind them let in the same people.
"""

from __future__ import annotations

from cms.models import Role

EDITORS = frozenset({Role.ADMIN, Role.EDITOR})
"""Draft and edit notices and send them to review, upload recordings, keep the office's
templates, adapt or draft a county campaign, hear a spoken-text preview."""

REVIEWERS = frozenset({Role.ADMIN, Role.REVIEWER})
"""Approve a notice or send it back, start and end a break-in, publish to the Official Account."""

STAFF = frozenset({Role.ADMIN, Role.EDITOR, Role.REVIEWER})
"""The township's officers: read every notice, withdraw and share one, adopt a county
campaign, keep the schedule and the ledger; the staff alerts go to them."""

OPERATORS = frozenset({Role.ADMIN, Role.OPERATOR})
"""The loudspeaker operator's own pages (the admin may open them too)."""

ANY_USER = frozenset(Role)
"""Any signed-in user."""
