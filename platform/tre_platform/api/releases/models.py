"""Release requests and their files, reviews and released tables; the privacy-budget ledger.

The request's life is a state machine held as data (:data:`VALID_TRANSITIONS`), like projects':

    draft --submit--> submitted --check--> in_review --approve x2--> approved --release--> released
                                              |--reject--> rejected
                                              '--return--> returned --submit--> submitted ...
                                                                    '--revise--> draft

``submitted`` is the short state in which the server re-runs every automated check; the system moves the
request on to ``in_review`` when the findings are stored. A request needs :data:`REQUIRED_APPROVALS`
approvals from different output checkers in one review round to become ``approved``.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tre_platform.api.projects.models import Project
from tre_platform.api.users.models import Role, User
from tre_platform.db.base import Base, new_id, utcnow


class ReleaseState(enum.StrEnum):
    draft = "draft"
    submitted = "submitted"
    in_review = "in_review"
    approved = "approved"
    rejected = "rejected"
    returned = "returned"
    released = "released"


class ReleaseAction(enum.StrEnum):
    submit = "submit"
    check = "check"
    approve = "approve"
    reject = "reject"
    return_ = "return"
    revise = "revise"
    release = "release"


#: (from state, action) -> (to state, who may act). "requester" is the researcher who made the request;
#: "system" is the server finishing its checks. ``approve`` reaches ``approved`` only with the
#: REQUIRED_APPROVALS-th approval; before that the request stays in review (see service.review).
VALID_TRANSITIONS: dict[tuple[ReleaseState, ReleaseAction], tuple[ReleaseState, str]] = {
    (ReleaseState.draft, ReleaseAction.submit): (ReleaseState.submitted, "requester"),
    (ReleaseState.returned, ReleaseAction.submit): (ReleaseState.submitted, "requester"),
    (ReleaseState.returned, ReleaseAction.revise): (ReleaseState.draft, "requester"),
    (ReleaseState.submitted, ReleaseAction.check): (ReleaseState.in_review, "system"),
    (ReleaseState.in_review, ReleaseAction.approve): (ReleaseState.approved, Role.output_checker.value),
    (ReleaseState.in_review, ReleaseAction.reject): (ReleaseState.rejected, Role.output_checker.value),
    (ReleaseState.in_review, ReleaseAction.return_): (ReleaseState.returned, Role.output_checker.value),
    (ReleaseState.approved, ReleaseAction.release): (ReleaseState.released, "requester"),
}

#: Who is expected to act next in each state (a test checks every state has an entry).
STATE_OWNER: dict[ReleaseState, str] = {
    ReleaseState.draft: "requester",
    ReleaseState.submitted: "system",
    ReleaseState.in_review: Role.output_checker.value,
    ReleaseState.returned: "requester",
    ReleaseState.approved: "requester",
    ReleaseState.rejected: "nobody",
    ReleaseState.released: "nobody",
}

TERMINAL_STATES = frozenset({ReleaseState.rejected, ReleaseState.released})
#: States in which files may be added, replaced or removed.
EDITABLE_STATES = frozenset({ReleaseState.draft})
#: Independent approvals (different output checkers, none of them the requester) a release needs.
REQUIRED_APPROVALS = 2


class FileKind(enum.StrEnum):
    table = "table"
    figure = "figure"
    regression = "regression"
    text = "text"
    #: A differentially private result the server computed and stored (``DPQueryResult``), by reference.
    dp = "dp"


class ReviewDecision(enum.StrEnum):
    approve = "approve"
    reject = "reject"
    return_ = "return"


class ReleaseRequest(Base):
    __tablename__ = "release_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    requester_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(300))
    justification: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[ReleaseState] = mapped_column(
        Enum(ReleaseState, native_enum=False, length=20), default=ReleaseState.draft
    )
    #: Review round: incremented at every submission; reviews of earlier rounds no longer count.
    round: Mapped[int] = mapped_column(Integer, default=0)
    #: The disclosure-control rules the server applied at the last submission.
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Worst status over the files at the last submission: pass | review | fail.
    check_status: Mapped[str | None] = mapped_column(String(10), default=None)
    bundle_path: Mapped[str | None] = mapped_column(Text, default=None)
    bundle_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    released_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    project: Mapped[Project] = relationship(lazy="joined")
    requester: Mapped[User] = relationship(lazy="joined")
    files: Mapped[list[ReleaseFile]] = relationship(
        back_populates="request", cascade="all, delete-orphan", lazy="selectin", order_by="ReleaseFile.name"
    )
    reviews: Mapped[list[ReleaseReview]] = relationship(
        back_populates="request",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="ReleaseReview.at",
    )

    @property
    def current_reviews(self) -> list[ReleaseReview]:
        """Reviews of the current round (a resubmission starts a new round)."""
        return [r for r in self.reviews if r.round == self.round]

    @property
    def checker_ids(self) -> frozenset[str]:
        """Output checkers who reviewed the current round (the policy engine's ``checkers``)."""
        return frozenset(r.checker_id for r in self.current_reviews)

    @property
    def approvals(self) -> list[ReleaseReview]:
        return [r for r in self.current_reviews if r.decision is ReviewDecision.approve]


class ReleaseFile(Base):
    """One output of a request. Its bytes live in the data directory under ``releases/<request id>/``,
    content-addressed by SHA-256; tables and regressions also carry the data and the declared computation
    the server re-runs its checks on (that data is evidence for the checkers and is never released)."""

    __tablename__ = "release_files"
    __table_args__ = (UniqueConstraint("request_id", "name", name="uq_release_files_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("release_requests.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[FileKind] = mapped_column(Enum(FileKind, native_enum=False, length=20))
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    #: The declared computation (tables: index, columns, values, aggfunc, dataset/view, filters).
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_name: Mapped[str | None] = mapped_column(String(200), default=None)
    data_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    data_size: Mapped[int | None] = mapped_column(Integer, default=None)
    #: What the researcher's own pre-check said (kept for comparison; never trusted).
    client_check: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The server's findings and disclosure-control record from the last submission.
    server_check: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str | None] = mapped_column(String(10), default=None)
    #: The researcher's request for an exception to a failed finding: ``{justification, requested_at,
    #: round}``; empty when none. Granted only by the two approvals of the round it was submitted in.
    exception: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    request: Mapped[ReleaseRequest] = relationship(back_populates="files")


class ReleaseReview(Base):
    """One output checker's decision on one round of a request."""

    __tablename__ = "release_reviews"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("release_requests.id", ondelete="CASCADE"))
    checker_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    round: Mapped[int] = mapped_column(Integer)
    decision: Mapped[ReviewDecision] = mapped_column(
        # Store the values ("return"), not the Python names ("return_").
        Enum(ReviewDecision, native_enum=False, length=10, values_callable=lambda e: [m.value for m in e])
    )
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    request: Mapped[ReleaseRequest] = relationship(back_populates="reviews")
    checker: Mapped[User] = relationship(lazy="joined")


class ReleasedTable(Base):
    """Every table that left the TRE: the ledger the differencing check compares new tables with.

    ``record`` is :meth:`tre_lib.disclosure.differencing.ReleasedTable.as_dict` (published cells only,
    suppressed ones null, with the table's dimensions and the subpopulation its filters kept).
    """

    __tablename__ = "released_tables"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    #: The population the table counts (a dataset id, or several joined with '+').
    dataset_key: Mapped[str] = mapped_column(String(200), index=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("release_requests.id"), default=None)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("release_files.id"), default=None)
    record: Mapped[dict[str, Any]] = mapped_column(default=dict)
    released_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PrivacyBudgetHead(Base):
    """One row per budget scope: the row a debit locks (``SELECT ... FOR UPDATE``) before it reads."""

    __tablename__ = "privacy_budget_heads"
    __table_args__ = (UniqueConstraint("scope_kind", "scope_id", name="uq_privacy_budget_heads_scope"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[str] = mapped_column(String(100))
    charges: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PrivacyLedgerEntry(Base):
    """One debit of (ε, δ) from one scope. Entries are only ever added; the sum is what was spent."""

    __tablename__ = "privacy_ledger_entries"
    __table_args__ = (Index("ix_privacy_ledger_entries_scope", "scope_kind", "scope_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[str] = mapped_column(String(100))
    #: The project and dataset of the scope, for listing (no foreign keys: a scope is any pair of names).
    project_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    dataset_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    description: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(64))
    #: Shared by the entries of one multi-scope charge.
    charge_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DPQueryResult(Base):
    """A differentially private answer the server computed on a project view and charged to its budget.

    Stored in the same transaction as the budget debit; a release request attaches it by reference (a
    ``dp`` output), so a released DP figure is always this stored value, never a notebook's.
    """

    __tablename__ = "dp_query_results"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    requester_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    view: Mapped[str] = mapped_column(String(200))
    dataset_id: Mapped[str] = mapped_column(String(32))
    #: The query as asked (statistic, column, bounds, by, ...), validated.
    query: Mapped[dict[str, Any]] = mapped_column(default=dict)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    #: The noisy result, its accuracy and mechanism (JSON: numbers, or rows for grouped results).
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    charge_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
