"""The CL1 encoder's fast paths give exactly the bytes of the plain definition.

The reference here is the format as specified: canonical msgpack of the map
(:func:`ledger.canonical.encode`), raw deflate with the preset dictionary from a fresh
compressor, and Base45 computed digit by digit as RFC 9285 writes it.
"""

import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.credential.base45 import ALPHABET, b45encode
from ledger.credential.credential import Credential, issue_credential
from ledger.credential.presentation import Presentation
from ledger.credential.qrdict import PRESET_DICTIONARY
from ledger.errors import MalformedError
from ledger.log.statement import Kind, Reason
from tests.fixtures.consortium import AMR, AMR_KEY, FOOD_PERMIT, T0, all_credentials, issue_food_permit


def _rfc9285(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        out += [ALPHABET[n % 45], ALPHABET[n // 45 % 45], ALPHABET[n // 2025]]
    if len(data) % 2:
        out += [ALPHABET[data[-1] % 45], ALPHABET[data[-1] // 45]]
    return "".join(out)


def _reference_text(p: Presentation) -> str:
    data = canonical.encode(p.to_map())
    # memLevel 9, not the writer's 8: the smaller hash table must not change a byte
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=PRESET_DICTIONARY)
    return "CL1:" + _rfc9285(packer.compress(data) + packer.flush())


_REPLACED = next(iter(all_credentials().values())).cert_id
_VALUE = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(alphabet="营业执照有限公司北京市海淀区一二三ABC 0123（）；", min_size=1, max_size=40),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
_CLAIMS = st.dictionaries(st.integers(0, 255), _VALUE, min_size=1, max_size=20)


@st.composite
def presentations(draw: st.DrawFn) -> Presentation:
    kind = draw(st.sampled_from([Kind.ISSUE, Kind.REPLACE]))
    valid_from = draw(st.integers(0, 2**40 - 2))
    values = draw(_CLAIMS)
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["secret"] = draw(st.binary(min_size=16, max_size=16))
    else:
        hidden = draw(
            st.dictionaries(
                st.integers(0, 255).filter(lambda k: k not in values),
                st.binary(min_size=32, max_size=32),
                min_size=1,
                max_size=10,
            )
        )
        fields["salts"] = {k: draw(st.binary(min_size=16, max_size=16)) for k in values}
        fields["digests"] = hidden
    if kind == Kind.REPLACE:
        fields["replaces"] = _REPLACED
        fields["reason"] = draw(st.none() | st.sampled_from(list(Reason)))
    return Presentation(
        kind=kind,
        key_id=draw(st.binary(min_size=4, max_size=4)),
        cert_type=draw(st.from_regex(r"[a-z0-9][a-z0-9_]{0,20}", fullmatch=True)),
        serial=draw(st.from_regex(r"[0-9]{1,20}", fullmatch=True)),
        cert_version=draw(st.from_regex(r"[0-9]{3}", fullmatch=True)),
        time=draw(st.integers(0, 2**40 - 1)),
        operator=draw(st.from_regex(r"[A-Za-z0-9:_.-]{1,20}", fullmatch=True)),
        valid_from=valid_from,
        valid_until=draw(st.none() | st.integers(valid_from + 1, 2**40 - 1)),
        signature=draw(st.binary(min_size=64, max_size=64)),
        values=values,
        **fields,
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_bytes_and_text_equal_the_reference_encoder(data: st.DataObject) -> None:
    p = data.draw(presentations())
    try:
        reference = canonical.encode(p.to_map())
    except MalformedError as e:  # text that is not valid Unicode: both ways refuse it
        with pytest.raises(MalformedError, match="cannot encode value canonically"):
            p.to_bytes()
        assert "encode" in str(e)
        return
    assert p.to_bytes() == reference
    assert p.to_text() == _reference_text(p)


def test_issued_credentials_encode_as_the_reference_does() -> None:
    for cred in [*all_credentials().values(), _replacement()]:
        names = [s.name for s in cred.schema]
        for reveal in (None, names[:3], names[1::2]):
            p = cred.present(reveal)
            assert p.to_bytes() == canonical.encode(p.to_map())
            assert p.to_text() == _reference_text(p)


@given(st.binary(max_size=600))
def test_base45_table_encoder_is_rfc9285(data: bytes) -> None:
    assert b45encode(data) == _rfc9285(data)
    assert b45encode(bytearray(data)) == _rfc9285(data)


def test_text_that_is_not_unicode_is_refused_by_the_encoder() -> None:
    p = next(iter(all_credentials().values())).present()
    fields = {f: getattr(p, f) for f in p.__dataclass_fields__}
    broken = Presentation(**{**fields, "values": {**dict(p.values), 0: "a\ud800b"}})
    with pytest.raises(MalformedError, match="cannot encode value canonically"):
        broken.to_bytes()


def _checked_again(p: Presentation) -> Presentation:
    return Presentation(**{name: getattr(p, name) for name in p.__dataclass_fields__})


def _replacement() -> Credential:
    old = issue_food_permit()
    return issue_credential(
        cert_type=FOOD_PERMIT,
        issuer=AMR,
        key=AMR_KEY,
        serial="0007",
        cert_version="002",
        claims={**old.claims, "seats": 80},
        operator="op:51c0de",
        time=T0,
        valid_from=T0,
        valid_until=T0 + 86400 * 365,
        replaces=old.cert_id,
        reason=Reason.INFORMATION_CHANGED,
    )


def test_presentations_of_credentials_equal_the_checked_construction() -> None:
    replacement = _replacement()
    loaded = Credential.loads(replacement.dumps())  # made by the checked construction
    for cred in [*all_credentials().values(), replacement, loaded]:
        names = [s.name for s in cred.schema]
        for reveal in (None, names, names[:3], names[1::2], names[-1:], []):
            p = cred.present(reveal)
            again = _checked_again(p)
            assert p == again
            for name in ("values", "salts", "digests"):
                got, want = getattr(p, name), getattr(again, name)
                assert type(got) is type(want)
                assert got is None or list(got.items()) == list(want.items())
            assert type(p.kind) is type(again.kind)
            assert type(p.reason) is type(again.reason)
