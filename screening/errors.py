"""One exception type for input the user can fix.

Its message is a single line that names the input and the problem; the CLI
prints it as `error: <message>` and exits with status 2.

A message names a setting by its parameter name in backticks (`partition_size`), never by a
command-line flag: the library does not know how it is called. cli.py turns each backticked
name into its command-line flag (cli.flag_of) before printing; a Python caller reads the name it passed.
"""


class ScreenError(ValueError):
    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line
