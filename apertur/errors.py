"""The one application error type. Services raise it; the API (and the pages) render it.

Every status and `code` a client can see is listed in docs/api.md ("Errors").
"""


class AppError(Exception):
    """An error the client can act on: status, machine code, human message, optional field errors."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}
