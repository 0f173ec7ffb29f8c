"""Outbox delivery: the worker (worker.py) and the deliverers, one function per outbox kind
(deliver.py, and every other module here registering more with `@deliverer`)."""
