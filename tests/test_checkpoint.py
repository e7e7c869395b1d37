"""C2SP checkpoints and Ed25519 cosignatures: spec examples, round trips, tampering, strictness, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, SignatureError, TooLargeError
from ledger.keys import SIG_TYPE_COSIGNATURE, SigningKey, VerifierKey
from ledger.log import note
from ledger.log.checkpoint import (
    COSIGNATURE_HEADER,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    cosign,
    cosignature_message,
    cosignature_timestamp,
    open_checkpoint,
    parse_uint63,
    sign_checkpoint,
)
from tests.helpers import mutate

ORIGIN = "ledger.example.gov.cn/hangzhou-xihu-amr"
ROOT = hashlib.sha256(b"root").digest()
LOG = SigningKey.from_seed(b"\x01" * 32)
LOG_VKEY = note.Ed25519Signer(name=ORIGIN, key=LOG).verifier_key


def witness(i: int, t: int = 1_717_171_200) -> CosignatureSigner:
    return CosignatureSigner(
        name=f"witness{i}.example.gov.cn",
        key=SigningKey.from_seed(bytes([0x40 + i]) * 32),
        clock=lambda: t + i,
    )


def signed(size: int = 7, **kw: object) -> bytes:
    return sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root_hash=ROOT, **kw), key=LOG)  # type: ignore[arg-type]


# --- spec examples ---------------------------------------------------------------------
# c2sp.org/tlog-cosignature, "Format": a checkpoint with a log signature and a cosignature.
# The spec does not publish the two public keys, so this checks the layout only.
SPEC_CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_CHECKPOINT
    + "\n"
    + "— example.com/behind-the-sofa "
    + "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    + "— witness.example.com/w1 "
    + "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJs"
    + "X3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
).encode()


def test_spec_checkpoint_and_cosignature_layout() -> None:
    n = note.parse(SPEC_NOTE)
    cp = Checkpoint.parse(n.text)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.to_text() == SPEC_CHECKPOINT
    log_sig, cosig = n.signatures
    assert len(log_sig.data) == 64
    assert len(cosig.data) == 72
    # the spec's signed-message example uses this very timestamp
    assert cosignature_timestamp(cosig.data) == 1679315147


def test_cosignature_message_is_the_spec_example() -> None:
    want = (
        b"cosignature/v1\n"
        b"time 1679315147\n"
        b"example.com/behind-the-sofa\n"
        b"20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    assert cosignature_message(SPEC_CHECKPOINT, 1679315147) == want
    assert COSIGNATURE_HEADER == b"cosignature/v1\n"


def test_cosignature_bytes_match_an_independent_reading_of_the_spec() -> None:
    w = witness(1)
    out = cosign(signed(), w, timestamp=1679315147)
    line = note.parse(out).signatures[-1]
    pub = SigningKey.from_seed(bytes([0x41]) * 32).public_key.raw
    assert line.key_id == hashlib.sha256(w.name.encode() + b"\n\x04" + pub).digest()[:4]
    assert line.data[:8] == (1679315147).to_bytes(8, "big")
    text = note.parse(out).text.encode()
    Ed25519PublicKey.from_public_bytes(pub).verify(line.data[8:], b"cosignature/v1\ntime 1679315147\n" + text)


# --- checkpoint text -----------------------------------------------------------------


def test_checkpoint_round_trip_with_extensions() -> None:
    cp = Checkpoint(origin=ORIGIN, size=0, root_hash=ROOT, extensions=("ext one", "— two"))
    text = cp.to_text()
    assert text == f"{ORIGIN}\n0\n{base64.b64encode(ROOT).decode()}\next one\n— two\n"
    assert Checkpoint.parse(text) == cp
    big = Checkpoint(origin="o", size=2**63 - 1, root_hash=ROOT)
    assert Checkpoint.parse(big.to_text()) == big


R = base64.b64encode(ROOT).decode()
URLSAFE = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"o\n1\n{R}", "end with a newline"),
        ("o\n1\n", "2 line\\(s\\)"),
        (f"\n1\n{R}\n", "line 1 is empty"),
        (f"o\n\n{R}\n", "line 2 is empty"),
        ("o\n1\n\n", "line 3 is empty"),
        (f"o\n1\n{R}\n\n", "line 4 is empty"),
        (f"o\n1\n{R}\next\n\n", "line 5 is empty"),
        (f"o\n01\n{R}\n", "leading zero"),
        (f"o\n00\n{R}\n", "leading zero"),
        (f"o\n+1\n{R}\n", "not an ASCII decimal"),
        (f"o\n-1\n{R}\n", "not an ASCII decimal"),
        (f"o\n 1\n{R}\n", "not an ASCII decimal"),
        (f"o\n1.0\n{R}\n", "not an ASCII decimal"),
        (f"o\n1_0\n{R}\n", "not an ASCII decimal"),
        (f"o\n\u0661\n{R}\n", "not an ASCII decimal"),  # ARABIC-INDIC DIGIT ONE
        (f"o\n9223372036854775808\n{R}\n", "larger than 2\\^63-1"),
        (f"o\n99999999999999999999\n{R}\n", "at most 19 digits"),
        (f"o\n{'9' * 5000}\n{R}\n", "at most 19 digits"),
        (f"o\n1\n{R[:-1]}\n", "not the base64 of 32 bytes"),
        (f"o\n1\n{R}=\n", "not the base64 of 32 bytes"),
        (f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "not the base64 of 32 bytes"),
        (f"o\n1\n{R[:-2]}B=\n", "not canonical base64"),
        (f"o\n1\n{R[:-2]}-=\n", "not valid base64"),
        (f"o\n1\n{URLSAFE}\n", "not valid base64"),
        (f"o\r\n1\n{R}\n", "control character"),
        (f"o\n1\n{R}\nex\tt\n", "control character"),
    ],
)
def test_checkpoint_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        Checkpoint.parse(text)


def test_checkpoint_parse_size_cap_and_type() -> None:
    text = Checkpoint(origin="o" * 100, size=1, root_hash=ROOT).to_text()
    with pytest.raises(TooLargeError):
        Checkpoint.parse(text, max_size=50)
    with pytest.raises(MalformedError, match="must be a str"):
        Checkpoint.parse(text.encode())  # type: ignore[arg-type]


def test_checkpoint_constructor_validates() -> None:
    for kw, msg in [
        ({"origin": ""}, "origin"),
        ({"origin": "a\nb"}, "origin"),
        ({"size": -1}, "tree size"),
        ({"size": 2**63}, "tree size"),
        ({"size": True}, "tree size"),
        ({"root_hash": b"x" * 31}, "32 bytes"),
        ({"extensions": ("",)}, "extension"),
        ({"extensions": ["x"]}, "tuple"),
    ]:
        args: dict[str, object] = {"origin": "o", "size": 1, "root_hash": ROOT, **kw}
        with pytest.raises(MalformedError, match=msg):
            Checkpoint(**args)  # type: ignore[arg-type]


def test_parse_uint63() -> None:
    assert parse_uint63("0", what="n") == 0
    assert parse_uint63("9223372036854775807", what="n") == 2**63 - 1
    with pytest.raises(MalformedError, match=r"^n is not"):
        parse_uint63("", what="n")


def test_origin_may_contain_spaces_but_then_cannot_be_a_key_name() -> None:
    # the spec only recommends URL-like origins; a log key name cannot contain a space
    cp = Checkpoint.parse(f"my log\n1\n{R}\n")
    assert cp.origin == "my log"
    with pytest.raises(MalformedError, match="empty or contains"):
        sign_checkpoint(cp, key=LOG)


# --- signing and opening -------------------------------------------------------------


def test_sign_and_open_checkpoint() -> None:
    data = signed(7)
    assert note.parse(data).signatures[0].name == ORIGIN
    opened = open_checkpoint(data, log_key=LOG_VKEY)
    assert opened.checkpoint == Checkpoint(origin=ORIGIN, size=7, root_hash=ROOT)
    assert opened.note == data
    assert opened.cosignatures == {}


def test_cosign_round_trip_with_several_witnesses() -> None:
    ws = [witness(i) for i in range(1, 4)]
    data = signed()
    for w in ws:
        data = cosign(data, w)
    opened = open_checkpoint(data, log_key=LOG_VKEY, witnesses=[w.verifier_key for w in ws])
    assert opened.cosignatures == {w.name: 1_717_171_200 + i for i, w in enumerate(ws, start=1)}
    # only the witnesses we trust are reported; others are ignored
    some = open_checkpoint(data, log_key=LOG_VKEY, witnesses=[ws[1].verifier_key])
    assert some.cosignatures == {ws[1].name: 1_717_171_202}


def test_cosign_with_extension_lines_covers_them() -> None:
    w = witness(1)
    data = cosign(signed(extensions=("opaque ext",)), w, timestamp=5)
    opened = open_checkpoint(data, log_key=LOG_VKEY, witnesses=[w.verifier_key])
    assert opened.checkpoint.extensions == ("opaque ext",)
    assert opened.cosignatures == {w.name: 5}
    sig = note.parse(data).signatures[-1]
    msg = cosignature_message(opened.checkpoint.to_text(), 5)
    assert SigningKey.from_seed(bytes([0x41]) * 32).public_key.is_valid(sig.data[8:], msg)


def test_cosign_refuses_twice_and_non_checkpoints() -> None:
    w = witness(1)
    once = cosign(signed(), w)
    with pytest.raises(MalformedError, match="already carries a signature"):
        cosign(once, w)
    not_cp = note.sign("hello\n", [note.Ed25519Signer(name=ORIGIN, key=LOG)])
    with pytest.raises(MalformedError, match="line\\(s\\)"):
        cosign(not_cp, w)
    for bad in (-1, 2**63, 1.5):
        with pytest.raises(MalformedError, match="timestamp"):
            cosign(signed(), w, timestamp=bad)  # type: ignore[arg-type]


def _replace_last_sig(data: bytes, sig: note.Signature) -> bytes:
    n = note.parse(data)
    return note.Note(text=n.text, signatures=(*n.signatures[:-1], sig)).to_bytes()


def test_cosignature_tampering_is_detected() -> None:
    w = witness(1)
    wk = [w.verifier_key]
    data = cosign(signed(), w, timestamp=1000)
    good = note.parse(data).signatures[-1]
    # timestamp changed
    moved = note.Signature(name=good.name, key_id=good.key_id, data=(1001).to_bytes(8, "big") + good.data[8:])
    with pytest.raises(SignatureError, match=f"invalid signature by trusted key {w.name}"):
        open_checkpoint(_replace_last_sig(data, moved), log_key=LOG_VKEY, witnesses=wk)
    # timestamp beyond 2^63-1 (and still otherwise a valid-looking line)
    over = note.Signature(name=good.name, key_id=good.key_id, data=b"\xff" * 8 + good.data[8:])
    with pytest.raises(SignatureError, match="invalid signature"):
        open_checkpoint(_replace_last_sig(data, over), log_key=LOG_VKEY, witnesses=wk)
    # truncated cosignature
    short = note.Signature(name=good.name, key_id=good.key_id, data=good.data[:-1])
    with pytest.raises(SignatureError, match="invalid signature"):
        open_checkpoint(_replace_last_sig(data, short), log_key=LOG_VKEY, witnesses=wk)
    # checkpoint text changed: the log signature fails first
    other = cosign(signed(size=8), w, timestamp=1000)
    swapped = (
        note.parse(other).text.encode()
        + b"\n"
        + b"".join(s.to_line().encode() for s in note.parse(data).signatures)
    )
    with pytest.raises(SignatureError, match="invalid signature by trusted key"):
        open_checkpoint(swapped, log_key=LOG_VKEY, witnesses=wk)
    # another key under the witness's name: a different key ID, so an unknown key
    impostor = CosignatureSigner(name=w.name, key=SigningKey.from_seed(b"\x99" * 32))
    forged = cosign(signed(), impostor, timestamp=1000)
    assert open_checkpoint(forged, log_key=LOG_VKEY, witnesses=wk).cosignatures == {}
    # a cosignature replayed from a different checkpoint does not verify
    wrong = _replace_last_sig(cosign(signed(), w, timestamp=1000), note.parse(other).signatures[-1])
    with pytest.raises(SignatureError, match=f"invalid signature by trusted key {w.name}"):
        open_checkpoint(wrong, log_key=LOG_VKEY, witnesses=wk)


def test_cosignature_is_not_a_note_signature_and_vice_versa() -> None:
    # same key, same name, both types: different key IDs keep them apart
    key = SigningKey.from_seed(b"\x07" * 32)
    as_log = note.Ed25519Signer(name="dual.example", key=key)
    as_witness = CosignatureSigner(name="dual.example", key=key)
    assert as_log.key_id != as_witness.key_id
    cp_text = Checkpoint(origin="dual.example", size=1, root_hash=ROOT).to_text()
    # a cosignature by the key is not the log's signature...
    only_cosig = note.sign(cp_text, [as_witness])
    with pytest.raises(SignatureError, match="no signature from a known key"):
        open_checkpoint(only_cosig, log_key=as_log.verifier_key)
    # ...and the log's signature is not a cosignature
    data = note.sign(cp_text, [as_log])
    plain = open_checkpoint(data, log_key=as_log.verifier_key, witnesses=[as_witness.verifier_key])
    assert plain.cosignatures == {}
    opened = open_checkpoint(
        cosign(data, as_witness), log_key=as_log.verifier_key, witnesses=[as_witness.verifier_key]
    )
    assert opened.cosignatures.keys() == {"dual.example"}


def test_open_checkpoint_requires_the_log_signature() -> None:
    w = witness(1)
    text = Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT).to_text()
    only_cosigned = note.sign(text, [w])
    with pytest.raises(SignatureError, match=r"not signed by the log key .* \(only cosigned by witness1"):
        open_checkpoint(only_cosigned, log_key=LOG_VKEY, witnesses=[w.verifier_key])
    with pytest.raises(SignatureError, match="no signature from a known key"):
        open_checkpoint(only_cosigned, log_key=LOG_VKEY)
    other_log = SigningKey.from_seed(b"\x02" * 32)
    with pytest.raises(SignatureError, match="no signature from a known key"):
        open_checkpoint(
            sign_checkpoint(Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT), key=other_log),
            log_key=LOG_VKEY,
        )


def test_open_checkpoint_requires_origin_to_be_the_log_key_name() -> None:
    cp = Checkpoint(origin="elsewhere.example/log", size=3, root_hash=ROOT)
    data = note.sign(cp.to_text(), [note.Ed25519Signer(name=ORIGIN, key=LOG)])
    with pytest.raises(SignatureError, match=r"origin 'elsewhere\.example/log' is not the log key's name"):
        open_checkpoint(data, log_key=LOG_VKEY)


def test_open_checkpoint_rejects_wrong_key_types() -> None:
    w = witness(1)
    with pytest.raises(MalformedError, match="not an Ed25519 note key"):
        open_checkpoint(signed(), log_key=w.verifier_key)
    with pytest.raises(MalformedError, match="not a cosignature key"):
        open_checkpoint(signed(), log_key=LOG_VKEY, witnesses=[LOG_VKEY])


def test_open_checkpoint_size_cap() -> None:
    data = signed()
    with pytest.raises(TooLargeError):
        open_checkpoint(data, log_key=LOG_VKEY, max_size=len(data) - 1)


def test_same_witness_name_two_keys_counts_once_newest_time() -> None:
    a = CosignatureSigner(name="w.example", key=SigningKey.from_seed(b"\x21" * 32))
    b = CosignatureSigner(name="w.example", key=SigningKey.from_seed(b"\x22" * 32))
    data = cosign(cosign(signed(), a, timestamp=10), b, timestamp=20)
    opened = open_checkpoint(data, log_key=LOG_VKEY, witnesses=[a.verifier_key, b.verifier_key])
    assert opened.cosignatures == {"w.example": 20}


def test_cosignature_verifier_and_signer_basics() -> None:
    w = witness(2)
    v = CosignatureVerifier(key=w.verifier_key)
    assert (v.name, v.key_id) == (w.name, w.key_id)
    sig = w.sign(b"text\n")
    assert cosignature_timestamp(sig) == 1_717_171_202
    assert v.verify(b"text\n", sig)
    assert not v.verify(b"text!\n", sig)
    assert not v.verify(b"text\n", sig[:-1])
    with pytest.raises(MalformedError, match="72 bytes"):
        cosignature_timestamp(sig[:10])
    with pytest.raises(MalformedError, match="not a cosignature key"):
        CosignatureVerifier(key=LOG_VKEY)
    with pytest.raises(MalformedError, match="witness name"):
        CosignatureSigner(name="bad name", key=LOG)
    vk = VerifierKey.parse(str(w.verifier_key))
    assert vk.sig_type == SIG_TYPE_COSIGNATURE


# --- fuzzing ---------------------------------------------------------------------------

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
W1 = witness(1)
SEED = cosign(signed(12345), W1, timestamp=77)


@_FUZZ
@given(st.text(max_size=300))
def test_fuzz_checkpoint_text(text: str) -> None:
    try:
        cp = Checkpoint.parse(text)
    except LedgerError:
        return
    assert cp.to_text() == text


@_FUZZ
@given(st.lists(st.text(max_size=50), min_size=0, max_size=6))
def test_fuzz_checkpoint_lines(lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    try:
        cp = Checkpoint.parse(text)
    except LedgerError:
        return
    assert cp.to_text() == text


@_FUZZ
@given(st.binary(max_size=400))
def test_fuzz_open_checkpoint_random(data: bytes) -> None:
    with contextlib.suppress(LedgerError):
        open_checkpoint(data, log_key=LOG_VKEY, witnesses=[W1.verifier_key])


@_FUZZ
@given(st.data())
def test_fuzz_open_checkpoint_mutations(data: st.DataObject) -> None:
    msg = mutate(data, SEED)
    try:
        opened = open_checkpoint(msg, log_key=LOG_VKEY, witnesses=[W1.verifier_key])
    except LedgerError:
        return
    assert opened.checkpoint.size == 12345 and opened.checkpoint.root_hash == ROOT
    assert opened.cosignatures in ({}, {W1.name: 77})


def test_sixteen_post_quantum_sized_signatures_fit_the_default_cap() -> None:
    # the spec: accept at least 16 signatures; post-quantum ones are nearly 5 kB
    data = signed()
    for i in range(15):
        sig = note.Signature(name=f"pq{i}.example/witness", key_id=bytes([i]) * 4, data=bytes(4627 + 8))
        data += sig.to_line().encode()
    assert len(data) > 64 * 1024
    opened = open_checkpoint(data, log_key=LOG_VKEY)
    assert opened.checkpoint.size == 7
    assert opened.cosignatures == {}


def test_opened_cosignatures_are_read_only() -> None:
    w = witness(1)
    opened = open_checkpoint(cosign(signed(), w, timestamp=3), log_key=LOG_VKEY, witnesses=[w.verifier_key])
    with pytest.raises(TypeError):
        opened.cosignatures[w.name] = 4  # type: ignore[index]


def test_lines_without_a_utf8_form_are_malformed_not_a_crash() -> None:
    key = SigningKey.from_seed(b"k" * 32)
    for cp in (
        lambda: Checkpoint(origin="o\udc80", size=1, root_hash=bytes(32)),
        lambda: Checkpoint(origin="o", size=1, root_hash=bytes(32), extensions=("x\ud800",)),
    ):
        with pytest.raises(MalformedError, match="not valid UTF-8"):
            sign_checkpoint(cp(), key=key)
