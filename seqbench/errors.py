"""The one exception type for a user's mistake: the CLI prints its message and exits 2."""


class UserError(Exception):
    """Bad input from the user (unknown name, invalid value, missing data).

    The message must say what was wrong and what to do; the CLI prints it without a traceback.
    """


class PluginError(UserError):
    """A plugin that breaks seqbench's contract (a build target that does not import, a model output
    of the wrong shape), named in the message. ``seqbench run`` exits 2 on it like on any user's
    mistake; a sweep records it as the cell's failed row, with this one-line message as its error."""
