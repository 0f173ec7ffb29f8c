"""Scheduled jobs: the scheduler (scheduler.py) and every module here registering jobs with
`@job`; a job only finds the app, calls core and wakes the outbox."""
