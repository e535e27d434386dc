"""The scheduler's jobs: each kind of work the database queue holds, one row at a time.

The scheduler (:mod:`cms.scheduler`) decides what to run and when; a job module plans its
rows and performs one of them (render a clip, build a program, send a delivery, make an
Official Account article, build a break-in, post to the staff channel). Jobs use services
and the core (models, :mod:`cms.queue`, :mod:`cms.clock`); they never import the scheduler.

- :mod:`~cms.jobs.renders`, :mod:`~cms.jobs.programs`, :mod:`~cms.jobs.deliveries`,
  :mod:`~cms.jobs.articles`, :mod:`~cms.jobs.breakin`, :mod:`~cms.jobs.staff`: the kinds.
- :mod:`~cms.jobs.lifecycle`: :func:`~cms.jobs.lifecycle.run_job`, the one life every queued
  row lives (claim, attempt, backoff, uncertainty, outcome); each kind above is a small
  :class:`~cms.jobs.lifecycle.Kind` over it.
- :mod:`~cms.jobs.context`: what a job gets (sessions, clock, settings, renderer, channels).
- :mod:`~cms.jobs.outbox`: the local chat channel (default and demo).
"""
