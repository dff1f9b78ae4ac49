"""The one exception type the CLI turns into a single clear error line."""


class ClasswiseError(Exception):
    """A user-facing error: bad input, missing files, refused overwrite.

    The CLI prints ``error: <message>`` and exits with status 2. Library code
    raises it (or ``ValueError`` for argument checks) instead of printing.
    """
