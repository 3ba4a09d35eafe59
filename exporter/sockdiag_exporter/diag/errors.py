"""Typed errors of the diag layer: every failure of a dump is one of these."""

import errno
import os


class DiagError(Exception):
    """A sock_diag dump failed; the message is one line fit for a log."""


class DiagUnsupported(DiagError):
    """This kernel has no sock_diag handler for the requested family or protocol."""


class DiagPermissionError(DiagError):
    """The kernel refused the dump for lack of privilege."""


class DiagInterrupted(DiagError):
    """The dump stayed inconsistent (NLM_F_DUMP_INTR) after every retry."""


class DiagMalformed(DiagError):
    """The kernel's reply could not be parsed (truncated, misaligned or inconsistent)."""


class DiagRetryable(DiagError):
    """A transient failure (ENOBUFS, EINTR, EBUSY, timeout): the dump may be started again."""


# ENOENT: no handler registered; EOPNOTSUPP/EPROTONOSUPPORT: protocol not dumpable; EINVAL: family unknown here.
UNSUPPORTED_ERRNOS = frozenset({errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EINVAL, errno.EAFNOSUPPORT})
RETRYABLE_ERRNOS = frozenset({errno.ENOBUFS, errno.EINTR, errno.EAGAIN, errno.EBUSY})


def from_errno(code: int, what: str) -> DiagError:
    """Map a positive errno from the kernel to the matching DiagError (a nonsense code becomes a plain DiagError)."""
    if not 0 < code < 4096:  # the kernel's errnos are small; anything else is a corrupt reply
        return DiagError(f"{what}: error code {code} out of range")
    text = f"{what}: {os.strerror(code)} ({errno.errorcode.get(code, code)})"
    if code in UNSUPPORTED_ERRNOS:
        return DiagUnsupported(text)
    if code in (errno.EPERM, errno.EACCES):
        return DiagPermissionError(text)
    if code in RETRYABLE_ERRNOS:
        return DiagRetryable(text)
    return DiagError(text)
