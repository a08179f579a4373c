"""Who is acting: a signed-in user, or the operator / system (CLI on the host, scheduled checks)."""

from __future__ import annotations

from dataclasses import dataclass

from tre_platform.api.users.models import Role, User


@dataclass(frozen=True)
class Actor:
    """The principal behind a service call. ``user`` is None for the system/operator."""

    user: User | None
    label: str

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(user=None, label=label)

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
        """The system actor holds every role (it is the operator on the host)."""
        if self.user is None:
            return True
        return self.user.has_role(role, organisation_id)

    @property
    def is_admin(self) -> bool:
        return self.has_role(Role.admin)
