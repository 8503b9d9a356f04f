"""The one exception type whose message is shown to users as is."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints `error: <message>` and exits 2."""
