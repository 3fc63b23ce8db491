"""``ToolError``: a user error found by a tool (bad path, bad key, bad value), printed as one line without a
traceback. Its own module so that ``tools_common`` and ``workdir`` both raise it without importing each other."""


class ToolError(Exception):
    """A user error found by a tool (bad path, bad key, bad value): printed without a traceback."""
