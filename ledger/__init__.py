"""certledger core: the pure parts every department node and verifier share.

Modules:

* :mod:`ledger.canonical` — canonical msgpack encoding and its strict decoder
* :mod:`ledger.keys` — Ed25519 keys, key files, C2SP key IDs and verifier-key strings
* :mod:`ledger.certid` — GB/T 36904-style certificate identifiers
* :mod:`ledger.statement` — signed statements and hash-chained log entries
* :mod:`ledger.note` — C2SP signed notes: parse, sign, open
* :mod:`ledger.checkpoint` — C2SP checkpoints and Ed25519 witness cosignatures
* :mod:`ledger.tlogproof` — C2SP tlog-proof: offline inclusion proofs with their checkpoint
* :mod:`ledger.claims` — claim values, salts and digests
* :mod:`ledger.credential` — what a holder keeps: credentials, issued and saved as JSON
* :mod:`ledger.presentation` — ``CL1:`` QR texts, full or selective, and their offline check
* :mod:`ledger.qr` — QR images out (segno) and in (zxing-cpp)
* :mod:`ledger.base45`, :mod:`ledger.qrdict` — strict Base45; the preset deflate dictionary
* :mod:`ledger.gbtext` — the GB 18030 transport form of text values in QR codes
* :mod:`ledger.policy` — the consortium trust policy and its queries
* :mod:`ledger.policy_doc` — the policy document (canonical text in a signed note)
* :mod:`ledger.trust` — the policy update rules (TUF root rules) over documents
* :mod:`ledger.consortium` — policy genesis, changes and summaries for the ceremony
* :mod:`ledger.files` — size-capped reads, durable writes and strict JSON
* :mod:`ledger.errors` — the one error tree (drawn in its docstring)

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
