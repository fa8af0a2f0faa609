"""Placeholder until its verbs land."""


def register(group):
    """Add this module's commands to the main group."""
