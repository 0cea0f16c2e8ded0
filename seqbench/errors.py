"""The one exception type for a user's mistake: the CLI prints its message and exits 2."""


class UserError(Exception):
    """Bad input from the user (unknown name, invalid value, missing data).

    The message must say what was wrong and what to do; the CLI prints it without a traceback.
    """
