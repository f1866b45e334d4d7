"""Benchmarks: ``tta bench ...`` (registered as a ``tta.commands`` entry point, so the service
imports nothing from here), with their own extra (``pip install -e '.[bench]'``: LitServe and
matplotlib, which no worker needs)."""
