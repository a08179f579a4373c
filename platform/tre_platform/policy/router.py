"""``GET /decisions/explain``: why may (or may not) a user use a project and its datasets.

The lead mounts :data:`router` under ``/api/v1``. It is built on first access, so the authentication
dependency (``tre_platform.api.deps.current_user``) is imported only then.
"""

# No `from __future__ import annotations`: the route's Annotated[..., Depends(local)] must be evaluated
# where the local dependencies are in scope.

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy.orm import Session

from tre_platform.api.users.models import User
from tre_platform.errors import Unauthenticated
from tre_platform.policy import service


class DecisionOut(BaseModel):
    decision: str
    allowed: bool
    action: str
    principal: str
    resource: str
    resource_type: str
    resource_id: str
    reasons: list[str]
    policy_ids: list[str]
    bundle_hash: str
    evaluated_at: str
    today: str | None
    agreement: str | None


class ExplainOut(BaseModel):
    user: str
    project: str
    decisions: list[DecisionOut]


def _authentication_missing() -> User:
    raise Unauthenticated("authentication is not configured on this server")


def _own_session() -> Iterator[Session]:
    from tre_platform.db.session import make_session_factory

    with make_session_factory()() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _dependencies() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(current user, database session) from ``tre_platform.api.deps``, with fallbacks while it grows."""
    try:
        from tre_platform.api import deps
    except ImportError:
        return _authentication_missing, _own_session
    current_user = getattr(deps, "current_user", None)
    get_auth = getattr(deps, "get_auth", None)
    if current_user is None and get_auth is not None:

        def current_user(auth: Annotated[Any, Depends(get_auth)]) -> User:
            user: User = auth.user
            return user

    return current_user or _authentication_missing, getattr(deps, "get_session", None) or _own_session


def build_router(
    current_user: Callable[..., Any] | None = None, get_session: Callable[..., Any] | None = None
) -> APIRouter:
    """The explain router; the dependencies default to those of ``tre_platform.api.deps``."""
    default_user, default_session = (
        _dependencies() if current_user is None or get_session is None else (None, None)
    )
    user_dependency = current_user or default_user
    session_dependency = get_session or default_session
    assert user_dependency is not None and session_dependency is not None
    router = APIRouter(tags=["policy"])

    @router.get("/decisions/explain", response_model=ExplainOut)
    def explain_decisions(
        caller: Annotated[User, Depends(user_dependency)],
        session: Annotated[Session, Depends(session_dependency, scope="function")],
        project: Annotated[str, Query(max_length=200, description="project code or id")],
        user: Annotated[
            str | None, Query(max_length=200, description="username or id; default: yourself")
        ] = None,
        dataset: Annotated[str | None, Query(max_length=200, description="dataset name or id")] = None,
        action: Annotated[
            str | None, Query(max_length=64, description=f"one of {', '.join(service.EXPLAINABLE)}")
        ] = None,
    ) -> ExplainOut:
        """The policy decisions for a user in a project, with the reasons (admins, or the user concerned).

        To anyone but an admin, a project they are not in and one that does not exist look the same.
        """
        subject, target_project, target_dataset = service.resolve_for(
            session, session.merge(caller), project=project, user=user, dataset=dataset
        )
        decisions = service.explain(session, subject, target_project, dataset=target_dataset, action=action)
        return ExplainOut(
            user=subject.username,
            project=target_project.code,
            decisions=[DecisionOut.model_validate(d.to_dict()) for d in decisions],
        )

    return router


def __getattr__(name: str) -> APIRouter:
    # `from tre_platform.policy.router import router` builds the router then, not at import time.
    if name == "router":
        built = build_router()
        globals()["router"] = built
        return built
    raise AttributeError(name)
