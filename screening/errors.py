"""One exception type for input the user can fix.

Its message is a single line that names the input and the problem; the CLI
prints it as `error: <message>` and exits with status 2.
"""


class ScreenError(ValueError):
    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line
