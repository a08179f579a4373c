"""`tre policy ...`: explain access decisions and validate the policy bundle.

The lead mounts :data:`policy_app` as ``tre policy``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tre_platform.errors import TreError
from tre_platform.policy.bundle import PolicyBundleError
from tre_platform.policy.engine import Decision, PolicyEngine, get_engine
from tre_platform.settings import get_settings

policy_app = typer.Typer(
    help="Explain access decisions and check the Cedar policy bundle.", no_args_is_help=True
)
console = Console()


def _print_decisions(decisions: list[Decision]) -> None:
    for decision in decisions:
        colour = "green" if decision.allowed else "red"
        console.print(
            f"[bold {colour}]{decision.effect.upper()}[/] {decision.principal} → {decision.action} "
            f"{decision.resource_type} [bold]{decision.resource}[/]"
        )
        for reason in decision.reasons:
            console.print(f"  • {reason}")
        if decision.policy_ids:
            console.print(f"  [dim]policies: {', '.join(decision.policy_ids)}[/]")
    if decisions:
        console.print(f"[dim]as of {decisions[0].today}; policy bundle {decisions[0].bundle_hash[:16]}…[/]")


@policy_app.command("explain")
def explain_command(
    user: Annotated[str, typer.Option("--user", "-u", help="username or id of the person asking")],
    project: Annotated[str, typer.Option("--project", "-p", help="project code or id")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="dataset name or id")] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", "-a", help="one action; default: spawn_workspace and read_dataset"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show whether USER may use PROJECT (and its datasets) and why: the rule that allowed, or what failed."""
    from tre_platform.db.session import session_scope
    from tre_platform.policy import service

    try:
        with session_scope() as session:
            subject = service.find_user(session, user)
            target_project = service.find_project(session, project)
            target_dataset = service.find_dataset(session, dataset) if dataset else None
            decisions = service.explain(
                session, subject, target_project, dataset=target_dataset, action=action
            )
    except TreError as error:
        console.print(f"[red]error:[/] {error.message}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"decisions": [d.to_dict() for d in decisions]}, indent=2, default=str))
    else:
        _print_decisions(decisions)
    raise typer.Exit(0 if all(d.allowed for d in decisions) else 1)


@policy_app.command("validate")
def validate_command(
    policies_dir: Annotated[
        Path | None, typer.Option("--dir", help="policies directory (default: TRE_POLICIES_DIR)")
    ] = None,
    cases: Annotated[
        bool, typer.Option("--cases/--no-cases", help="also run the golden allow/deny cases")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Validate the Cedar schema and policies, and run the golden cases; exit 1 on any problem."""
    from tre_platform.policy.cases import CaseError, load_cases, run_case

    directory = policies_dir or get_settings().policies_dir
    try:
        engine = PolicyEngine.load(directory) if policies_dir else get_engine()
        results = [run_case(engine, case) for case in load_cases(directory)] if cases else []
    except (PolicyBundleError, CaseError) as error:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": str(error)}))
        else:
            console.print(f"[red]invalid:[/] {error}")
        raise typer.Exit(1) from None
    failed = [r for r in results if not r.passed]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not failed,
                    "bundle_hash": engine.bundle_hash,
                    "files": list(engine.bundle.files),
                    "policies": len(engine.bundle.policies),
                    "cases": len(results),
                    "failed": [{"case": r.case.name, "problems": r.problems} for r in failed],
                },
                indent=2,
            )
        )
    else:
        table = Table("file", "policies")
        for name in engine.bundle.files:
            count = sum(1 for p in engine.bundle.policies.values() if p.file == name)
            table.add_row(name, str(count) if name.endswith(".cedar") else "schema")
        console.print(table)
        console.print(
            f"bundle {engine.bundle_hash}: {len(engine.bundle.policies)} policies valid against the schema"
        )
        if cases:
            console.print(f"golden cases: {len(results) - len(failed)}/{len(results)} pass")
        for result in failed:
            console.print(f"[red]FAIL[/] {result.case.name}: {'; '.join(result.problems)}")
    raise typer.Exit(1 if failed else 0)
