"""What the API and the worker agree on, free of torch: errors and their codes, the method
catalogue and option types, validation of labels, templates, images and model names, and the
normalised request a job carries. Imports nothing of the project's (``pyproject.toml``'s
import-linter contracts keep it so)."""
