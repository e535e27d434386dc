"""Terminals that went quiet: a box that fetched nothing for a day raises an alert.

An IP speaker or 4G column that stops fetching is usually off, unplugged, out of credit or
pointed at an old link; nobody notices until an inspection does. The check runs with the
reconciliation (every few minutes); an alert is raised once per terminal and day.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from cms.db import unit_of_work
from cms.jobs.context import Context
from cms.services import terminals
from cms.services.alerts import raise_alert
from cms.services.errors import N_, Message

log = logging.getLogger(__name__)


def check_silent(ctx: Context) -> int:
    """Raise an alert for each terminal silent for a day; returns how many are new."""
    now, today = ctx.now(), ctx.today()

    def work(session: Session) -> int:
        raised = 0
        for terminal in terminals.silent(session, now):
            raised += raise_alert(
                session,
                "terminal_silent",
                Message(
                    N_("{outlet} 的终端“{name}”已经一天没有下载节目，请检查它的电源、网络和地址"),
                    {"outlet": terminal.outlet.name, "name": terminal.name},
                ),
                day=today,
                object_type="terminal",
                object_id=terminal.id,
            )
        return raised

    return unit_of_work(ctx.sessions, work)
