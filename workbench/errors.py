"""The one exception that means "the user asked for something that cannot be done"."""


class UserError(Exception):
    """Bad input: the CLI prints the message as one line and exits with status 2, writing nothing."""

    exit_code = 2
