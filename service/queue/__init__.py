"""The one contract the API and the worker share: key names, job and event schemas, and the
Redis operations on them (``producer`` for the API, ``consumer`` for the worker)."""
