"""`tre view ...`: build and list project views. The lead mounts :data:`view_app` as ``tre view``."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tre_platform.errors import TreError

view_app = typer.Typer(
    help="Project views: build (policy-decided, re-keyed), list, and enforce.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(1)


@view_app.command("build")
def build_command(
    project: Annotated[str, typer.Option("--project", "-p", help="project code or id")],
    engine: Annotated[str, typer.Option(help="arrow (default) or spark")] = "arrow",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Build, refresh or remove a project's views as the policy engine decides (needs root)."""
    from tre_platform.actor import Actor
    from tre_platform.db.session import session_scope
    from tre_platform.views.builder import build_views

    if engine not in ("arrow", "spark"):
        raise _fail(f"unknown engine {engine!r}; use arrow or spark")
    try:
        with session_scope() as session:
            result = build_views(session, Actor.system(f"cli:{getpass.getuser()}"), project, engine=engine)  # type: ignore[arg-type]
    except TreError as exc:
        raise _fail(exc.message) from None
    if as_json:
        data = {
            "project": result.project,
            "views_dir": str(result.views_dir),
            "members_added": list(result.members_added),
            "members_removed": list(result.members_removed),
            "outcomes": [
                {
                    "dataset": o.dataset,
                    "action": o.action,
                    "version": o.source_version,
                    "rows": o.rows,
                    "columns": list(o.columns),
                    "reasons": list(o.reasons),
                }
                for o in result.outcomes
            ],
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table(
        "dataset", "action", "version", "rows", "columns", "why", title=f"views of {result.project}"
    )
    for o in result.outcomes:
        table.add_row(
            o.dataset,
            o.action,
            str(o.source_version or ""),
            str(o.rows or ""),
            ", ".join(o.columns),
            "; ".join(o.reasons),
        )
    console.print(table)
    console.print(f"in {result.views_dir}")


@view_app.command("list")
def list_command(
    project: Annotated[str | None, typer.Option("--project", "-p", help="only this project")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the published views with their source version, rows and columns."""
    from tre_platform.db.session import session_scope
    from tre_platform.views.builder import list_views

    try:
        with session_scope() as session:
            views = list_views(session, project)
    except TreError as exc:
        raise _fail(exc.message) from None
    if as_json:
        rows = [
            {
                "project": code,
                "dataset": m.dataset,
                "version": m.source_version,
                "rows": m.row_count,
                "columns": m.column_names,
                "built_at": m.built_at,
            }
            for code, m in views
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("project", "dataset", "version", "rows", "columns", "built")
    for code, m in views:
        table.add_row(
            code, m.dataset, str(m.source_version), str(m.row_count), ", ".join(m.column_names), m.built_at
        )
    console.print(table)


@view_app.command("enforce")
def enforce_command(
    project: Annotated[list[str] | None, typer.Option("--project", "-p", help="only these projects")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Remove what the policies no longer allow - views, running workspaces, project tokens - and nothing
    else, deciding as the system's enforcement identity (what `tre up`'s scheduler does every minute)."""
    from tre_platform.actor import Actor
    from tre_platform.db.session import session_scope
    from tre_platform.views.enforce import enforce_access

    try:
        with session_scope() as session:
            report = enforce_access(session, Actor.system(f"cli:{getpass.getuser()}"), project_ids=project)
    except TreError as exc:
        raise _fail(exc.message) from None
    removed = [
        {"project": r.project, "dataset": o.dataset, "reasons": list(o.reasons)}
        for r in report.views
        for o in r.outcomes
        if o.action == "removed"
    ]
    stopped = [
        {"username": s.username, "project": s.project, "reasons": list(s.reasons)} for s in report.stopped
    ]
    if as_json:
        data = {
            "views_removed": removed,
            "workspaces_stopped": stopped,
            "tokens_revoked": list(report.tokens_revoked),
            "problems": list(report.problems),
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    for item in removed:
        console.print(f"view {item['project']}/{item['dataset']} removed: " + "; ".join(item["reasons"]))
    for item in stopped:
        console.print(
            f"workspace {item['username']}/{item['project']} stopped: " + "; ".join(item["reasons"])
        )
    console.print(
        f"{len(removed)} views removed, {len(stopped)} workspaces stopped, "
        f"{len(report.tokens_revoked)} tokens revoked; every other view and workspace untouched"
    )
    for problem in report.problems:
        err_console.print(f"[yellow]warning:[/] {problem}", soft_wrap=True)
