"""The worked example of docs/credential-format.md, computed by the code.

``python -m tests.format_example`` prints every value the document quotes;
tests/test_format_doc.py checks that the document still quotes them exactly.
"""

from __future__ import annotations

import hashlib
import textwrap
import zlib

from ledger import canonical
from ledger.credential.base45 import b45decode
from ledger.credential.claims import claim_digest, claim_salt
from ledger.credential.qrdict import PRESET_DICTIONARY
from tests.fixtures.consortium import HEALTH, issue_health_certificate

REVEAL = ("holder_name", "occupation", "exam_date")


def _hex(data: bytes) -> str:
    return "\n".join(textwrap.wrap(data.hex(), 64))


def _wrap(text: str) -> str:
    return "\n".join(text[i : i + 64] for i in range(0, len(text), 64))


def example() -> dict[str, str]:
    """Name → the exact text the document shows for it."""
    cred = issue_health_certificate()
    secret = cred.salt_secret
    name_key = 1
    salt = claim_salt(secret, name_key)
    packed = canonical.encode([salt, name_key, "王小红"])
    full = cred.present()
    selective = cred.present(REVEAL)
    full_text, sel_text = full.to_text(), selective.to_text()
    inflated = zlib.decompressobj(-15, zdict=PRESET_DICTIONARY).decompress(
        b45decode(full_text[4:], max_size=4096)
    )
    assert inflated == full.to_bytes()
    return {
        "cert_id": cred.cert_id,
        "key_id": cred.signed.key_id.hex(),
        "origin": HEALTH.origin,
        "secret": secret.hex(),
        "salt_1": salt.hex(),
        "digest_input_1": packed.hex(),
        "digest_1": claim_digest(salt, name_key, "王小红").hex(),
        "name_gb18030": "王小红".encode("gb18030").hex(),
        "statement_hex": _hex(cred.signed.statement_bytes),
        "statement_size": str(len(cred.signed.statement_bytes)),
        "signature": _hex(cred.signed.signature),
        "full_msgpack": _hex(full.to_bytes()),
        "full_msgpack_size": str(len(full.to_bytes())),
        "full_deflated_size": str(len(b45decode(full_text[4:], max_size=4096))),
        "full_text": _wrap(full_text),
        "full_length": str(len(full_text)),
        "selective_msgpack": _hex(selective.to_bytes()),
        "selective_text": _wrap(sel_text),
        "selective_length": str(len(sel_text)),
        "dictionary_sha256": hashlib.sha256(PRESET_DICTIONARY).hexdigest(),
        "dictionary_size": str(len(PRESET_DICTIONARY)),
    }


if __name__ == "__main__":
    for name, value in example().items():
        print(f"== {name}\n{value}\n")
