"""Errors a user can meet. Each carries one line that says what is wrong and what to do."""


class GreenwiseError(Exception):
    """Bad input or an unusable environment: the CLI prints the message and exits with code 2."""
