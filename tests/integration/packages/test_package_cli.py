"""`tre package ...` against a real database and the registry: the same rules as the API, --json output,
one-line errors (never a traceback), advisories loaded from an OSV export, the base set."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from factories import make_accreditation, make_user
from mirror_support import DEPENDENCY, PACKAGE, VERSION, pip_cache
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tre_platform.cli import app
from tre_platform.settings import get_settings

__all__ = ["pip_cache"]
runner = CliRunner()


def tre(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def people(session: Session, pip_cache: Path) -> dict[str, str]:
    """An administrator, an accredited researcher and a researcher without accreditation."""
    make_user(session, username="ada", roles=["admin"])
    alice = make_user(session, username="alice", roles=["researcher"])
    make_accreditation(session, alice)
    make_user(session, username="carol", roles=["researcher"])
    session.commit()
    return {"admin": "ada", "researcher": "alice", "unaccredited": "carol"}


def ask(as_user: str | None, name: str = PACKAGE, version: str = VERSION) -> tuple[int, str, str]:
    who = ["--as", as_user] if as_user else []
    return tre("package", "request", name, version, "--reason", "timestamps", *who, "--json")


def test_a_researcher_asks_and_an_admin_approves_from_the_cli(people: dict[str, str]) -> None:
    code, out, err = ask("alice")
    assert code == 0, err
    request = json.loads(out)
    assert {w["name"] for w in request["tree"]} == {PACKAGE, DEPENDENCY}
    code, out, err = tre("package", "approve", request["id"], "--as", "alice")
    assert code == 1 and "no policy permits" in err and "Traceback" not in err
    code, out, err = tre("package", "approve", request["id"], "--as", "ada", "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "approved"
    code, out, _ = tre("package", "list", "--mirror", "--json", "--as", "alice")
    assert {p["name"] for p in json.loads(out)} == {PACKAGE, DEPENDENCY}
    code, out, _ = tre("package", "list", "--json", "--as", "ada")
    assert [r["state"] for r in json.loads(out)] == ["approved"]
    assert all((get_settings().resolved_wheelhouse / w["filename"]).exists() for w in request["tree"])


@pytest.mark.parametrize(
    ("who", "message"),
    [
        (None, "the operator cannot ask for packages"),
        ("ada", "no policy permits"),
        ("carol", "holds no researcher accreditation"),
    ],
)
def test_only_an_accredited_researcher_asks_for_themselves(
    people: dict[str, str], who: str | None, message: str
) -> None:
    code, out, err = ask(who)
    assert code == 1 and message in err and out == ""


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("tre-no-such-package-7f3a9c", "1.0", "cannot be resolved"),
        ("six;id", "1.0", "is not a package name"),
        ("six @ file:///etc/passwd", "1.0", "is not a package name"),
        (PACKAGE, "not-a-version", "is not a version"),
    ],
)
def test_bad_input_is_one_line_of_error(
    people: dict[str, str], name: str, version: str, message: str
) -> None:
    code, _out, err = ask("alice", name, version)
    assert code == 1 and message in err and "Traceback" not in err


def _osv(osv_id: str, name: str, events: list[dict[str, str]]) -> dict[str, object]:
    return {
        "id": osv_id,
        "summary": f"{osv_id} summary",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }


def test_advisories_load_from_an_osv_zip_and_show_on_the_tree(people: dict[str, str], tmp_path: Path) -> None:
    export = tmp_path / "all.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("PYSEC-1.json", json.dumps(_osv("PYSEC-1", "six", [{"introduced": "0"}])))
        archive.writestr(
            "PYSEC-2.json", json.dumps(_osv("PYSEC-2", "six", [{"introduced": "0"}, {"fixed": "1.0"}]))
        )
    export.write_bytes(buffer.getvalue())
    code, out, err = tre("package", "load-advisories", str(export), "--as", "alice")
    assert code == 1 and "only an administrator" in err
    code, out, err = tre("package", "load-advisories", str(export), "--json")
    assert code == 0, err
    assert json.loads(out) == {"records": 2, "entries": 2}
    code, out, _ = ask("alice")
    tree = {w["name"]: w for w in json.loads(out)["tree"]}
    assert [a["osv_id"] for a in tree["six"]["advisories"]] == ["PYSEC-1"]
    code, out, err = tre("package", "approve", json.loads(out)["id"], "--as", "ada")
    assert code == 1 and "PYSEC-1" in err


def test_a_file_that_is_not_an_osv_export_is_refused_clearly(people: dict[str, str], tmp_path: Path) -> None:
    for name, content in [
        ("junk.json", b"{not json"),
        ("empty.json", b"[]"),
        ("noid.json", b'{"affected": []}'),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        code, _out, err = tre("package", "load-advisories", str(path))
        assert code == 1 and "Traceback" not in err and err.strip()
    code, _out, err = tre("package", "load-advisories", str(tmp_path / "missing.zip"))
    assert code == 1 and "cannot read" in err


def test_the_base_set_is_approved_once_and_reports_what_it_could_not_fetch(
    people: dict[str, str], tmp_path: Path
) -> None:
    requirements = tmp_path / "base.txt"
    requirements.write_text(
        "# the workspace's packages\nsix==1.17.0\ntre-no-such-package-7f3a9c==1.0\n-e ./local\n"
    )
    code, out, err = tre("package", "base-set", "--requirements", str(requirements), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["added"] == ["six-1.17.0-py2.py3-none-any.whl"]
    assert list(result["failed"]) == ["tre-no-such-package-7f3a9c==1.0"]
    assert (get_settings().resolved_wheelhouse / "six-1.17.0-py2.py3-none-any.whl").exists()
    code, out, _ = tre("package", "base-set", "--requirements", str(requirements), "--json")
    assert json.loads(out)["present"] == 1 and json.loads(out)["added"] == []
    code, out, _ = tre("package", "base-set", "--requirements", str(requirements), "--as", "alice")
    assert code == 1
