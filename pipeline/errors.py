"""The business error every layer raises (a module of its own, so that light modules such as
:mod:`pipeline.settings` need not import the workspace to raise it)."""

from __future__ import annotations


class BillingError(Exception):
    """A business error: the CLI prints the message in Russian and exits with 1."""
