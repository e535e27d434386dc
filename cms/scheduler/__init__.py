"""The scheduler: approved announcements become programs and chat posts, on time, after any crash.

- :mod:`~cms.lease`: exactly one scheduler per database.
- :mod:`~cms.queue`: claim / finish / retry rows (the database is the queue).
- :mod:`~cms.jobs.renders`, :mod:`~cms.jobs.programs`,
  :mod:`~cms.jobs.deliveries`: plan and perform each kind of work.
- :mod:`~cms.jobs.outbox`: the local chat channel (default and demo).
- :mod:`~cms.scheduler.core`: one pass over all of it; :mod:`~cms.scheduler.runner`:
  APScheduler ticks and the public :func:`start_scheduler`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SchedulerHandle", "start_scheduler"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing cms.queue does not pull in APScheduler.
    if name in __all__:
        from cms.scheduler import runner

        return getattr(runner, name)
    raise AttributeError(name)


if TYPE_CHECKING:
    from cms.scheduler.runner import SchedulerHandle, start_scheduler
