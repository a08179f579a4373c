"""``tre dataset search | lifecycle | archive | destroy | sweep``.

The lead mounts them with ``register_catalogue_commands(dataset_app)``. Like the rest of the CLI they act
as the operator unless ``--as USER`` names a user, whose permissions then apply.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from tre_platform.errors import NotFound, TreError
from tre_platform.pipelines.cli import AsUser, JsonFlag, _actor, _fail

console = Console(width=None if sys.stdout.isatty() else 160)
VersionOpt = Annotated[int, typer.Option("--version", "-v", min=1, help="version number")]


def _print_json(rows: list[BaseModel] | BaseModel) -> None:
    if isinstance(rows, list):
        sys.stdout.write("[" + ",".join(r.model_dump_json(indent=2) for r in rows) + "]\n")
    else:
        sys.stdout.write(rows.model_dump_json(indent=2) + "\n")


def _views(step: Any) -> str:
    return ", ".join(f"{v.project}/{v.view}" for v in step.views_removed) or "none"


def _run(as_json: bool, body: Any) -> None:
    from tre_platform.db.session import session_scope

    try:
        with session_scope() as session:
            body(session)
    except TreError as exc:
        raise _fail(exc, as_json) from None


def register_catalogue_commands(dataset_app: typer.Typer) -> None:
    """Add the catalogue search and the lifecycle commands to ``tre dataset``."""

    @dataset_app.command("search")
    def search_command(
        query: Annotated[str | None, typer.Argument(help="words in the name, title or description")] = None,
        owner: Annotated[str | None, typer.Option(help="owner organisation (slug, name or id)")] = None,
        topic: Annotated[str | None, typer.Option(help="topic tag")] = None,
        column: Annotated[str | None, typer.Option(help="column name or description")] = None,
        tier: Annotated[int | None, typer.Option(min=0, max=4, help="sensitivity tier")] = None,
        as_user: AsUser = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Search the data library: metadata only (accredited users)."""
        from tre_platform.api.datasets.catalogue import search_datasets

        def body(session: Any) -> None:
            found = search_datasets(
                session, _actor(session, as_user), query, owner=owner, topic=topic, column=column, tier=tier
            )
            if as_json:
                _print_json(list(found))
                return
            table = Table("name", "title", "owner", "tier", "topics", "columns", "versions", "agreements")
            for e in found:
                table.add_row(
                    e.name,
                    e.title,
                    e.owner.slug,
                    str(e.tier),
                    ", ".join(e.topics),
                    ", ".join(c.name for c in e.columns if not c.identifier),
                    ", ".join(f"v{v.version} ({v.state})" for v in e.versions),
                    ", ".join(a.reference for a in e.agreements),
                )
            console.print(table if found else "no dataset matches")

        _run(as_json, body)

    @dataset_app.command("revise")
    def revise_command(
        dataset: str,
        spec: Annotated[Path, typer.Argument(help='JSON file: {"schema": [columns...], "reason": "..."}')],
        as_user: AsUser = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Revise a dataset's schema as a new schema version (its published versions keep theirs).

        The columns are written as for `tre dataset register` (see its --help); the reason is recorded
        in the audit log.
        """
        import json

        from pydantic import ValidationError

        from tre_platform.api.datasets.models import Dataset
        from tre_platform.api.datasets.schemas import DatasetOut, SchemaRevision
        from tre_platform.api.datasets.service import revise_schema
        from tre_platform.errors import InvalidInput

        try:
            data = SchemaRevision.model_validate(json.loads(spec.read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError) as exc:
            raise _fail(InvalidInput(f"{spec}: {exc}"[:2000], field="schema"), as_json) from None

        def body(session: Any) -> None:
            found = session.scalar(select(Dataset).where(Dataset.name == dataset))
            if found is None:
                raise NotFound(f"no dataset named {dataset!r}")
            row = revise_schema(session, _actor(session, as_user), found.id, data)
            out = DatasetOut.model_validate(row)
            if as_json:
                _print_json(out)
                return
            console.print(f"{row.name}: schema version {row.schema_version} is now current")

        _run(as_json, body)

    @dataset_app.command("schemas")
    def schemas_command(dataset: str, as_user: AsUser = None, as_json: JsonFlag = False) -> None:
        """Every schema version of a dataset and the published versions ingested under each."""
        from tre_platform.api.datasets.models import Dataset
        from tre_platform.api.datasets.service import schema_versions

        def body(session: Any) -> None:
            found = session.scalar(select(Dataset).where(Dataset.name == dataset))
            if found is None:
                raise NotFound(f"no dataset named {dataset!r}")
            rows = schema_versions(session, _actor(session, as_user), found.id)
            if as_json:
                _print_json(list(rows))
                return
            table = Table("schema version", "created", "reason", "columns", "published versions")
            for r in rows:
                table.add_row(
                    str(r.version),
                    r.created_at.isoformat(),
                    r.reason,
                    ", ".join(c["name"] for c in r.schema_),
                    ", ".join(f"v{v}" for v in r.dataset_versions),
                )
            console.print(table)

        _run(as_json, body)

    @dataset_app.command("lifecycle")
    def lifecycle_command(dataset: str, as_user: AsUser = None, as_json: JsonFlag = False) -> None:
        """Each version's state and retention date (data owners of the owning organisation)."""
        from tre_platform.api.datasets.lifecycle import version_lifecycles

        def body(session: Any) -> None:
            rows = version_lifecycles(session, _actor(session, as_user), dataset)
            if as_json:
                _print_json(list(rows))
                return
            table = Table("version", "state", "retention until", "basis", "destroy after", "location")
            for r in rows:
                table.add_row(
                    str(r.version),
                    r.state,
                    r.retention_until.isoformat(),
                    r.retention_basis,
                    r.destroy_after.isoformat(),
                    r.location,
                )
            console.print(table)

        _run(as_json, body)

    @dataset_app.command("archive")
    def archive_command(
        dataset: str,
        version: VersionOpt,
        reason: Annotated[str, typer.Option(help="recorded with the event")] = "",
        as_user: AsUser = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Move a version to the archive zone; it leaves every project view."""
        from tre_platform.api.datasets.lifecycle import archive_version

        def body(session: Any) -> None:
            step = archive_version(session, _actor(session, as_user), dataset, version, reason=reason)
            if as_json:
                _print_json(step)
            else:
                console.print(
                    f"archived {step.dataset} v{step.version} to {step.moved_to}; "
                    f"views removed: {_views(step)}"
                )

        _run(as_json, body)

    @dataset_app.command("destroy")
    def destroy_command(
        dataset: str,
        version: VersionOpt,
        reason: Annotated[str, typer.Option(help="why; kept in the audit log")],
        as_user: AsUser = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Delete a version's files, reports, views and index links, for good."""
        from tre_platform.api.datasets.lifecycle import destroy_version

        def body(session: Any) -> None:
            step = destroy_version(session, _actor(session, as_user), dataset, version, reason=reason)
            if as_json:
                _print_json(step)
            else:
                console.print(
                    f"destroyed {step.dataset} v{step.version}: {step.files_removed} files "
                    f"({step.bytes_removed} bytes) in {', '.join(step.removed_paths) or 'nothing on disk'}; "
                    f"views removed: {_views(step)}; "
                    f"index entries removed: {step.index_entries_removed or 'none'}"
                )

        _run(as_json, body)

    @dataset_app.command("sweep")
    def sweep_command(as_user: AsUser = None, as_json: JsonFlag = False) -> None:
        """Archive or destroy every version past its retention date (run it from a scheduler)."""
        from tre_platform.api.datasets.lifecycle import sweep

        def body(session: Any) -> None:
            result = sweep(session, _actor(session, as_user))
            if as_json:
                _print_json(result)
                return
            console.print(f"checked {result.checked} versions")
            for step in result.steps:
                console.print(f"  {step.action} {step.dataset} v{step.version}: {step.reason}")
            for problem in result.problems:
                console.print(f"  [red]problem:[/] {problem}")
            if result.problems:
                raise typer.Exit(1)

        _run(as_json, body)
