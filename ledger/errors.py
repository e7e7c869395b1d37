"""The one error tree of certledger.

Every error the project raises on purpose derives from :class:`LedgerError`, so a
caller (a CLI command, an HTTP endpoint, a verifier) can catch exactly the errors it
knows how to report and let real bugs surface::

    LedgerError                     anything certledger refuses, with a reason
    ├── MalformedError              input is not well-formed: bad syntax, wrong type,
    │   │                           non-canonical encoding, unknown version
    │   ├── TooLargeError           a size, depth or count cap was exceeded
    │   └── SchemaError             well-formed, but breaks a schema (e.g. claims
    │                               that do not fit their certificate type)
    ├── FileError                   a file cannot be read or written (names the
    │   │                           path and the operating system's reason)
    │   └── KeyFileError            a key cannot be read, written or decrypted
    ├── VerificationError           well-formed, but does not verify
    │   ├── ProofError              a Merkle inclusion or consistency proof failed
    │   ├── SignatureError          a signature is missing, unknown or invalid
    │   ├── ClaimMismatchError      a disclosed claim does not match its digest
    │   ├── PolicyError             a trust-policy rule is broken (names the rule;
    │   │                           ``rule`` holds its identifier)
    │   └── AuditError              a stored log fails audit (names the first bad index)
    └── StorageError                the log store cannot do what was asked
        └── ConflictError           the request would contradict what was already
                                    signed or stored (e.g. an inconsistent checkpoint)

Messages are short, lower-case sentences that say what was wrong and, where it helps,
how far processing got.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "ClaimMismatchError",
    "ConflictError",
    "FileError",
    "KeyFileError",
    "LedgerError",
    "MalformedError",
    "PolicyError",
    "ProofError",
    "SchemaError",
    "SignatureError",
    "StorageError",
    "TooLargeError",
    "VerificationError",
]


class LedgerError(Exception):
    """Base of every error certledger raises on purpose."""


class MalformedError(LedgerError):
    """Input is not well-formed."""


class TooLargeError(MalformedError):
    """Input exceeds a size, depth or count cap."""


class SchemaError(MalformedError):
    """Well-formed input that breaks a schema."""


class FileError(LedgerError):
    """A file cannot be read or written; the message names the path and the reason."""


class KeyFileError(FileError):
    """A key cannot be read, written or decrypted."""


class VerificationError(LedgerError):
    """Well-formed input that does not verify."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof failed."""


class SignatureError(VerificationError):
    """A signature is missing, from an unknown key, or invalid."""


class ClaimMismatchError(VerificationError):
    """A disclosed claim does not match the digest the issuer signed."""


class PolicyError(VerificationError):
    """A trust-policy rule is broken; the message names the rule.

    ``rule`` is the rule's short identifier (for example ``"rollback"`` or
    ``"mandate"``; :data:`ledger.trust.policy.RULES` lists them), so that a caller can turn it
    into a verdict without parsing the message. It is ``None`` when not given.
    """

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule


class AuditError(VerificationError):
    """A stored log fails audit.

    ``index`` is the first bad entry index, or ``None`` when the fault is not tied to
    one entry (for example, a checkpoint).
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class StorageError(LedgerError):
    """The log store cannot do what was asked."""


class ConflictError(StorageError):
    """The request would contradict what was already signed or stored."""
