"""Import every model so that ``Base.metadata`` is complete (Alembic and tests import this)."""

from tre_platform.api.agreements.models import AgreementDataset, AgreementRecipient, DataSharingAgreement
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.datasets.models import Dataset, DatasetVersion, DatasetVersionEvent
from tre_platform.api.orgs.models import Organisation
from tre_platform.api.packages.models import MirrorPackage, PackageAdvisory, PackageRequest
from tre_platform.api.projects.models import Project, ProjectDataset, ProjectDecision, ProjectMember
from tre_platform.api.releases.models import (
    PrivacyBudgetHead,
    PrivacyLedgerEntry,
    ReleasedTable,
    ReleaseFile,
    ReleaseRequest,
    ReleaseReview,
)
from tre_platform.api.users.models import (
    Accreditation,
    ApiToken,
    LoginAttempt,
    TrainingRecord,
    User,
    UserRole,
    WebSession,
)
from tre_platform.db.base import Base

__all__ = [
    "Accreditation",
    "AgreementDataset",
    "AgreementRecipient",
    "ApiToken",
    "AuditEvent",
    "Base",
    "DataSharingAgreement",
    "Dataset",
    "DatasetVersion",
    "DatasetVersionEvent",
    "LoginAttempt",
    "MirrorPackage",
    "Organisation",
    "PackageAdvisory",
    "PackageRequest",
    "PrivacyBudgetHead",
    "PrivacyLedgerEntry",
    "Project",
    "ProjectDataset",
    "ProjectDecision",
    "ProjectMember",
    "ReleaseFile",
    "ReleaseRequest",
    "ReleaseReview",
    "ReleasedTable",
    "TrainingRecord",
    "User",
    "UserRole",
    "WebSession",
]
