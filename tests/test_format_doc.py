"""docs/credential-format.md quotes the worked example exactly as the code computes it."""

import re
from pathlib import Path

from ledger.credential.presentation import Presentation
from ledger.credential.qr import make_qr
from tests.fixtures.consortium import issue_health_certificate
from tests.format_example import REVEAL, example

DOC = (Path(__file__).resolve().parent.parent / "docs" / "credential-format.md").read_text(encoding="utf-8")
# deflate output depends on the zlib build, so the CL1 texts are checked by decoding them
ZLIB_DEPENDENT = {"full_text", "full_length", "full_deflated_size", "selective_text", "selective_length"}


def _blocks() -> list[str]:
    return re.findall(r"```\n(.*?)\n```", DOC, flags=re.DOTALL)


def test_document_quotes_every_computed_value() -> None:
    values = example()
    for name, value in values.items():
        if name not in ZLIB_DEPENDENT:
            assert value in DOC, f"docs/credential-format.md does not quote {name}:\n{value}"


def test_document_texts_decode_to_the_example_presentations() -> None:
    cred = issue_health_certificate()
    texts = ["".join(b.split("\n")) for b in _blocks() if b.startswith("CL1:")]
    assert len(texts) == 2
    full, selective = (Presentation.from_text(t) for t in texts)
    assert full == cred.present()
    assert selective == cred.present(REVEAL)
    assert f"({len(texts[0])} characters, QR version {make_qr(texts[0]).version}" in DOC
    assert f"Text ({len(texts[1])} characters, QR version {make_qr(texts[1]).version})" in DOC
