"""User-facing errors. Each carries one line naming the bad input and the fix; the CLI prints it without
a traceback."""

import errno

#: Exit codes of the `saliency-lab` command (docs/failures.md): 0 done; 2 bad input or environment (one line
#: on stderr; nothing already written is lost); 3 a capture in which no sample succeeded; 130 interrupted
#: (complete samples are kept).
EXIT_ERROR = 2
EXIT_NO_SAMPLE = 3
EXIT_INTERRUPTED = 130


class SaliencyLabError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class SampleError(SaliencyLabError):
    """A problem with one sample; the run records it (status 'error') and continues."""


class SaliencyLabWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it as one line)."""


class IncompleteRunWarning(SaliencyLabWarning):
    """A run is read while shards are missing or parts are uncommitted: results cover part of it."""


_OS_FIXES = {
    errno.ENOSPC: "the disk is full; free space and run the command again",
    errno.EDQUOT: "the disk quota is exceeded; free space and run the command again",
    errno.EROFS: "the folder is read-only; make it writable or write somewhere else",
    errno.EACCES: "permission denied; make it writable or write somewhere else",
    errno.EPERM: "operation not permitted; make it writable or write somewhere else",
    errno.ENOENT: "not found (deleted or moved while the command ran?); check the path",
    errno.EISDIR: "is a folder; give a file name",
}


def os_error_line(exc: OSError, doing: str = "") -> str:
    """One line for an operating-system error: the file, what was being done, and the fix."""
    where = exc.filename if exc.filename is not None else "(unknown file)"
    fix = _OS_FIXES.get(exc.errno or -1, exc.strerror or type(exc).__name__)
    return f"{where}: {doing + ': ' if doing else ''}{fix}"


def os_error(exc: OSError, doing: str = "") -> SaliencyLabError:
    """`os_error_line` as a SaliencyLabError, to raise `from None`."""
    return SaliencyLabError(os_error_line(exc, doing))
