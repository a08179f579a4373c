"""The ingest pipeline against a real database, real reference index and real files (pandas engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from factories import make_org, make_user
from pipeline_factories import IngestWorld
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.indexing import ReferenceIndex
from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.datasets.models import DatasetVersion
from tre_platform.errors import Conflict, NotFound, PolicyDenied
from tre_platform.pipelines import DeliveryInvalid, ingest
from tre_platform.pipelines import publish as publish_module
from tre_platform.pipelines.report import dataset_report

IDENTIFIERS = ("nhs_number", "given_name", "family_name", "date_of_birth")


def _truth(episodes: tuple[pd.DataFrame, pd.DataFrame], index_truth: pd.DataFrame) -> pd.DataFrame:
    """row -> the demographic surrogate id each delivery row should get (null when not in the index)."""
    _, truth = episodes
    lookup = index_truth.set_index("person_id")["surrogate_id"]
    return pd.DataFrame(
        {"row": range(1, len(truth) + 1), "demographic_id": lookup.reindex(truth["person_id"]).to_numpy()}
    )


def _fast(episodes: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """The episodes shaped to FAST_SCHEMA (no names)."""
    return episodes[0].drop(columns=["given_name", "family_name"])


def _versions(session: Session, dataset_id: str) -> list[DatasetVersion]:
    session.expire_all()
    return list(session.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)))


def _ingest_events(session: Session) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == "dataset.ingest").order_by(AuditEvent.seq)
        )
    )


def _visible(research: Path) -> list[str]:
    return (
        sorted(p.name for p in research.iterdir() if not p.name.startswith(".")) if research.exists() else []
    )


def test_a_good_delivery_publishes_version_1_without_identifiers_and_with_index_ids(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    frame, _ = episodes
    truth = _truth(episodes, ingest_world.index_truth)

    version = ingest(session, ingest_world.owner, "episodes", write_csv(frame), truth=truth)

    assert version.version == 1
    assert version.row_count == len(frame)
    published = Path(version.path)
    assert published == ingest_world.data_dir / "research" / "episodes" / "v1"
    assert (published / "_SUCCESS").exists()
    manifest = json.loads((published / "_manifest.json").read_text())
    assert manifest["row_count"] == len(frame)
    table = pq.read_table(published).to_pandas()
    assert not set(IDENTIFIERS) & set(table.columns)
    assert table.columns[0] == "demographic_id"
    # Every linked id is an entry of the reference index, and links are right where the truth is known.
    index = ReferenceIndex.load(ingest_world.data_dir / "linkage" / "indexes" / "demographic")
    ids = set(index.entries["surrogate_id"])
    linked = table["demographic_id"].dropna()
    assert len(linked) > 0.8 * len(table)
    assert set(linked) <= ids
    expected = truth["demographic_id"].to_numpy()
    both = table["demographic_id"].notna().to_numpy() & pd.notna(expected)
    assert (table["demographic_id"].to_numpy()[both] == expected[both]).mean() > 0.98
    report = version.match_report["demographic"]
    assert report["accuracy"]["precision"] > 0.98
    assert sum(report["counts"].values()) == len(frame)
    assert version.quality["completeness"]["n_rows"] == len(frame)
    assert set(version.quality) >= {"completeness", "uniqueness", "validity", "consistency", "timeliness"}
    for chart in report["charts"].values():
        assert Path(chart).is_file()
        assert "/linkage/reports/episodes/v1/" in chart
    # Types follow the registered schema.
    schema = pq.read_schema(next(published.glob("part-*.parquet")))
    assert str(schema.field("admission_date").type) == "date32[day]"
    assert str(schema.field("length_of_stay").type) == "int64"
    assert str(schema.field("emergency").type) == "bool"


def test_a_second_delivery_publishes_version_2_and_the_report_shows_each(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    frame = _fast(episodes)
    first = ingest(session, ingest_world.owner, "episodes_fast", write_csv(frame))
    second = ingest(session, ingest_world.owner, "episodes_fast", write_csv(frame.iloc[:120]))

    assert (first.version, second.version) == (1, 2)
    assert second.row_count == 120
    assert _visible(ingest_world.data_dir / "research" / "episodes_fast") == ["v1", "v2"]
    latest = dataset_report(session, ingest_world.owner, "episodes_fast")
    assert latest["version"] == 2
    assert latest["match"]["demographic"]["n_records"] == 120
    assert dataset_report(session, ingest_world.owner, "episodes_fast", 1)["row_count"] == len(frame)


def test_a_re_ingest_reuses_the_datasets_trained_model_instead_of_training_again(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    frame, _ = episodes
    ingest(session, ingest_world.owner, "episodes", write_csv(frame))
    ingest(session, ingest_world.owner, "episodes", write_csv(frame.iloc[:150]))

    def training(version: int) -> list[str]:
        report = dataset_report(session, ingest_world.owner, "episodes", version)
        return list(report["match"]["demographic"]["training"])

    def reused(version: int) -> bool:
        return any(step.startswith("saved model reused") for step in training(version))

    assert not reused(1) and any(step.startswith("m by EM") for step in training(1))
    assert reused(2)


def test_a_byte_identical_delivery_is_refused_as_a_duplicate(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    path = write_csv(_fast(episodes))
    ingest(session, ingest_world.owner, "episodes_fast", path)
    with pytest.raises(Conflict, match="byte-identical to version 1"):
        ingest(session, ingest_world.owner, "episodes_fast", path)
    assert [v.version for v in _versions(session, ingest_world.fast.id)] == [1]


def test_a_malformed_delivery_lists_every_problem_and_publishes_nothing(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    frame = episodes[0].iloc[:30].copy().astype(object)
    frame.loc[2, "length_of_stay"] = "three"  # type
    frame.loc[4, "length_of_stay"] = "-1"  # below min
    frame.loc[5, "length_of_stay"] = "99999"  # above max
    frame.loc[6, "admission_date"] = "31/02/2020"  # type (not ISO)
    frame.loc[7, "admission_date"] = "1999-12-31"  # below min
    frame.loc[8, "sex"] = "X"  # not allowed
    frame.loc[9, "sex"] = None  # required
    frame.loc[10, "cost"] = "a lot"  # type
    frame.loc[11, "emergency"] = "maybe"  # type
    frame.loc[12, "date_of_birth"] = "not a date"  # identifier: value withheld
    frame["ward"] = "A"  # unknown column
    with pytest.raises(DeliveryInvalid) as caught:
        ingest(session, ingest_world.owner, "episodes", write_csv(frame))
    # The header problem is found first; the rows are checked once the header is right.
    problems = {(p.column, p.problem) for p in caught.value.report.problems}
    assert problems == {("ward", "unknown_column")}

    with pytest.raises(DeliveryInvalid) as caught:
        ingest(session, ingest_world.owner, "episodes", write_csv(frame.drop(columns=["ward"])))
    report = caught.value.report
    found = {(p.column, p.problem): p for p in report.problems}
    assert set(found) == {
        ("length_of_stay", "type"),
        ("length_of_stay", "min"),
        ("length_of_stay", "max"),
        ("admission_date", "type"),
        ("admission_date", "min"),
        ("sex", "allowed"),
        ("sex", "required"),
        ("cost", "type"),
        ("emergency", "type"),
        ("date_of_birth", "type"),
    }
    assert found[("length_of_stay", "type")].rows == [3]  # 1-based data rows
    assert found[("length_of_stay", "type")].values == ["three"]
    assert found[("length_of_stay", "max")].rows == [6]
    assert found[("sex", "allowed")].values == ["X"]
    assert found[("date_of_birth", "type")].values == ["<identifier withheld>"]
    assert "nothing was published" in caught.value.message
    assert _visible(ingest_world.data_dir / "research" / "episodes") == []
    assert _versions(session, ingest_world.full.id) == []


def test_a_missing_required_column_is_reported(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    frame = episodes[0].drop(columns=["sex", "length_of_stay"])
    with pytest.raises(DeliveryInvalid) as caught:
        ingest(session, ingest_world.owner, "episodes", write_csv(frame))
    assert {(p.column, p.problem) for p in caught.value.report.problems} == {
        ("sex", "missing_column"),
        ("length_of_stay", "missing_column"),
    }


def test_every_bad_row_is_counted_and_examples_are_capped(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    frame = _fast(episodes).copy().astype(object)
    frame["sex"] = "?"
    with pytest.raises(DeliveryInvalid) as caught:
        ingest(session, ingest_world.owner, "episodes_fast", write_csv(frame))
    (problem,) = caught.value.report.problems
    assert problem.count == len(frame)
    assert problem.rows == list(range(1, 21))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty_file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00binary junk\xff\xfe", "not_tabular"),
        ("nhs_number,name\n1,Zoë\n".encode("latin-1"), "not_utf8"),
        (
            b"nhs_number,date_of_birth,sex,admission_date,length_of_stay,cost,emergency\n",
            "no_rows",
        ),
        (
            b"nhs_number,date_of_birth,sex,admission_date,length_of_stay,cost,emergency\n"
            b"1,2000-01-01,F,2020-01-01,1,1.0,true\n"
            b"1,2000-01-01,F,2020-01-01,1,1.0,true,extra,fields\n",
            "malformed_row",
        ),
    ],
    ids=["empty", "binary", "latin1", "header-only", "ragged"],
)
def test_unreadable_files_are_rejected_with_a_clear_problem(
    session: Session, ingest_world: IngestWorld, write_csv, content: bytes, problem: str
) -> None:
    with pytest.raises(DeliveryInvalid) as caught:
        ingest(session, ingest_world.owner, "episodes_fast", write_csv(content))
    assert problem in {p.problem for p in caught.value.report.problems}
    assert _versions(session, ingest_world.fast.id) == []


def test_sql_injection_strings_are_data_stored_verbatim(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    nasty = ["'; DROP TABLE dataset_versions; --", "Robert'); DELETE FROM audit_events;--", "1 OR 1=1"]
    schema_extra = episodes[0].iloc[:3].copy()
    schema_extra["given_name"] = nasty
    schema_extra["family_name"] = nasty
    version = ingest(session, ingest_world.owner, "episodes", write_csv(schema_extra))
    assert version.row_count == 3
    # Names are identifiers (dropped); the tables they "attack" are intact.
    assert session.scalar(select(DatasetVersion.id).where(DatasetVersion.id == version.id))
    assert _ingest_events(session)
    # In a research column the same strings are stored exactly as delivered.
    with pytest.raises(DeliveryInvalid) as caught:
        bad = episodes[0].iloc[:3].copy()
        bad["sex"] = nasty
        ingest(session, ingest_world.owner, "episodes", write_csv(bad))
    assert [v for p in caught.value.report.problems for v in p.values] == nasty


def test_an_unknown_dataset_is_a_clear_error(session: Session, ingest_world: IngestWorld, write_csv) -> None:
    with pytest.raises(NotFound, match="no dataset named 'nope'"):
        ingest(session, ingest_world.owner, "nope", write_csv("a\n1\n"))


def test_policy_denies_a_data_owner_of_another_organisation(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    other_org = make_org(session, kind="data_owner")
    stranger = make_user(session, roles=["data_owner"], organisation_id=other_org.id)
    session.commit()
    with pytest.raises(PolicyDenied) as caught:
        ingest(session, Actor.of(stranger), "episodes_fast", write_csv(_fast(episodes)))
    assert any("not a data owner" in reason for reason in caught.value.reasons)
    assert _versions(session, ingest_world.fast.id) == []
    session.expire_all()
    denial = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "policy.ingest_dataset", AuditEvent.decision == "deny")
    ).all()
    assert len(denial) == 1
    assert not (ingest_world.data_dir / "landing" / "episodes_fast").exists()


def test_success_and_failure_are_both_audited(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    version = ingest(session, ingest_world.owner, "episodes_fast", write_csv(_fast(episodes)))
    with pytest.raises(DeliveryInvalid):
        ingest(session, ingest_world.owner, "episodes_fast", write_csv(_fast(episodes).drop(columns=["sex"])))
    success, failure = _ingest_events(session)
    assert (success.decision, success.target_id) == ("success", version.id)
    assert success.details["version"] == 1
    assert failure.decision == "failure"
    assert failure.target_id == ingest_world.fast.id
    assert failure.details["problems"] == [{"column": "sex", "problem": "missing_column", "count": 1}]
    allows = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "policy.ingest_dataset", AuditEvent.decision == "allow")
    ).all()
    assert len(allows) == 2


@pytest.mark.parametrize("stage", ["parts_written", "promoted"])
def test_a_crash_half_way_leaves_nothing_visible_and_a_rerun_succeeds(
    session: Session,
    ingest_world: IngestWorld,
    episodes: tuple[pd.DataFrame, pd.DataFrame],
    write_csv,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
) -> None:
    class Crash(RuntimeError):
        pass

    def crash(at: str) -> None:
        if at == stage:
            raise Crash(at)

    path = write_csv(_fast(episodes))
    monkeypatch.setattr(publish_module, "checkpoint", crash)
    with pytest.raises(Crash):
        ingest(session, ingest_world.owner, "episodes_fast", path)
    research = ingest_world.data_dir / "research" / "episodes_fast"
    assert _visible(research) == []
    assert [p.name for p in research.iterdir() if p.name.startswith(".staging-")] == []
    assert _versions(session, ingest_world.fast.id) == []
    (failure,) = _ingest_events(session)
    assert failure.decision == "failure"

    monkeypatch.undo()
    version = ingest(session, ingest_world.owner, "episodes_fast", path)
    assert version.version == 1
    assert _visible(research) == ["v1"]


def test_a_version_directory_left_between_rename_and_commit_is_replaced(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], write_csv
) -> None:
    # What kill -9 between the rename and the commit leaves: a complete v1 that no row points at.
    orphan = ingest_world.data_dir / "research" / "episodes_fast" / "v1"
    orphan.mkdir(parents=True)
    (orphan / "part-00000.parquet").write_bytes(b"stale")
    version = ingest(session, ingest_world.owner, "episodes_fast", write_csv(_fast(episodes)))
    assert version.version == 1
    assert pq.read_table(version.path).num_rows == len(_fast(episodes))


def test_parquet_deliveries_are_validated_like_csv(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    frame = episodes[0].drop(columns=["given_name", "family_name"]).copy()
    frame["admission_date"] = pd.to_datetime(frame["admission_date"])
    frame["emergency"] = frame["emergency"] == "true"
    path = tmp_path / "delivery.parquet"
    frame.to_parquet(path)
    version = ingest(session, ingest_world.owner, "episodes_fast", path)
    assert version.row_count == len(frame)
    frame.loc[0, "sex"] = "Z"
    frame.to_parquet(path)
    with pytest.raises(DeliveryInvalid) as caught:
        ingest(session, ingest_world.owner, "episodes_fast", path)
    assert [(p.column, p.problem, p.rows) for p in caught.value.report.problems] == [("sex", "allowed", [1])]


def test_a_file_over_the_upload_limit_is_refused(
    session: Session, ingest_world: IngestWorld, write_csv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tre_platform.settings import get_settings

    monkeypatch.setenv("TRE_MAX_UPLOAD_BYTES", "2048")
    get_settings.cache_clear()
    with pytest.raises(DeliveryInvalid) as caught:
        ingest(session, ingest_world.owner, "episodes_fast", write_csv("x" * 4096))
    assert caught.value.report.problems[0].problem == "too_large"
