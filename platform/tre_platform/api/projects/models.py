"""Research projects, their members, requested data and the approval state machine."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Date, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tre_platform.api.orgs.models import Organisation
from tre_platform.api.users.models import Role, User
from tre_platform.db.base import Base, new_id, utcnow


class PurposeCategory(enum.StrEnum):
    """Public-good purposes (after the UK Statistics Authority's research code of practice)."""

    policy_evidence = "policy_evidence"  # evidence base for public policy decision-making
    service_delivery = "service_delivery"  # evidence base for public service delivery
    economic_social_benefit = "economic_social_benefit"  # decisions that benefit the economy or society
    replicate_validate = "replicate_validate"  # replicate, validate or challenge existing research
    extend_understanding = "extend_understanding"  # extend understanding of social or economic trends
    improve_statistics = "improve_statistics"  # improve official statistics or research quality


class LegalGateway(enum.StrEnum):
    dea = "dea"  # Digital Economy Act 2017, Part 5 Chapter 5 (research)
    srsa = "srsa"  # Statistics and Registration Service Act 2007
    consent = "consent"  # informed consent of the data subjects
    section_251 = "section_251"  # NHS Act 2006 s.251 / COPI regulations
    public_task = "public_task"  # UK GDPR Art. 6(1)(e) with a statutory function


class ProjectState(enum.StrEnum):
    draft = "draft"
    submitted = "submitted"
    approved = "approved"
    rejected = "rejected"
    returned = "returned"
    active = "active"
    closed = "closed"
    expired = "expired"


class ProjectAction(enum.StrEnum):
    submit = "submit"
    approve = "approve"
    reject = "reject"
    return_ = "return"
    activate = "activate"
    close = "close"
    expire = "expire"
    revise = "revise"


#: The state machine as data: (from state, action) -> (to state, the role that may act).
#: "lead" means the project's lead or a member acting as applicant; "system" is the expiry check.
VALID_TRANSITIONS: dict[tuple[ProjectState, ProjectAction], tuple[ProjectState, str]] = {
    (ProjectState.draft, ProjectAction.submit): (ProjectState.submitted, "lead"),
    (ProjectState.returned, ProjectAction.revise): (ProjectState.draft, "lead"),
    (ProjectState.returned, ProjectAction.submit): (ProjectState.submitted, "lead"),
    (ProjectState.submitted, ProjectAction.approve): (ProjectState.approved, Role.approver.value),
    (ProjectState.submitted, ProjectAction.reject): (ProjectState.rejected, Role.approver.value),
    (ProjectState.submitted, ProjectAction.return_): (ProjectState.returned, Role.approver.value),
    (ProjectState.approved, ProjectAction.activate): (ProjectState.active, Role.admin.value),
    (ProjectState.approved, ProjectAction.close): (ProjectState.closed, Role.admin.value),
    (ProjectState.active, ProjectAction.close): (ProjectState.closed, Role.admin.value),
    (ProjectState.approved, ProjectAction.expire): (ProjectState.expired, "system"),
    (ProjectState.active, ProjectAction.expire): (ProjectState.expired, "system"),
}

#: Who is expected to act next in each state (shown on home pages; a test checks every state has one).
STATE_OWNER: dict[ProjectState, str] = {
    ProjectState.draft: "lead",
    ProjectState.submitted: Role.approver.value,
    ProjectState.returned: "lead",
    ProjectState.approved: Role.admin.value,
    ProjectState.active: Role.admin.value,
    ProjectState.rejected: "nobody",
    ProjectState.closed: "nobody",
    ProjectState.expired: "nobody",
}

TERMINAL_STATES = frozenset({ProjectState.rejected, ProjectState.closed, ProjectState.expired})
#: States in which the project's data may be used (subject to every other condition).
USABLE_STATES = frozenset({ProjectState.approved, ProjectState.active})


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    lay_summary: Mapped[str] = mapped_column(Text)
    purpose: Mapped[PurposeCategory] = mapped_column(Enum(PurposeCategory, native_enum=False, length=40))
    legal_gateway: Mapped[LegalGateway] = mapped_column(Enum(LegalGateway, native_enum=False, length=20))
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    lead_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    state: Mapped[ProjectState] = mapped_column(
        Enum(ProjectState, native_enum=False, length=20), default=ProjectState.draft
    )
    #: The highest sensitivity tier the project's setting and approval allow.
    max_tier: Mapped[int] = mapped_column(Integer, default=3)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    #: Bumped whenever the project's approved data changes, so views are re-keyed and rebuilt.
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    lead: Mapped[User] = relationship(foreign_keys=[lead_id], lazy="joined")
    members: Mapped[list[ProjectMember]] = relationship(
        back_populates="project", cascade="all, delete-orphan", lazy="selectin"
    )
    datasets: Mapped[list[ProjectDataset]] = relationship(
        back_populates="project", cascade="all, delete-orphan", lazy="selectin"
    )
    decisions: Mapped[list[ProjectDecision]] = relationship(
        back_populates="project",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="ProjectDecision.at",
    )

    def is_member(self, user_id: str) -> bool:
        return user_id == self.lead_id or any(m.user_id == user_id for m in self.members)

    def is_current(self, today: dt.date) -> bool:
        return self.state in USABLE_STATES and self.start_date <= today <= self.end_date


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "user_id", name="uq_project_members_pair"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")
    user: Mapped[User] = relationship(lazy="joined")


class ProjectDataset(Base):
    """A dataset the project requested, with the columns; approval approves exactly these."""

    __tablename__ = "project_datasets"
    __table_args__ = (UniqueConstraint("project_id", "dataset_id", name="uq_project_datasets_pair"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    columns: Mapped[list[str]] = mapped_column(default=list)
    justification: Mapped[str] = mapped_column(Text, default="")

    project: Mapped[Project] = relationship(back_populates="datasets")


class ProjectDecision(Base):
    """Every transition of a project, with who made it and why (approval records)."""

    __tablename__ = "project_decisions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    action: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="decisions")
