"""Who is acting: a signed-in user, or the operator / system (CLI on the host, scheduled checks)."""

from __future__ import annotations

from dataclasses import dataclass

from tre_platform.api.users.models import Role, User

#: How the enforcement identity appears in the audit log and in policy decisions.
ENFORCER_LABEL = "tre-enforcer"


@dataclass(frozen=True)
class Actor:
    """The principal behind a service call. ``user`` is None for the system/operator."""

    user: User | None
    label: str
    #: The system's enforcement identity (:meth:`enforcer`): in the policies ``Role::"enforcer"``, which
    #: may only re-decide project views; it holds no other role.
    is_enforcer: bool = False

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(user=None, label=label)

    @classmethod
    def enforcer(cls) -> Actor:
        """The identity enforcement acts as after a change, whoever made the change.

        It may re-decide (keep or remove) project views and stop workspaces or revoke tokens the
        policies no longer allow; it cannot grant anything a decision would refuse.
        """
        return cls(user=None, label=ENFORCER_LABEL, is_enforcer=True)

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(user=user, label=user.username)

    @property
    def is_system(self) -> bool:
        return self.user is None

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user is not None else None

    def has_role(self, role: Role, organisation_id: str | None = None) -> bool:
        """The system actor holds every role (it is the operator on the host); the enforcer none."""
        if self.is_enforcer:
            return False
        if self.user is None:
            return True
        return self.user.has_role(role, organisation_id)

    @property
    def is_admin(self) -> bool:
        return self.has_role(Role.admin)
