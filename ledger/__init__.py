"""certledger core: the pure parts every department node and verifier share.

Packages and modules:

* :mod:`ledger.errors` — the one error tree (drawn in its docstring)
* :mod:`ledger.canonical` — canonical msgpack encoding and its strict decoder
* :mod:`ledger.keys` — Ed25519 keys, key files, C2SP key IDs and verifier-key strings
* :mod:`ledger.files` — size-capped reads, durable writes and strict JSON
* :mod:`ledger.clock` — the one clock-skew allowance and the ``future-time`` rule
* :mod:`ledger.log` — statements, Merkle math, signed notes, checkpoints, tlog-proof,
  the SQLite store, audit, certificate identifiers
* :mod:`ledger.trust` — the consortium trust policy, its document and update rules
* :mod:`ledger.credential` — claims, credentials, ``CL1:`` presentations, QR images

This package imports no web framework.
"""

from ledger.errors import (
    AuditError,
    ClaimMismatchError,
    ConflictError,
    FileError,
    KeyFileError,
    LedgerError,
    MalformedError,
    PolicyError,
    ProofError,
    SchemaError,
    SignatureError,
    StorageError,
    TooLargeError,
    VerificationError,
)

__version__ = "0.1.0"

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
    "__version__",
]
