"""Which trust-policy version to trust: TUF's root rules, as pure functions over bytes.

A verifier pins one policy document (usually version 1) and moves forward only along
a chain of documents that each satisfy these rules:

1. a pinned document is signed by a threshold of its *own* governance keys;
2. the next document names the same consortium (``consortium``: a version of a
   staging consortium that shares governance keys is not a version of this one) and
   is exactly version N+1 (``rollback`` for an older or equal version,
   ``skipped-version`` for a gap);
3. it is signed by a threshold of version N's governance keys (``old-threshold``)
   **and** by a threshold of its own (``own-threshold``);
4. a signature by a governance key that does not verify over the exact document
   bytes rejects the document (``bad-signature``); signatures by other keys are
   ignored; one key counts once, however many times it signs and under whichever
   names it is listed (keys are compared by public key);
5. the newest version must not be expired at ``now`` (``expired``: the freeze
   attack). A chain walk checks expiry only for the version it ends at, as TUF does;
   no version's issue time may lie ahead of ``now`` by more than the clock skew
   (``future-time``), so the one-year bound on expiry cannot be stretched;
6. one walk covers at most :data:`MAX_CHAIN` documents (``chain-too-long``); each
   document is size- and signature-capped by :mod:`ledger.trust.policy_doc`.

:class:`TrustedPolicy` holds the trusted version. :meth:`~TrustedPolicy.update` and
:meth:`~TrustedPolicy.walk` either succeed, or raise and leave it unchanged. Broken
rules raise :class:`~ledger.errors.PolicyError` (``rule`` names the rule, the message
says how far verification got); bad documents raise
:class:`~ledger.errors.MalformedError` or :class:`~ledger.errors.TooLargeError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.clock import CLOCK_SKEW
from ledger.errors import MalformedError, PolicyError, SignatureError
from ledger.keys import PublicKey, VerifierKey
from ledger.log import note
from ledger.trust.policy import Policy, format_time
from ledger.trust.policy import rule_error as _fail
from ledger.trust.policy_doc import PolicyDocument, parse_document

__all__ = [
    "MAX_CHAIN",
    "TrustedPolicy",
    "signed_by",
    "verify_chain",
    "verify_next",
    "verify_pinned",
]

#: Most documents one walk verifies.
MAX_CHAIN = 1000


def signed_by(doc: PolicyDocument, keys: Sequence[VerifierKey]) -> tuple[VerifierKey, ...]:
    """The distinct keys among ``keys`` whose signatures on ``doc`` verify.

    Signatures by other keys are ignored. PolicyError (``bad-signature``) if a
    signature by one of ``keys`` does not verify.
    """
    by_pair = {(k.name, k.key_id): k for k in keys}
    if not any((s.name, s.key_id) in by_pair for s in doc.signatures):
        return ()
    try:
        opened = note.open(
            doc.data, [note.Ed25519Verifier(key=k) for k in by_pair.values()], max_size=len(doc.data)
        )
    except SignatureError as e:
        raise _fail(
            "bad-signature",
            f"version {doc.policy.version}: {e}; the document was changed after it was signed, "
            "or the signature is damaged",
        ) from None
    distinct: dict[PublicKey, VerifierKey] = {}
    for sig in opened.verified:
        k = by_pair[(sig.name, sig.key_id)]
        distinct.setdefault(k.public_key, k)
    return tuple(distinct.values())


def _check_threshold(doc: PolicyDocument, signer: Policy, *, rule: str, whose: str) -> None:
    keys = signer.governance_keys
    got = signed_by(doc, keys)
    if len(got) >= signer.governance_threshold:
        return
    names = f" ({', '.join(k.name for k in got)})" if got else ""
    known = {(k.name, k.key_id) for k in keys}
    others = sorted({s.key for s in doc.signatures if (s.name, s.key_id) not in known})
    ignored = f"; not counted: signatures by {', '.join(others)}" if others else ""
    raise _fail(
        rule,
        f"version {doc.policy.version} is signed by {len(got)}/{len(keys)} of {whose} governance "
        f"keys{names}; threshold {signer.governance_threshold}{ignored}",
    )


def verify_pinned(data: bytes) -> PolicyDocument:
    """Parse a pinned document and check it is signed by a threshold of its own keys.

    Expiry is not checked here: an expired pinned version may still be walked forward.
    """
    doc = parse_document(data)
    _check_threshold(doc, doc.policy, rule="own-threshold", whose="its own")
    return doc


def verify_next(trusted: Policy, data: bytes) -> PolicyDocument:
    """Parse ``data`` and check it may follow ``trusted`` (rules 2 to 4; not expiry)."""
    doc = parse_document(data)
    n, v = trusted.version, doc.policy.version
    if doc.policy.consortium != trusted.consortium:
        raise _fail(
            "consortium",
            f"the document is version {v} of consortium {doc.policy.consortium!r}, "
            f"not of the trusted consortium {trusted.consortium!r}",
        )
    if v <= n:
        raise _fail("rollback", f"the document is version {v}, not newer than the trusted version {n}")
    if v != n + 1:
        raise _fail(
            "skipped-version",
            f"the document is version {v}, but only version {n + 1} can follow the trusted version {n}",
        )
    _check_threshold(doc, trusted, rule="old-threshold", whose=f"version {n}'s")
    _check_threshold(doc, doc.policy, rule="own-threshold", whose="its own")
    return doc


def _check_now(now: int) -> None:
    if type(now) is not int or now < 0:
        raise MalformedError(f"now must be Unix seconds, not {now!r}")


class TrustedPolicy:
    """The policy version a verifier trusts, moved forward only by the update rules."""

    __slots__ = ("_doc",)

    def __init__(self, pinned: bytes) -> None:
        """Trust ``pinned`` (the bytes of a signed policy document) after checking its
        own-threshold signatures; expiry is checked by :meth:`current` and updates."""
        self._doc = verify_pinned(pinned)

    @property
    def policy(self) -> Policy:
        """The trusted version's policy (possibly expired: see :meth:`current`)."""
        return self._doc.policy

    @property
    def version(self) -> int:
        """The trusted version number."""
        return self._doc.policy.version

    @property
    def document(self) -> bytes:
        """The exact bytes of the trusted version's signed document."""
        return self._doc.data

    @property
    def consortium(self) -> str:
        """The name of the consortium whose versions this verifier follows."""
        return self._doc.policy.consortium

    def current(self, *, now: int) -> Policy:
        """The trusted policy; PolicyError if it has expired at ``now`` (``expired``) or
        was issued later than ``now`` plus the clock skew (``future-time``)."""
        _check_now(now)
        self._doc.policy.check_issued(now)
        self._doc.policy.check_not_expired(now)
        return self._doc.policy

    def update(self, data: bytes, *, now: int) -> Policy:
        """Move to the next version, ``data``; it must not be expired at ``now``."""
        return self.walk([data], now=now)

    def walk(self, documents: Sequence[bytes], *, now: int, names: Sequence[str] | None = None) -> Policy:
        """Move along ``documents`` (versions N+1, N+2, … in order) to the last one.

        Every step must satisfy the update rules; only the last version must not be
        expired at ``now``, and none may be issued more than the clock skew after
        ``now``. On any failure nothing changes and the error says which document (by
        its entry in ``names``, e.g. file names, if given) broke which rule and how far
        the chain verified.
        """
        _check_now(now)
        if len(documents) > MAX_CHAIN:
            raise _fail(
                "chain-too-long",
                f"{len(documents)} documents in one update; at most {MAX_CHAIN} are walked at once",
            )
        if names is not None and len(names) != len(documents):
            raise MalformedError("walk: one name per document is needed")
        start = doc = self._doc
        for i, data in enumerate(documents):
            try:
                nxt = verify_next(doc.policy, data)
                nxt.policy.check_issued(now, skew=CLOCK_SKEW)
                doc = nxt
            except (PolicyError, MalformedError) as e:
                label = f"document {i + 1} of {len(documents)}"
                where = f" [{names[i]} ({label})" if names is not None else f" [{label}"
                if doc is not start:
                    where += (
                        f"; the chain verified from version {start.policy.version} to {doc.policy.version}"
                    )
                where += f"; still trusting version {start.policy.version}]"
                if isinstance(e, PolicyError):
                    raise PolicyError(f"{e}{where}", rule=e.rule) from None
                raise type(e)(f"{e}{where}") from None
        if doc is start:
            try:
                start.policy.check_issued(now)
            except PolicyError as e:
                raise PolicyError(f"{e} [the pinned version {start.policy.version}]", rule=e.rule) from None
        if doc.policy.is_expired(now):
            raise _fail(
                "expired",
                f"the newest version, {doc.policy.version}, expired at {format_time(doc.policy.expires)} "
                f"(now {format_time(now)}); still trusting version {start.policy.version}",
            )
        self._doc = doc
        return doc.policy


def verify_chain(pinned: bytes, documents: Sequence[bytes], *, now: int) -> Policy:
    """The newest policy reached from ``pinned`` along ``documents``, checked at ``now``."""
    trusted = TrustedPolicy(pinned)
    return trusted.walk(documents, now=now)
