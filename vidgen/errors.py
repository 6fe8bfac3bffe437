"""Errors a user can fix. The CLI prints them as one line and exits non-zero; anything else is a bug
and keeps its traceback."""


class UserError(Exception):
    """Something the user asked for cannot be done; the message says what is wrong and how to fix it."""

    exit_code = 1


class ConfigError(UserError):
    """A recipe, an override or a command-line value is invalid (exit code 2, like a usage error)."""

    exit_code = 2
