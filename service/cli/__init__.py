"""The ``tta`` command line. Subcommands import torch lazily so ``tta --help`` is instant."""
