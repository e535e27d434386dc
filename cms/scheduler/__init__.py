"""The scheduler: approved announcements become programs and chat posts, on time, after any crash.

It decides what runs and when; the work itself is in :mod:`cms.jobs`.

- :mod:`~cms.scheduler.core`: one pass over all of it (plan, recover, run the due rows);
- :mod:`~cms.scheduler.runner`: APScheduler ticks, the lease, and the public
  :func:`start_scheduler`.
- Below it: :mod:`cms.jobs` (each kind of work, one :func:`~cms.jobs.lifecycle.run_job`),
  :mod:`cms.lease` (exactly one scheduler per database) and :mod:`cms.queue` (claim / finish /
  retry rows: the database is the queue).
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
