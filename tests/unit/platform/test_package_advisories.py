"""OSV advisories: which versions a record covers (the OSV event algorithm with PEP 440 ordering), what an
export may hold, and the names and versions the mirror accepts at all."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from tre_platform.api.packages import advisories as osv
from tre_platform.api.packages.resolve import check_name, check_version, licence_of
from tre_platform.errors import InvalidInput


def _range(*events: dict[str, str], kind: str = "ECOSYSTEM") -> list[dict[str, object]]:
    return [{"versions": [], "ranges": [{"type": kind, "events": list(events)}]}]


@pytest.mark.parametrize(
    ("affected", "version", "expected"),
    [
        (_range({"introduced": "0"}, {"fixed": "2.0"}), "1.9.9", True),
        (_range({"introduced": "0"}, {"fixed": "2.0"}), "2.0", False),
        (_range({"introduced": "1.5"}, {"fixed": "2.0"}), "1.4", False),
        (_range({"introduced": "1.5"}, {"fixed": "2.0"}), "1.10", True),  # PEP 440, not string order
        (_range({"introduced": "1.0"}, {"last_affected": "1.3"}), "1.3", True),
        (_range({"introduced": "1.0"}, {"last_affected": "1.3"}), "1.3.1", False),
        (_range({"introduced": "1.0"}), "99.0", True),  # never fixed
        (
            _range({"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "1.5"}, {"fixed": "1.7"}),
            "1.6",
            True,
        ),
        (
            _range({"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "1.5"}, {"fixed": "1.7"}),
            "1.3",
            False,
        ),
        (_range({"introduced": "1.0"}, {"fixed": "2.0"}), "2.0rc1", True),
        (_range({"introduced": "0"}, {"fixed": "2.0"}, kind="GIT"), "1.0", False),  # commits, not versions
        ([{"versions": ["1.17.0"], "ranges": []}], "1.17.0", True),
        ([{"versions": ["1.17.0"], "ranges": []}], "1.17", True),  # the same PEP 440 version
        ([{"versions": ["1.17.0"], "ranges": []}], "1.16.0", False),
        (_range({"introduced": "not a version"}, {"fixed": "2.0"}), "1.0", False),
    ],
)
def test_a_version_is_affected_exactly_when_the_record_says(
    affected: list[dict[str, object]], version: str, expected: bool
) -> None:
    assert osv.affects(affected, version) is expected  # type: ignore[arg-type]


def test_only_pypi_entries_are_kept_by_canonical_name() -> None:
    record = {
        "id": "GHSA-x",
        "affected": [
            {"package": {"ecosystem": "PyPI", "name": "Foo_Bar"}, "versions": ["1.0"]},
            {"package": {"ecosystem": "npm", "name": "foo-bar"}, "versions": ["1.0"]},
        ],
    }
    entries = osv.pypi_entries(record)
    assert [(e.osv_id, e.package) for e in entries] == [("GHSA-x", "foo-bar")]


def test_an_export_without_ids_or_too_large_a_member_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no valid 'id'"):
        osv.pypi_entries({"affected": []})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.json", " " * (osv.MAX_RECORD_BYTES + 1))
    with pytest.raises(InvalidInput, match="larger than any OSV record"):
        list(osv.read_records(buffer.getvalue(), "all.zip"))
    assert list(osv.read_records(json.dumps({"id": "A"}).encode(), "a.json")) == [{"id": "A"}]


@pytest.mark.parametrize("name", ["six", "Rfc3339_Validator", "zope.interface", "a", "A1"])
def test_valid_names_are_canonicalised(name: str) -> None:
    assert check_name(name) == name.lower().replace("_", "-").replace(".", "-")


@pytest.mark.parametrize(
    "name", ["", "-r", "six;id", "six ", " six", "a/b", "..", "six==1.0", "x" * 101, "naïve", "six\n"]
)
def test_anything_else_is_not_a_package_name(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_name(name)


@pytest.mark.parametrize(
    "version", ["latest", ">=1", "1.0,<2", "1.0 ; python_version", "1+local", "1" * 65, ""]
)
def test_only_one_exact_public_version_is_accepted(version: str) -> None:
    with pytest.raises(InvalidInput):
        check_version(version)


def test_the_licence_comes_from_the_expression_then_classifiers_then_the_text() -> None:
    assert licence_of({"license_expression": "Apache-2.0", "license": "x"}) == "Apache-2.0"
    assert (
        licence_of({"classifier": ["License :: OSI Approved :: MIT License"], "license": "x"})
        == "MIT License"
    )
    assert licence_of({"license": "BSD\nlong text"}) == "BSD"
    assert licence_of({}) == ""
