"""Format variants of CL1 full disclosures, measured side by side against HC1.

Run from the repository root (needs the ``bench`` extra for cbor2)::

    python bench/bench_qr_variants.py

For the reference licence and the held-out licences (see ``bench/bench_qr.py``), each
row builds the full disclosure's text another way and prints its length over the HC1
length built from the same content: the reference licence's ratio, and the minimum,
median, maximum and mean over the held-out licences. The first row is CL1 as
specified; the others are the alternatives that were measured, so the choices in
``docs/credential-format.md`` can be checked.

The last two rows take out of the dictionary the business-scope items, and then all
terms, that occur word for word in a held-out licence. The held-out licences and the
dictionary's vocabulary were written by the same people from the same knowledge of
licence wording, so the held-out figures may flatter the dictionary; the last row is a
pessimistic bound (it even drops the closing sentences every current licence
carries), and real licences should fall between the first row and the last.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_qr import ES256_KEY, hc1_encode  # noqa: E402

from ledger import canonical  # noqa: E402
from ledger.credential.base45 import b45encode  # noqa: E402
from ledger.credential.gbtext import from_gb18030  # noqa: E402
from ledger.credential.presentation import PREFIX, Presentation  # noqa: E402
from ledger.credential.qrdict import PRESET_DICTIONARY, STRUCTURE, TYPE_WORDS, VOCABULARY, build_dictionary  # noqa: E402
from tests.fixtures.consortium import (  # noqa: E402
    heldout_licences,
    issue_heldout,
    issue_reference,
    reference_licence,
)

Payload = Callable[[Presentation], bytes]


def gb18030_payload(p: Presentation) -> bytes:
    """The presentation's msgpack as specified: text in its GB 18030 form where it has one."""
    return p.to_bytes()


def utf8_payload(p: Presentation) -> bytes:
    """The same map with every text value as UTF-8."""
    m = p.to_map()
    m[13] = {k: from_gb18030(v) if type(v) is bytes else v for k, v in m[13].items()}
    return canonical.encode(m)


def deflate(
    data: bytes,
    dictionary: bytes | None,
    *,
    level: int = 9,
    wbits: int = -15,
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
) -> bytes:
    options: dict[str, Any] = {} if dictionary is None else {"zdict": dictionary}
    packer = zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy, **options)
    return packer.compress(data) + packer.flush()


def vocabulary_without_heldout_terms(*, items_only: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """:data:`VOCABULARY` less every term that occurs word for word in a held-out licence
    (with ``items_only``, only business-scope catalogue items are taken out)."""
    held = "\n".join(str(v) for lic in heldout_licences() for v in lic["claims"].values())
    return [
        (sep, terms if items_only and sep != "；" else tuple(t for t in terms if t not in held))
        for sep, terms in VOCABULARY
    ]


def variants() -> list[tuple[str, Payload, Callable[[bytes], bytes]]]:
    utf8_dictionary = (
        "".join(t + sep for sep, terms in VOCABULARY for t in terms).encode()
        + TYPE_WORDS.encode()
        + STRUCTURE
    )
    reversed_vocabulary = [(sep, terms[::-1]) for sep, terms in VOCABULARY[::-1]]
    no_divisions = VOCABULARY[1:]
    return [
        (
            "CL1: GB 18030 text, GB 18030 dictionary, raw deflate 9",
            gb18030_payload,
            lambda d: deflate(d, PRESET_DICTIONARY),
        ),
        ("UTF-8 text, the same dictionary in UTF-8", utf8_payload, lambda d: deflate(d, utf8_dictionary)),
        ("GB 18030 text, no dictionary", gb18030_payload, lambda d: deflate(d, None)),
        ("UTF-8 text, no dictionary", utf8_payload, lambda d: deflate(d, None)),
        (
            "dictionary with the most frequent terms first",
            gb18030_payload,
            lambda d: deflate(d, build_dictionary(reversed_vocabulary)),
        ),
        (
            "dictionary without the structure bytes",
            gb18030_payload,
            lambda d: deflate(d, build_dictionary(structure=b"")),
        ),
        (
            "dictionary without the type-code words",
            gb18030_payload,
            lambda d: deflate(d, build_dictionary(type_words="")),
        ),
        (
            "dictionary without the divisions",
            gb18030_payload,
            lambda d: deflate(d, build_dictionary(no_divisions)),
        ),
        (
            "zlib stream (header and Adler-32) instead of raw",
            gb18030_payload,
            lambda d: deflate(d, PRESET_DICTIONARY, wbits=15),
        ),
        ("deflate level 6", gb18030_payload, lambda d: deflate(d, PRESET_DICTIONARY, level=6)),
        (
            "deflate strategy Z_FILTERED",
            gb18030_payload,
            lambda d: deflate(d, PRESET_DICTIONARY, strategy=zlib.Z_FILTERED),
        ),
        (
            "deflate strategy Z_FIXED (fixed Huffman codes only)",
            gb18030_payload,
            lambda d: deflate(d, PRESET_DICTIONARY, strategy=zlib.Z_FIXED),
        ),
        (
            "dictionary less the scope items found in held-out licences",
            gb18030_payload,
            lambda d: deflate(d, build_dictionary(vocabulary_without_heldout_terms(items_only=True))),
        ),
        (
            "bound: dictionary less all terms found in held-out licences",
            gb18030_payload,
            lambda d: deflate(d, build_dictionary(vocabulary_without_heldout_terms())),
        ),
    ]


def cases() -> list[tuple[Presentation, int]]:
    """(full disclosure, HC1 length) of the reference licence, then of each held-out one."""
    ref = reference_licence()
    credential = issue_reference(salt_secret=hashlib.sha256(b"bench salt secret").digest()[:16])
    out = [
        (
            credential.present(),
            len(
                hc1_encode(
                    ref["document"],
                    iss=ref["issuer"],
                    iat=credential.statement.time,
                    exp=ref["valid_until"],
                    key=ES256_KEY,
                )
            ),
        )
    ]
    for lic in heldout_licences():
        credential = issue_heldout(lic, salt_secret=hashlib.sha256(lic["licence_id"].encode()).digest()[:16])
        hc1 = hc1_encode(
            lic["document"],
            iss=lic["issuer"],
            iat=credential.statement.time,
            exp=lic["valid_until"],
            key=ES256_KEY,
        )
        out.append((credential.present(), len(hc1)))
    return out


def main() -> None:
    data = cases()
    total = sum(len(t) for _, t in VOCABULARY)
    found = total - sum(len(t) for _, t in vocabulary_without_heldout_terms())
    items = total - sum(len(t) for _, t in vocabulary_without_heldout_terms(items_only=True))
    print(f"reference licence and {len(data) - 1} held-out licences; full disclosure length / HC1 length")
    print(
        f"({found} of the dictionary's {total} terms occur word for word in a held-out licence, "
        f"{items} of them business-scope items)"
    )
    print()
    print(f"{'variant':60} {'ref':>6} {'min':>6} {'median':>6} {'max':>6} {'mean':>6}")
    for label, payload, compress in variants():
        ratios = [(len(PREFIX) + len(b45encode(compress(payload(p))))) / hc1 for p, hc1 in data]
        held = ratios[1:]
        print(
            f"{label:60} {ratios[0]:6.3f} {min(held):6.3f} {statistics.median(held):6.3f} "
            f"{max(held):6.3f} {statistics.mean(held):6.3f}"
        )
    full_text = data[0][0].to_text()
    assert len(full_text) == len(PREFIX) + len(b45encode(deflate(data[0][0].to_bytes(), PRESET_DICTIONARY)))


if __name__ == "__main__":
    main()
