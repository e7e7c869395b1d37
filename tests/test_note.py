"""C2SP signed notes: published vectors, the spec's verification rules, strict parsing, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, SignatureError, TooLargeError
from ledger.keys import SIG_TYPE_COSIGNATURE, SigningKey, VerifierKey
from ledger.log import note
from tests.helpers import mutate

# --- published vectors -------------------------------------------------------------
# golang.org/x/mod/sumdb/note: package documentation and note_test.go (TestOpen).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]  # the doc's PRIVATE+KEY
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
# c2sp.org/signed-note: the example in the specification's introduction. The spec does
# not publish the public key of quasimodo.example/salvatore, so this vector checks the
# parser (text with an inner blank line, key ID, signature length), not the signature.
QUASIMODO = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
).encode()


def peter() -> note.Ed25519Verifier:
    return note.Ed25519Verifier(key=VerifierKey.parse(PETER_VKEY))


def enoch() -> note.Ed25519Verifier:
    return note.Ed25519Verifier(key=VerifierKey.parse(ENOCH_VKEY))


def signer(i: int, name: str | None = None) -> note.Ed25519Signer:
    return note.Ed25519Signer(name=name or f"signer{i}.example/k", key=SigningKey.from_seed(bytes([i]) * 32))


def test_go_vector_signs_byte_for_byte_and_opens() -> None:
    s = note.Ed25519Signer(name="PeterNeumann", key=SigningKey.from_seed(PETER_SEED))
    assert str(s.verifier_key) == PETER_VKEY
    msg = note.sign(GO_TEXT, [s])
    assert msg == (GO_TEXT + "\n" + PETER_SIG).encode()
    opened = note.open(msg, [peter()])
    assert opened.text == GO_TEXT
    assert [sig.key for sig in opened.verified] == ["PeterNeumann+c74f20a3"]
    assert opened.unverified == ()


def test_go_open_vectors_one_known_one_unknown_then_both() -> None:
    msg = (GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    one = note.open(msg, [peter()])
    assert [s.key for s in one.verified] == ["PeterNeumann+c74f20a3"]
    assert [s.key for s in one.unverified] == ["EnochRoot+af0cfe78"]
    both = note.open(msg, [peter(), enoch()])
    assert [s.key for s in both.verified] == ["PeterNeumann+c74f20a3", "EnochRoot+af0cfe78"]
    assert both.unverified == ()
    with pytest.raises(SignatureError, match="no signature from a known key"):
        note.open(msg, [])


def test_go_vector_tampered_text_is_rejected_naming_the_key() -> None:
    msg = (GO_TEXT.replace("cryptography", "cryptographY") + "\n" + PETER_SIG).encode()
    with pytest.raises(SignatureError, match=r"invalid signature by trusted key PeterNeumann\+c74f20a3"):
        note.open(msg, [peter()])


def test_c2sp_spec_example_parses_exactly() -> None:
    n = note.parse(QUASIMODO)
    assert (
        n.text
        == "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    )
    (sig,) = n.signatures
    assert sig.name == "quasimodo.example/salvatore"
    assert sig.key_id.hex() == "367ba04b"
    assert len(sig.data) == 64
    assert n.to_bytes() == QUASIMODO
    # its key is not among ours: ignored, so nothing known signed it
    with pytest.raises(SignatureError, match=r"signed by quasimodo.example/salvatore\+367ba04b"):
        note.open(QUASIMODO, [peter()])


def test_text_with_blank_lines_and_trailing_blank_line_round_trips() -> None:
    s = signer(1)
    for text in ["a\n\nb\n", "a\n\n", "\n", "x\n\n\n\n", "— not a signature\n"]:
        msg = note.sign(text, [s])
        opened = note.open(msg, [note.Ed25519Verifier(key=s.verifier_key)])
        assert opened.text == text
        assert note.parse(msg).to_bytes() == msg


def test_sixteen_and_a_hundred_signatures_accepted_one_more_refused() -> None:
    signers = [signer(i) for i in range(1, 101)]
    msg = note.sign("many\n", signers[:16])
    opened = note.open(msg, [note.Ed25519Verifier(key=s.verifier_key) for s in signers[:16]])
    assert len(opened.verified) == 16
    msg100 = note.sign("many\n", signers)
    assert len(note.parse(msg100).signatures) == 100
    assert len(note.open(msg100, [note.Ed25519Verifier(key=signers[0].verifier_key)]).unverified) == 99
    with pytest.raises(TooLargeError, match="101 signatures, more than the limit of 100"):
        note.parse(msg100 + note.parse(msg100).signatures[0].to_line().encode())
    with pytest.raises(TooLargeError, match="at most 100 signatures"):
        note.add_signatures(msg100, [signer(101)])


def test_unknown_keys_ignored_including_name_or_id_collisions() -> None:
    s = signer(1, "log.example/a")
    v = note.Ed25519Verifier(key=s.verifier_key)
    good = note.sign("text\n", [s])
    sig = note.parse(good).signatures[0]
    # same name, different key ID; same key ID, different name: both unknown keys,
    # and their (bogus) signatures must be ignored, not verified
    same_name = note.Signature(name=sig.name, key_id=bytes(4), data=b"\x01" * 64)
    same_id = note.Signature(name="log.example/b", key_id=sig.key_id, data=b"\x02" * 64)
    msg = good + same_name.to_line().encode() + same_id.to_line().encode()
    opened = note.open(msg, [v])
    assert opened.verified == (sig,)
    assert opened.unverified == (same_name, same_id)
    # alone, they are not a signature from a known key
    alone = b"text\n\n" + same_name.to_line().encode() + same_id.to_line().encode()
    with pytest.raises(SignatureError, match="no signature from a known key"):
        note.open(alone, [v])


def test_bad_signature_from_known_key_rejects_whole_note() -> None:
    a, b = signer(1), signer(2)
    msg = note.sign("text\n", [a, b])
    sigs = note.parse(msg).signatures
    forged = note.Signature(name=b.name, key_id=b.key_id, data=bytes(64))
    bad = b"text\n\n" + sigs[0].to_line().encode() + forged.to_line().encode()
    va, vb = (note.Ed25519Verifier(key=x.verifier_key) for x in (a, b))
    with pytest.raises(SignatureError, match=rf"invalid signature by trusted key {b.name}\+{b.key_id.hex()}"):
        note.open(bad, [va, vb])
    # the same note is fine for someone who trusts only a
    assert note.open(bad, [va]).unverified == (forged,)
    # wrong-length signature data from a known key is an invalid signature too
    short = note.Signature(name=a.name, key_id=a.key_id, data=b"\x00")
    with pytest.raises(SignatureError, match="invalid signature by trusted key"):
        note.open(b"text\n\n" + short.to_line().encode(), [va])


def test_duplicate_signatures_count_once_and_are_all_checked() -> None:
    a = signer(1)
    va = note.Ed25519Verifier(key=a.verifier_key)
    msg = note.sign("text\n", [a])
    line = note.parse(msg).signatures[0].to_line().encode()
    opened = note.open(msg + line + line, [va])
    assert len(opened.verified) == 1
    bad = note.Signature(name=a.name, key_id=a.key_id, data=bytes(64)).to_line().encode()
    with pytest.raises(SignatureError, match="1 other trusted signature"):
        note.open(msg + bad, [va])
    unknown = note.Signature(name="x.example", key_id=bytes(4), data=b"z").to_line().encode()
    assert len(note.open(msg + unknown + unknown, [va]).unverified) == 1


def test_sign_and_add_signatures_refuse_the_same_key_twice() -> None:
    a, b = signer(1), signer(2)
    with pytest.raises(MalformedError, match=rf"already carries a signature by key {a.name}\+"):
        note.sign("t\n", [a, a])
    msg = note.sign("t\n", [a])
    with pytest.raises(MalformedError, match="already carries a signature"):
        note.add_signatures(msg, [a])
    both = note.add_signatures(msg, [b])
    assert both.startswith(msg)  # existing bytes kept exactly
    opened = note.open(both, [note.Ed25519Verifier(key=x.verifier_key) for x in (a, b)])
    assert [s.name for s in opened.verified] == [a.name, b.name]
    with pytest.raises(MalformedError, match="no signers"):
        note.sign("t\n", [])


def test_add_signatures_keeps_unknown_signatures_verbatim() -> None:
    msg = (GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    out = note.add_signatures(msg, [signer(3)])
    assert out.startswith(msg)
    assert note.open(out, [peter(), enoch()]).text == GO_TEXT


def test_ambiguous_trusted_keys_are_refused_only_when_used() -> None:
    @dataclass(frozen=True)
    class Impostor:
        name: str
        key_id: bytes

        def verify(self, message: bytes, signature: bytes) -> bool:
            return True

    msg = (GO_TEXT + "\n" + PETER_SIG).encode()
    imp = Impostor("PeterNeumann", bytes.fromhex("c74f20a3"))
    with pytest.raises(SignatureError, match="ambiguous trusted keys"):
        note.open(msg, [peter(), imp])
    # the same verifier listed twice is not ambiguous
    assert len(note.open(msg, [peter(), peter()]).verified) == 1
    # an unrelated ambiguity does not matter for this note
    other = Impostor("EnochRoot", bytes.fromhex("af0cfe78"))
    assert len(note.open(msg, [peter(), enoch(), other]).verified) == 1


def test_verifier_refuses_cosignature_key() -> None:
    k = SigningKey.from_seed(bytes(32))
    vk = VerifierKey(name="w.example", public_key=k.public_key, sig_type=SIG_TYPE_COSIGNATURE)
    with pytest.raises(MalformedError, match="not an Ed25519 note key"):
        note.Ed25519Verifier(key=vk)


def test_signer_names_checked() -> None:
    for bad in ["", "a b", "a+b", "a\tb", "a\u00a0b", "a\u3000b", "a\x01b"]:
        with pytest.raises(MalformedError, match="empty or contains"):
            note.Ed25519Signer(name=bad, key=SigningKey.from_seed(bytes(32)))


def test_sign_refuses_bad_text() -> None:
    s = signer(1)
    with pytest.raises(MalformedError, match="end with a newline"):
        note.sign("no newline", [s])
    with pytest.raises(MalformedError, match="end with a newline"):
        note.sign("", [s])
    with pytest.raises(MalformedError, match="control character U\\+0009"):
        note.sign("tab\there\n", [s])


VALID = (GO_TEXT + "\n" + PETER_SIG).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GO_TEXT.encode(), "no blank line"),
        ((GO_TEXT + "\n").encode(), "no signature lines"),
        (VALID[:-1], "does not end with a newline"),
        (b"\x01" + VALID, "control character U\\+0001"),
        (VALID.replace(b"\n", b"\r\n", 1), "control character U\\+000D"),
        (b"\xff" + VALID, "not valid UTF-8"),
        (b"\xed\xa0\x80" + VALID, "not valid UTF-8"),  # an encoded surrogate
        (b"\xc0\xaf" + VALID, "not valid UTF-8"),  # overlong
        (VALID + b"Unexpected line.\n", "does not start with an em dash"),
        (VALID.replace("— ".encode(), b"- "), "does not start with an em dash"),
        (VALID.replace("— ".encode(), "—".encode()), "does not start with an em dash"),
        (VALID.replace(b"PeterNeumann ", b"Peter Neumann "), "not valid base64"),
        (VALID.replace(b"PeterNeumann ", b"PeterNeumann"), "no space between"),
        (VALID.replace(b"PeterNeumann", b"Peter+Neumann"), "key name 'Peter\\+Neumann'"),
        (VALID.replace(b"PeterNeumann", "Peter\u2003Neumann".encode()), "key name"),
        (VALID.replace(b"PeterNeumann", b""), "key name ''"),
        (VALID.replace(b"AM=\n", b"AM\n"), "not valid base64"),
        (VALID.replace(b"AM=\n", b"AN=\n"), "not canonical base64"),  # nonzero unused bits
        (VALID.replace(b"AM=\n", b"AM= \n"), "not valid base64"),
        (VALID.replace(b"x08go/", b"x08go_"), "not valid base64"),  # URL alphabet
        (VALID.replace(b"AM=\n", b"AM=\n\n"), "no signature lines"),
        (GO_TEXT.encode() + "\n— PeterNeumann x08g\n".encode(), "too short"),
        (GO_TEXT.encode() + "\n— PeterNeumann x08go/Z\n".encode(), "not valid base64"),
        (GO_TEXT.encode() + "\n— PeterNeumann \n".encode(), "too short"),
    ],
)
def test_parse_rejects(data: bytes, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        note.parse(data)
    with pytest.raises(MalformedError):
        note.open(data, [peter()])


def test_parse_size_cap() -> None:
    assert note.parse(VALID, max_size=len(VALID)).text == GO_TEXT
    with pytest.raises(TooLargeError, match=f"{len(VALID)} bytes, more than the {len(VALID) - 1}-byte limit"):
        note.parse(VALID, max_size=len(VALID) - 1)
    huge = b"a\n" * (note.DEFAULT_MAX_SIZE // 2) + b"\n" + PETER_SIG.encode()
    with pytest.raises(TooLargeError):
        note.open(huge, [peter()])
    with pytest.raises(MalformedError, match="must be bytes"):
        note.parse("text")  # type: ignore[arg-type]


def test_del_and_c1_characters_are_allowed_as_the_spec_says() -> None:
    # the spec forbids ASCII control characters below U+0020 only
    s = signer(1)
    text = "del \x7f and nel \x85 and nbsp \u00a0\n"
    msg = note.sign(text, [s])
    assert note.open(msg, [note.Ed25519Verifier(key=s.verifier_key)]).text == text


def test_signature_and_note_constructors_validate() -> None:
    with pytest.raises(MalformedError, match="4 bytes"):
        note.Signature(name="a", key_id=b"abc", data=b"x")
    with pytest.raises(MalformedError, match="at least one byte"):
        note.Signature(name="a", key_id=b"abcd", data=b"")
    with pytest.raises(MalformedError, match="at least one signature"):
        note.Note(text="t\n", signatures=())
    sig = note.Signature(name="a", key_id=b"abcd", data=b"x")
    assert sig.to_line() == "— a YWJjZHg=\n"
    assert note.Note(text="t\n", signatures=(sig,)).to_bytes() == "t\n\n— a YWJjZHg=\n".encode()


def test_key_id_is_the_c2sp_definition() -> None:
    s = signer(7, "example.com/log")
    pub = SigningKey.from_seed(bytes([7]) * 32).public_key.raw
    assert s.key_id == hashlib.sha256(b"example.com/log\n\x01" + pub).digest()[:4]


# --- fuzzing -------------------------------------------------------------------------

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TRUSTED = [peter(), enoch()]


def _parse_or_project_error(data: bytes) -> None:
    try:
        n = note.parse(data)
    except LedgerError:
        return
    assert n.to_bytes() == data  # whatever parses is canonical
    with contextlib.suppress(LedgerError):
        note.open(data, _TRUSTED)


@_FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    _parse_or_project_error(data)


@_FUZZ
@given(st.text(max_size=200), st.lists(st.text(max_size=60), max_size=4))
def test_fuzz_random_text(text: str, lines: list[str]) -> None:
    body = text + "\n\n" + "".join(f"— {line}\n" for line in lines)
    _parse_or_project_error(body.encode("utf-8", "surrogatepass"))


_SEED = (GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()


@_FUZZ
@given(st.data())
def test_fuzz_mutated_valid_notes(data: st.DataObject) -> None:
    mutated = mutate(data, _SEED, max_ops=4, max_insert=4)
    try:
        opened = note.open(mutated, _TRUSTED)
    except LedgerError:
        return
    # a mutation that still opens must not have changed what the keys signed
    assert opened.text == GO_TEXT
    assert {s.key for s in opened.verified} <= {"PeterNeumann+c74f20a3", "EnochRoot+af0cfe78"}


def test_text_without_a_utf8_form_is_malformed_not_a_crash() -> None:
    # Parsed notes are strict UTF-8 already; a str built in code may hold a lone surrogate.
    signer = note.Ed25519Signer(name="example.com/a", key=SigningKey.from_seed(b"k" * 32))
    with pytest.raises(MalformedError, match=r"not valid UTF-8 \(an unpaired surrogate at offset 1\)"):
        note.sign("a\ud800\n", [signer])
