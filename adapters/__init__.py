"""Test-time adaptation methods: pure functions of (models, image, labels, options).

No Redis, HTTP or file I/O here. ``adapters.registry`` maps method names to implementations.
"""
