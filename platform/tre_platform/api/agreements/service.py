"""Data-sharing agreements: granted, edited (before they start) and revoked by the owner's data owners.

An agreement is visible to administrators and the owner organisation's data owners only; to anyone else
it does not exist (404), because who shares what with whom is itself sensitive.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements.models import AgreementDataset, AgreementRecipient, DataSharingAgreement
from tre_platform.api.agreements.schemas import AgreementCreate, AgreementRevoke, AgreementUpdate
from tre_platform.api.common import audit, can_manage_org_data, check_user
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.orgs.models import Organisation
from tre_platform.api.users.models import Role
from tre_platform.clock import clock
from tre_platform.enforcement import access_changed
from tre_platform.errors import Conflict, Forbidden, InvalidInput, NotFound


def status(agreement: DataSharingAgreement) -> str:
    """pending | active | expired | revoked, today."""
    return agreement.status(clock.today())


def _visible_clause(actor: Actor) -> ColumnElement[bool]:
    if actor.is_admin:
        return true()
    if actor.user is None:
        return false()
    orgs = [r.organisation_id for r in actor.user.roles if r.role is Role.data_owner and r.organisation_id]
    return DataSharingAgreement.owner_org_id.in_(orgs) if orgs else false()


def get_agreement(session: Session, actor: Actor, agreement_id: str) -> DataSharingAgreement:
    """One agreement the actor manages, else NotFound."""
    check_user(actor)
    agreement = session.scalar(
        select(DataSharingAgreement).where(DataSharingAgreement.id == agreement_id, _visible_clause(actor))
    )
    if agreement is None:
        raise NotFound(f"no agreement with id {agreement_id!r} that you can see")
    return agreement


def list_agreements(
    session: Session, actor: Actor, *, owner_org_id: str | None = None, limit: int = 100, offset: int = 0
) -> list[DataSharingAgreement]:
    """Agreements the actor manages, by reference."""
    check_user(actor)
    query = select(DataSharingAgreement).where(_visible_clause(actor))
    if owner_org_id is not None:
        query = query.where(DataSharingAgreement.owner_org_id == owner_org_id)
    return list(session.scalars(query.order_by(DataSharingAgreement.reference).limit(limit).offset(offset)))


def _check_datasets(session: Session, owner_org_id: str, dataset_ids: list[str]) -> list[str]:
    ids = list(dict.fromkeys(dataset_ids))
    for dataset_id in ids:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None or dataset.owner_org_id != owner_org_id:
            raise InvalidInput(
                f"dataset {dataset_id!r} does not belong to the agreement's owner organisation; "
                "an agreement can only share its owner's datasets",
                field="dataset_ids",
            )
    return ids


def _check_recipients(session: Session, org_ids: list[str]) -> list[str]:
    ids = list(dict.fromkeys(org_ids))
    for org_id in ids:
        if session.get(Organisation, org_id) is None:
            raise InvalidInput(f"no organisation with id {org_id!r} to share with", field="recipient_org_ids")
    return ids


def _new_reference(session: Session) -> str:
    while True:
        reference = f"DSA-{clock.today().year}-{secrets.token_hex(3).upper()}"
        if (
            session.scalar(select(DataSharingAgreement.id).where(DataSharingAgreement.reference == reference))
            is None
        ):
            return reference


def grant_agreement(session: Session, actor: Actor, data: AgreementCreate) -> DataSharingAgreement:
    """Grant an agreement for an organisation the actor manages (its data owners, or an administrator)."""
    check_user(actor)
    org = session.get(Organisation, data.owner_org_id)
    if org is None:
        raise InvalidInput(f"no organisation with id {data.owner_org_id!r}", field="owner_org_id")
    if not can_manage_org_data(actor, org.id):
        raise Forbidden(f"only a data owner of {org.slug!r} or an administrator may grant its agreements")
    if not org.owns_data:
        raise InvalidInput(
            f"{org.slug!r} is a {org.kind.value} and owns no data to share", field="owner_org_id"
        )
    if data.valid_to < clock.today():
        raise InvalidInput("valid_to is in the past; an agreement must end today or later", field="valid_to")
    reference = data.reference or _new_reference(session)
    if session.scalar(select(DataSharingAgreement.id).where(DataSharingAgreement.reference == reference)):
        raise Conflict(f"an agreement with reference {reference!r} already exists", field="reference")
    agreement = DataSharingAgreement(
        reference=reference,
        title=data.title,
        owner_org_id=org.id,
        all_datasets=data.all_datasets,
        any_accredited=data.any_accredited,
        purposes=[p.value for p in data.purposes],
        legal_gateways=[g.value for g in data.legal_gateways],
        max_tier=data.max_tier,
        dc_profile=data.dc_profile,
        dp_epsilon=data.dp_epsilon,
        dp_delta=data.dp_delta,
        conditions=data.conditions,
        valid_from=data.valid_from,
        valid_to=data.valid_to,
        created_by_id=actor.user_id,
    )
    agreement.dataset_links = [
        AgreementDataset(dataset_id=d) for d in _check_datasets(session, org.id, data.dataset_ids)
    ]
    agreement.recipient_links = [
        AgreementRecipient(organisation_id=o) for o in _check_recipients(session, data.recipient_org_ids)
    ]
    session.add(agreement)
    session.flush()
    audit(
        session,
        actor,
        "agreement.grant",
        agreement,
        reference=reference,
        terms=data.model_dump(mode="json", exclude={"reference"}),
    )
    return agreement


def update_agreement(
    session: Session, actor: Actor, agreement_id: str, data: AgreementUpdate
) -> DataSharingAgreement:
    """Change an agreement that has not started yet; one in force must be revoked and granted anew."""
    agreement = get_agreement(session, actor, agreement_id)
    current = status(agreement)
    if current != "pending":
        raise Conflict(
            f"agreement {agreement.reference} is {current}: only an agreement that has not started can be "
            "edited; revoke it and grant a new one"
        )
    changes: dict[str, Any] = data.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    all_datasets = changes.get("all_datasets", agreement.all_datasets)
    dataset_ids = changes.get("dataset_ids", [] if changes.get("all_datasets") else agreement.dataset_ids)
    any_accredited = changes.get("any_accredited", agreement.any_accredited)
    recipients = changes.get(
        "recipient_org_ids", [] if changes.get("any_accredited") else agreement.recipient_ids
    )
    if all_datasets == bool(dataset_ids):
        raise InvalidInput(
            "give either all_datasets: true or a list of dataset_ids (exactly one)", field="dataset_ids"
        )
    if any_accredited == bool(recipients):
        raise InvalidInput(
            "give either any_accredited: true or a list of recipient_org_ids (exactly one)",
            field="recipient_org_ids",
        )
    valid_from = data.valid_from or agreement.valid_from
    valid_to = data.valid_to or agreement.valid_to
    if valid_to < valid_from:
        raise InvalidInput("valid_to must not be before valid_from", field="valid_to")
    if valid_from <= clock.today():
        raise InvalidInput(
            "an edited agreement must still start in the future; grant a new one instead", field="valid_from"
        )
    dataset_ids = _check_datasets(session, agreement.owner_org_id, dataset_ids)
    recipients = _check_recipients(session, recipients)
    for name in (
        "title",
        "purposes",
        "legal_gateways",
        "max_tier",
        "dc_profile",
        "dp_epsilon",
        "dp_delta",
        "conditions",
    ):
        if name in changes:
            setattr(agreement, name, changes[name])
    agreement.valid_from, agreement.valid_to = valid_from, valid_to
    agreement.all_datasets, agreement.any_accredited = all_datasets, any_accredited
    if set(dataset_ids) != set(agreement.dataset_ids):
        agreement.dataset_links = [AgreementDataset(dataset_id=d) for d in dataset_ids]
    if set(recipients) != set(agreement.recipient_ids):
        agreement.recipient_links = [AgreementRecipient(organisation_id=o) for o in recipients]
    session.flush()
    audit(session, actor, "agreement.update", agreement, changes=changes)
    return agreement


def revoke_agreement(
    session: Session, actor: Actor, agreement_id: str, data: AgreementRevoke
) -> DataSharingAgreement:
    """Revoke an agreement with a reason; access it supported ends at the next policy decision."""
    agreement = get_agreement(session, actor, agreement_id)
    if agreement.revoked_at is not None:
        raise Conflict(
            f"agreement {agreement.reference} was already revoked on {agreement.revoked_at:%Y-%m-%d}"
        )
    agreement.revoked_at = clock.now()
    agreement.revoked_by_id = actor.user_id
    agreement.revoked_reason = data.reason
    session.flush()
    audit(session, actor, "agreement.revoke", agreement, reason=data.reason)
    access_changed(session, actor)
    return agreement
