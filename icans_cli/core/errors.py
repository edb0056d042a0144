"""The clinical core's own exception.

Messages name the field, what was wrong and what is allowed. They never carry a
patient identifier: the core does not even receive one.
"""


class InvalidFinding(ValueError):
    """A finding is missing, out of range or contradicts another finding."""

    def __init__(self, field: str, message: str, allowed: str = "") -> None:
        self.field = field
        self.message = message
        self.allowed = allowed
        text = f"{field}: {message}"
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)

    @property
    def detail(self) -> str:
        """The message without the field name, for callers that show the field separately."""
        return f"{self.message} (allowed: {self.allowed})" if self.allowed else self.message
