"""Errors in the data on disk (missing root, empty split, unreadable image): their message names the path and says
everything, so the tools print it as one line without a traceback. Each is also the builtin error it replaces
(``FileNotFoundError``, ``ValueError``, ``OSError``), so existing ``except`` clauses still catch it."""


class DataError(Exception):
    """Marker base: a mistake in the data set, described fully by the message."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data root, split folder, list file or listed image that does not exist."""


class DataValueError(DataError, ValueError):
    """A data set that exists but cannot be used (no class folders, an empty class folder or list, a bad line)."""


class ImageReadError(DataError, OSError):
    """An image file that cannot be decoded (zero bytes, truncated, not an image)."""
