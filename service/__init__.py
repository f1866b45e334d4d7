"""The service: settings, CLI, and (later) the API, queue and worker."""
