"""Errors shown to users: one paragraph that says what went wrong and what to do."""


class QueryCraftError(Exception):
    """A problem with the user's input or configuration, reported without a traceback."""
