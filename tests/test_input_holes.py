"""Small holes in input handling, one named test (or more) per attack.

bool-as-int in signed encodings, wrong JSON types in credential files, secrets and claim values
in repr() and error messages, key-derivation bombs in encrypted key files, empty passphrases,
and pixel bombs in QR images.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from asn1crypto import keys as asn1_keys
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ImageFile

from certledger.cli import cli
from ledger.credential import qr
from ledger.credential.claims import canonical_value
from ledger.credential.credential import Credential
from ledger.credential.presentation import verify_presentation
from ledger.errors import KeyFileError, LedgerError, MalformedError, SchemaError, TooLargeError
from ledger.keys import MAX_KDF_ITERATIONS, SigningKey
from ledger.log.statement import Entry, Kind, Statement
from ledger.trust.policy import ClaimSpec
from tests.fixtures.consortium import POLICY, T0, issue_reference
from tests.helpers import issue, log_key

# -- bool is not int ----------------------------------------------------------------


def _with_field(data: bytes, key: int, value: Any) -> bytes:
    raw = msgpack.unpackb(data, strict_map_key=False)
    raw[key] = value
    out: bytes = msgpack.packb(dict(sorted(raw.items())), use_bin_type=True)
    return out


def test_bool_as_int_statement_version_is_refused() -> None:
    """msgpack true where the integer version 1 is expected: a second encoding (and hash) of one statement."""
    good = issue(1).to_bytes()
    forged = _with_field(good, 0, True)
    assert forged != good and forged.replace(b"\x00\xc3", b"\x00\x01", 1) == good
    with pytest.raises(
        MalformedError, match=r"^statement: unknown version True \(the integer 1 is expected\)$"
    ):
        Statement.from_bytes(forged)


def test_bool_as_int_statement_kind_and_reason_are_refused() -> None:
    with pytest.raises(MalformedError, match="kind must be an integer"):
        Statement.from_bytes(_with_field(issue(1).to_bytes(), 1, True))
    fields = {
        "issuer": "hangzhou-xihu-amr",
        "cert_id": issue(1).cert_id,
        "cert_type": "business_licence",
        "time": T0,
        "operator": "op",
    }
    with pytest.raises(MalformedError, match="unknown version True"):
        Statement(kind=Kind.REVOKE, reason=0, version=True, **fields)
    with pytest.raises(MalformedError, match="kind must be an integer, not a boolean"):
        Statement(kind=True, reason=0, **fields)  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="reason must be an integer, not a boolean"):
        Statement(kind=Kind.REVOKE, reason=True, **fields)  # type: ignore[arg-type]


def test_bool_as_int_entry_version_is_refused() -> None:
    key, kid = log_key()
    from ledger.log.statement import SignedStatement

    signed = SignedStatement.sign(issue(1), key=key, key_id=kid)
    entry = Entry(signed=signed, prev=bytes(32)).to_bytes()
    assert Entry.from_bytes(entry).signed == signed
    with pytest.raises(MalformedError, match=r"^entry: unknown version True"):
        Entry.from_bytes(_with_field(entry, 0, True))


def test_bool_as_int_in_times_and_claims_is_refused() -> None:
    with pytest.raises(MalformedError, match="time must be a non-negative integer"):
        Statement.from_bytes(_with_field(issue(1).to_bytes(), 5, True))
    spec = ClaimSpec(key=1, name="n", label="数", kind="integer")
    with pytest.raises(SchemaError, match="expected an integer, got bool"):
        canonical_value(spec, True)


# -- wrong JSON types in a credential file -------------------------------------------

BASE = json.loads(issue_reference().dumps())


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def test_wrong_json_type_in_credential_schema_is_a_malformed_error() -> None:
    """A list where a claim's kind (a string) belongs escaped as TypeError ("unhashable type")."""
    obj = copy.deepcopy(BASE)
    obj["schema"][0]["kind"] = ["text"]
    with pytest.raises(MalformedError, match="schema entry 0: name, label and kind must be strings"):
        Credential.from_json(obj)
    obj["schema"][0]["kind"] = "text"
    obj["schema"][0]["required"] = 1
    with pytest.raises(MalformedError, match="required true or false"):
        Credential.from_json(obj)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), JSON_VALUES)
def test_wrong_json_types_anywhere_raise_only_ledger_errors(path: tuple[Any, ...], value: Any) -> None:
    """Any JSON value anywhere in a credential file: a LedgerError (Malformed/Schema/…), never TypeError."""
    obj = copy.deepcopy(BASE)
    target = obj
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    try:
        cred = Credential.from_json(obj)
    except LedgerError:
        return
    assert isinstance(cred, Credential)  # the change was harmless (e.g. the same value again)


# -- secrets and claim values in repr() and messages ---------------------------------


def _secret_strings(cred: Credential) -> list[str]:
    out = [cred.salt_secret.hex(), repr(cred.salt_secret)]
    for spec in cred.schema:
        value = cred.claims[spec.name]
        out.append(str(value))
        out.append(repr(value))
    return [s for s in out if len(s) >= 4]


def test_repr_of_credentials_and_presentations_shows_no_secret_or_claim_value() -> None:
    cred = issue_reference()
    full, selective = cred.present(), cred.present(["name"])
    checked = verify_presentation(full, policy=POLICY, now=T0 + 86400)
    texts = [repr(cred), repr(full), repr(selective), repr(checked), repr(checked.claims), str(checked)]
    for text in texts:
        for secret in _secret_strings(cred):
            assert secret not in text, (secret, text)
        assert full.secret is not None and full.secret.hex() not in text
    assert repr(full).startswith("Presentation(kind=issue, cert_type='business_licence', key_id=")
    assert "full, disclosed=[0, 1, 2" in repr(full) and "selective, disclosed=[1], hidden=10" in repr(
        selective
    )
    assert repr(cred).startswith(f"Credential(cert_id={cred.cert_id!r}, issuer='hangzhou-xihu-amr'")
    assert "validity=valid" in repr(checked) and "disclosed=['uscc', 'name'" in repr(checked)
    assert repr(checked.claims[1]) == "DisclosedClaim(key=1, name='name', kind='text')"


def test_error_messages_do_not_quote_claim_values() -> None:
    """A malformed date claim (a birth date, say) is described by its length, not quoted."""
    spec = ClaimSpec(key=3, name="birth_date", label="出生日期", kind="date")
    for value in ("1990/13/45", "1990-02-30", "one-two-three"):
        with pytest.raises(SchemaError) as e:
            canonical_value(spec, value)
        assert value not in str(e.value)
        assert "birth_date" in str(e.value)


# -- key files ------------------------------------------------------------------------


def _with_iterations(pem: bytes, iterations: int) -> bytes:
    """``pem`` (an encrypted PKCS#8 key) with its PBKDF2 iteration count replaced."""
    body = b"".join(pem.split(b"\n")[1:-2])
    info = asn1_keys.EncryptedPrivateKeyInfo.load(base64.b64decode(body))
    kdf = info["encryption_algorithm"]["parameters"]["key_derivation_func"]["parameters"]
    kdf["iteration_count"] = iterations
    der = info.dump(force=True)
    lines = re.findall(b".{1,64}", base64.b64encode(der))
    return (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + b"\n".join(lines)
        + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )


def test_kdf_bomb_key_file_is_refused_before_decrypting(tmp_path: Path) -> None:
    """2^31 PBKDF2 iterations would hang loading for minutes; the cap refuses it at once."""
    key = SigningKey.generate()
    pem = key.to_pem(passphrase=b"correct horse")
    bomb = tmp_path / "bomb.pem"
    bomb.write_bytes(_with_iterations(pem, 2**31))
    bomb.chmod(0o600)
    with pytest.raises(KeyFileError) as e:
        SigningKey.load(bomb, passphrase=b"correct horse")
    assert str(e.value) == (
        f"{bomb}: encrypted key: 2147483648 key-derivation iterations is over the limit of "
        f"{MAX_KDF_ITERATIONS}; re-encrypt the key with a smaller work factor"
    )


def test_kdf_within_the_cap_still_loads() -> None:
    key = SigningKey.generate()
    pem = key.to_pem(passphrase=b"correct horse")
    assert SigningKey.from_pem(pem, passphrase=b"correct horse").public_key == key.public_key
    with pytest.raises(KeyFileError, match="wrong passphrase"):  # a changed count derives another key
        SigningKey.from_pem(_with_iterations(pem, 4096), passphrase=b"correct horse")


def test_unknown_or_malformed_key_derivation_is_refused() -> None:
    pem = SigningKey.generate().to_pem(passphrase=b"pw")
    body = b"".join(pem.split(b"\n")[1:-2])
    der = base64.b64decode(body)
    damaged = der.replace(bytes.fromhex("06092a864886f70d01050c"), bytes.fromhex("06092a864886f70d01050d"))
    assert damaged != der  # the PBKDF2 OID became another one
    text = (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + base64.encodebytes(damaged)
        + b"-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyFileError, match=r"^encrypted key: unsupported key derivation"):
        SigningKey.from_pem(text, passphrase=b"pw")
    garbage = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n!!!!\n-----END ENCRYPTED PRIVATE KEY-----\n"
    with pytest.raises(KeyFileError, match="malformed encryption parameters"):
        SigningKey.from_pem(garbage, passphrase=b"pw")


def test_empty_passphrase_never_writes_an_unencrypted_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with pytest.raises(KeyFileError, match=r"^an empty passphrase would leave the key unencrypted"):
        key.to_pem(passphrase=b"")
    with pytest.raises(KeyFileError, match="empty passphrase"):
        key.save(tmp_path / "k.pem", passphrase=b"")
    assert not (tmp_path / "k.pem").exists()


# -- pixel bombs ------------------------------------------------------------------------


def _png_header_only(width: int, height: int, *, size: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, padded to ``size`` bytes of IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = zlib.compress(bytes(size), 9)
    idat += bytes(max(0, size - len(head) - len(idat) - 24))
    return head + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_pixel_bomb_png_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A 200 KB PNG of 50 megapixels: refused from its header, no pixel decoded, cap named."""
    bomb = _png_header_only(7072, 7072, size=200 * 1024)
    assert 190 * 1024 < len(bomb) < 210 * 1024

    def no_decoding(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(TooLargeError, match=r"^image: 7072x7072 pixels is over the 16777216-pixel limit"):
        qr.read_qr_codes(bomb)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    result = CliRunner().invoke(cli, ["qr", "decode", str(path)])
    assert result.exit_code == 1
    assert f"{path}: image: 7072x7072 pixels is over the 16777216-pixel limit" in result.output


def test_byte_bomb_image_is_refused_before_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(qr.MAX_IMAGE_BYTES + 1))
    with pytest.raises(TooLargeError, match=f"the image is larger than the {qr.MAX_IMAGE_BYTES}-byte limit"):
        qr.read_qr_file(path)
    with pytest.raises(TooLargeError, match=f"over the {qr.MAX_IMAGE_BYTES}-byte limit"):
        qr.read_qr_codes(bytes(qr.MAX_IMAGE_BYTES + 1))


def test_only_known_image_formats_are_opened() -> None:
    tiff = b"II*\x00" + bytes(100)
    with pytest.raises(MalformedError, match="not an image this reader understands"):
        qr.read_qr_codes(tiff)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_encrypted_key_files_raise_only_key_file_errors(data: st.DataObject) -> None:
    """The work-factor check parses outside input too: any damage to the DER is a KeyFileError."""
    pem = _KDF_FUZZ_KEY
    body = bytearray(base64.b64decode(b"".join(pem.split(b"\n")[1:-2])))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(body) // 2, len(body)))
    text = (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + base64.encodebytes(bytes(body[:cut]))
        + b"-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    try:
        key = SigningKey.from_pem(text, passphrase=b"pw")
    except KeyFileError as e:
        assert str(e)
        return
    assert isinstance(key, SigningKey)  # a harmless mutation (say, in DER padding) still loads a key


_KDF_FUZZ_KEY = SigningKey.from_seed(bytes(32)).to_pem(passphrase=b"pw")


def test_bool_as_int_tree_size_and_index_are_refused() -> None:
    from ledger.log import merkle

    leaf = merkle.leaf_hash(b"entry")
    merkle.check_record([], 1, leaf, 0, leaf)  # one leaf: the root is the leaf hash
    with pytest.raises(MalformedError, match=r"true is not 1"):
        merkle.check_record([], True, leaf, 0, leaf)
    with pytest.raises(MalformedError, match=r"true is not 1"):
        merkle.check_tree([], True, leaf, True, leaf)
