"""User-facing errors: printed as one clear message by the CLI, never as a traceback."""


class PodiumError(Exception):
    """A mistake in user input (config, data, model folder) or an unmet precondition.

    The message must say where (file, line, field) and what is expected.
    """


class ConfigError(PodiumError):
    """A recipe or stage config is invalid."""


class DataError(PodiumError):
    """A dataset file is malformed or empty."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
