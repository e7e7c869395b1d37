"""Credential JSON: the same object whichever way the credential was made, never shared."""

import base64
from typing import Any

from ledger.credential.claims import value_text
from ledger.credential.credential import Credential
from tests.fixtures.consortium import all_credentials


def _reference(c: Credential) -> dict[str, Any]:
    return {
        "format": "certledger-credential",
        "version": 1,
        "statement": c.signed.statement.to_json(),
        "signed": {
            "statement": base64.b64encode(c.signed.statement_bytes).decode(),
            "key_id": c.signed.key_id.hex(),
            "signature": base64.b64encode(c.signed.signature).decode(),
        },
        "claims": {s.name: v if isinstance(v := c.claims[s.name], int) else value_text(v) for s in c.schema},
        "schema": [
            {
                "key": s.key,
                "name": s.name,
                "label": s.label,
                "kind": s.kind,
                "required": s.required,
                "max_length": s.max_length,
            }
            for s in c.schema
        ],
        "salt_secret": c.salt_secret.hex(),
    }


def test_issued_and_loaded_credentials_give_the_reference_json() -> None:
    for cred in all_credentials().values():
        loaded = Credential.loads(cred.dumps())
        for c in (cred, loaded, cred):
            got = c.to_json()
            assert got == _reference(c)
            assert list(got["schema"][0]) == ["key", "name", "label", "kind", "required", "max_length"]


def test_changing_a_returned_schema_entry_changes_no_later_json() -> None:
    cred = next(iter(all_credentials().values()))
    first = cred.to_json()
    first["schema"][0]["name"] = "changed"
    first["schema"].append({"key": 99})
    second = cred.to_json()
    assert second == _reference(cred)
    assert second["schema"][0]["name"] == cred.schema[0].name
