"""The trust policy a verifier judges by, followed forward from its nodes.

A :class:`PolicyFollower` keeps every policy version it has adopted in a directory
(``<N>.note``, N zero-padded to eight digits; the first is the pinned one), walks that
chain from the pinned version when it opens, and on :meth:`PolicyFollower.check` asks
each source for its newest version. A newer chain is walked with
:class:`~ledger.trust.trust.TrustedPolicy` from the current version (a threshold of the
old and of the new governance keys at every step, no rollback, no gap, the newest not
expired, all or nothing), written to the directory, and only then made current. The
documents are signed, so any source will do; a source that offers an older version, a
badly signed or expired one, or does not answer changes nothing: the refusal is logged,
counted and kept for the status page.

Reading :attr:`PolicyFollower.policy` is one attribute read: a verification in flight
keeps the policy it started with.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from ledger.clock import CLOCK_SKEW
from ledger.errors import FileError, LedgerError, PolicyError
from ledger.files import read_capped, write_file
from ledger.replica.fetch import DirectoryFetcher, Fetcher, HttpFetcher, NotFoundError
from ledger.trust.policy import Policy, format_time
from ledger.trust.policy_doc import MAX_DOCUMENT_SIZE, PolicyDocument, parse_document
from ledger.trust.trust import MAX_CHAIN, TrustedPolicy, verify_next, verify_pinned

__all__ = ["PolicyCheck", "PolicyFollower", "Refusal", "policy_sources"]

log = logging.getLogger("certledger.verifier.policy")

_DOC = re.compile(r"([0-9]{8})\.note")


def policy_sources(nodes: Sequence[str], *, client: httpx.Client | None = None) -> list[Fetcher]:
    """Where to ask for policy versions: each node's ``policy/latest`` and ``policy/<N>``
    (an entry that is not an http(s) URL is a directory with the same layout; a static
    tile copy without a ``policy/latest`` file holds no policy and is left out, rather
    than reported as unreachable at every check)."""
    shared = client if client is not None else httpx.Client(timeout=5.0)
    out: list[Fetcher] = []
    for n in nodes:
        if n.startswith(("http://", "https://")):
            out.append(HttpFetcher(base_url=n, client=shared))
        elif (Path(n) / "policy" / "latest").is_file():
            out.append(DirectoryFetcher(root=n))
    return out


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a source's policy versions were not adopted. ``rule`` is the
    :class:`~ledger.errors.PolicyError` rule, or ``unreachable`` / ``malformed``."""

    at: int
    source: str
    rule: str
    message: str

    def to_json(self) -> dict[str, object]:
        return {"at": self.at, "source": self.source, "rule": self.rule, "message": self.message}


@dataclass(frozen=True, kw_only=True)
class PolicyCheck:
    """What one :meth:`PolicyFollower.check` did."""

    at: int
    before: int
    after: int
    refused: tuple[Refusal, ...]

    @property
    def adopted(self) -> bool:
        """True when a newer version became current."""
        return self.after != self.before


def _file(version: int) -> str:
    return f"{version:08d}.note"


class PolicyFollower:
    """The current policy version, its stored chain and the record of the last checks.

    Opening walks the chain stored in ``directory`` from its first (pinned) version;
    with none stored, ``pinned`` (the bytes of a signed document) is stored as the
    first. A pinned document that is neither in the stored chain nor its next version
    (installed by hand) is refused (FileError): the directory belongs to another pin.
    An expired newest version is kept (a newer one may still be fetched); verdicts under
    it are STALE. Thread-safe.
    """

    def __init__(
        self,
        *,
        directory: Path,
        pinned: bytes,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._dir = directory
        self._clock = clock
        self._check_lock = threading.Lock()
        self._lock = threading.Lock()
        self._doc = self._open(pinned)
        self.policy: Policy = self._doc.policy
        self.last_check: int | None = None
        self.last_adopted: int | None = None
        #: The most telling refusal so far (an offered version refused, before a node that
        #: did not answer), and every refusal of the last check.
        self.last_refusal: Refusal | None = None
        self.last_refusals: tuple[Refusal, ...] = ()
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._checks = Counter(
            "certledger_verifier_policy_checks", "Looks for newer trust-policy versions.", registry=r
        )
        self._adopted = Counter(
            "certledger_verifier_policy_adopted", "Trust-policy versions adopted from nodes.", registry=r
        )
        self._refused = Counter(
            "certledger_verifier_policy_refused",
            "Policy versions offered by a source and refused, or sources that did not answer, by rule.",
            ["rule"],
            registry=r,
        )
        Gauge(
            "certledger_verifier_policy_version", "The trust-policy version in use.", registry=r
        ).set_function(lambda: self.policy.version)
        Gauge(
            "certledger_verifier_policy_days_left",
            "Days until the trust-policy version in use expires (negative: expired).",
            registry=r,
        ).set_function(lambda: (self.policy.expires - self._clock()) / 86400)

    # ------------------------------------------------------------------ stored chain

    def _open(self, pinned: bytes) -> PolicyDocument:
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            names = sorted(p.name for p in self._dir.iterdir() if _DOC.fullmatch(p.name))
        except OSError as e:
            raise FileError(f"{self._dir}: cannot list the policy versions: {e.strerror}") from None
        if not names:
            doc = verify_pinned(pinned)
            write_file(
                self._dir / _file(doc.policy.version),
                pinned,
                mode=0o644,
                overwrite=True,
                what="policy document",
            )
            return doc
        docs = [read_capped(self._dir / n, limit=MAX_DOCUMENT_SIZE, what="policy document") for n in names]
        doc = verify_pinned(docs[0])
        now = int(self._clock())
        for name, data in zip(names[1:], docs[1:], strict=True):
            try:
                doc = verify_next(doc.policy, data)
                doc.policy.check_issued(now, skew=CLOCK_SKEW)
            except PolicyError as e:
                raise PolicyError(f"{self._dir / name}: {e}", rule=e.rule) from None
            except LedgerError as e:
                raise type(e)(f"{self._dir / name}: {e}") from None
        if pinned in docs:
            return doc
        # a newer version pinned by hand: taken only as the next version of the stored chain
        try:
            nxt = verify_next(doc.policy, pinned)
            nxt.policy.check_issued(now, skew=CLOCK_SKEW)
        except LedgerError as e:
            raise FileError(
                f"{self._dir}: the pinned document is not in the stored policy chain (versions "
                f"{names[0][:-5].lstrip('0')} to {doc.policy.version}) and cannot follow it ({e}); "
                "these versions were adopted from another pin (move the directory away to start afresh)"
            ) from None
        write_file(
            self._dir / _file(nxt.policy.version), pinned, mode=0o644, overwrite=True, what="policy document"
        )
        return nxt

    @property
    def document(self) -> bytes:
        """The exact signed document of the current version."""
        return self._doc.data

    def versions(self) -> list[int]:
        """The versions stored, oldest first."""
        return sorted(int(m.group(1)) for p in self._dir.iterdir() if (m := _DOC.fullmatch(p.name)))

    # ------------------------------------------------------------------ following

    def check(self, sources: Sequence[Fetcher]) -> PolicyCheck:
        """Ask every source for newer versions and adopt the longest chain that verifies.

        Never raises: each refusal (including ``storage``, a version that verified but
        could not be written, when the current one stays) is logged, counted (metric
        ``certledger_verifier_policy_refused{rule}``) and kept in :attr:`last_refusal`.
        """
        with self._check_lock:
            now = int(self._clock())
            before = self.policy.version
            refused: list[Refusal] = []
            self._checks.inc()
            for src in sources:
                why = self._from(src, now)
                if why is not None:
                    refused.append(why)
                    self._refused.labels(rule=why.rule).inc()
                    log.warning(
                        "policy version refused",
                        extra={"source": why.source, "rule": why.rule, "error": why.message},
                    )
            current = self.policy
            if not refused and current.is_expired(now):
                refused.append(
                    Refusal(
                        at=now,
                        source="",
                        rule="expired",
                        message=f"version {current.version} expired at {format_time(current.expires)} "
                        "and no source offers a newer one",
                    )
                )
                self._refused.labels(rule="expired").inc()
                log.error("trust policy expired", extra={"version": current.version})
            with self._lock:
                self.last_check = now
                self.last_refusals = tuple(refused)
                if refused:  # an offered version refused says more than a node that did not answer
                    self.last_refusal = next((r for r in refused if r.rule != "unreachable"), refused[-1])
            return PolicyCheck(at=now, before=before, after=self.policy.version, refused=tuple(refused))

    def _from(self, src: Fetcher, now: int) -> Refusal | None:
        """Take the versions ``src`` offers past the current one; the refusal, if any."""

        def refusal(rule: str, message: str) -> Refusal:
            return Refusal(at=now, source=src.name, rule=rule, message=message)

        current = self._doc
        n = current.policy.version
        try:
            latest = src.get("policy/latest", max_size=MAX_DOCUMENT_SIZE)
            offered = parse_document(latest).policy.version
            if offered == n and latest == current.data:
                return None
            if offered == n:
                return refusal(
                    "split-view",
                    f"{src.name} serves a version {n} that differs from the one trusted here",
                )
            chain: list[bytes] = []
            names: list[str] = []
            last = min(offered, n + MAX_CHAIN) if offered > n else offered
            for v in range(n + 1, last):
                chain.append(src.get(f"policy/{v}", max_size=MAX_DOCUMENT_SIZE))
                names.append(f"version {v} from {src.name}")
            if last == offered:
                chain.append(latest)
            else:
                chain.append(src.get(f"policy/{last}", max_size=MAX_DOCUMENT_SIZE))
            names.append(f"version {last} from {src.name}")
            trusted = TrustedPolicy(current.data)
            policy = trusted.walk(chain, now=now, names=names)
        except PolicyError as e:
            return refusal(e.rule or "policy", str(e))
        except NotFoundError as e:
            return refusal("unreachable", f"no policy chain there: {e}")
        except FileError as e:
            return refusal("unreachable", str(e))
        except LedgerError as e:
            return refusal("malformed", str(e))
        try:
            for i, data in enumerate(chain):
                self._store(n + 1 + i, data)
        except FileError as e:  # the versions stored so far verified: a restart walks them
            log.error("cannot store an adopted policy version", extra={"error": str(e)})
            return refusal("storage", f"version {policy.version} verified but cannot be stored: {e}")
        with self._lock:
            self._doc = parse_document(trusted.document)
            self.policy = policy  # one reference swap: verifications in flight keep theirs
            self.last_adopted = now
        self._adopted.inc(len(chain))
        log.warning(
            "trust policy version adopted",
            extra={"version": policy.version, "previous": n, "source": src.name},
        )
        return None

    def _store(self, version: int, data: bytes) -> None:
        """Write one verified version, atomically (a temporary file renamed) and durably."""
        path = self._dir / _file(version)
        if path.exists() and read_capped(path, limit=MAX_DOCUMENT_SIZE, what="policy document") == data:
            return
        write_file(path, data, mode=0o644, overwrite=True, what="policy document")
