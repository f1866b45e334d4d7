"""The HTTP front end (FastAPI). Validates, queues jobs through Redis and streams their events
back; it never imports torch (a test checks)."""
