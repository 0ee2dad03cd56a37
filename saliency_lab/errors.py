"""User-facing errors. Each carries one line naming the bad input and the fix; the CLI prints it without
a traceback."""


class SaliencyLabError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class SampleError(SaliencyLabError):
    """A problem with one sample; the run records it (status 'error') and continues."""
