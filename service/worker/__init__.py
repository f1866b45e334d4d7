"""The GPU worker: loads the models once, then runs queued jobs (``tta worker``)."""
