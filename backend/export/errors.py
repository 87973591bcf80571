"""The export commands' bad-input error."""


class InputError(Exception):
    """Bad input for the command; str() is the one-line reason."""
