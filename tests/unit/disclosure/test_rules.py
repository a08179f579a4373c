from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from disclosure_factories import table_from_counts

from tre_lib.disclosure import ProfileNotFoundError, Rules, RulesError, load_profile, protect_table
from tre_lib.disclosure.rules import coerce_rules, default_profiles_dir


def test_dataclass_defaults_equal_the_default_profile() -> None:
    profile = load_profile("default")
    for f in dataclasses.fields(Rules):
        if f.name in ("name", "description"):
            continue
        assert getattr(profile, f.name) == f.default, f.name


@pytest.mark.parametrize("name", sorted(p.stem for p in default_profiles_dir().glob("*.toml")))
def test_every_shipped_profile_loads(name: str) -> None:
    assert load_profile(name).name == name


def test_business_profile_is_stricter_on_dominance_than_default() -> None:
    business, default = load_profile("business-tier2"), load_profile("default")
    assert (business.dominance_n, business.dominance_k) == (1, 0.5)
    assert business.p_percent > default.p_percent
    assert business.threshold == 10


def test_extends_inherits_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('[rules]\nthreshold = 20\nzeros = "suppress"\n')
    (tmp_path / "child.toml").write_text('extends = "base"\n[rules]\nthreshold = 30\n')
    child = load_profile("child", tmp_path)
    assert (child.threshold, child.zeros, child.name) == (30, "suppress", "child")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("threshold = 0", "threshold"),
        ('threshold = "ten"', "threshold"),
        ("dominance_k = 90", "dominance_k"),
        ('zeros = "hide"', "zeros"),
        ("tresh = 10", "tresh"),
        ("insider_protection = 1", "insider_protection"),
        ("structural_zeros = [[1, 2, 3]]", "structural_zeros"),
    ],
)
def test_bad_value_names_file_and_key(tmp_path: Path, body: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[rules]\n{body}\n")
    with pytest.raises(RulesError) as err:
        load_profile("bad", tmp_path)
    assert err.value.key == key
    assert err.value.source == str(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_invalid_toml_is_a_rules_error(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text("[rules\nthreshold = 10\n")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_profile("broken", tmp_path)


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b"\n')
    (tmp_path / "b.toml").write_text('extends = "a"\n')
    with pytest.raises(RulesError, match="cycle"):
        load_profile("a", tmp_path)


def test_missing_profile_lists_known_ones(tmp_path: Path) -> None:
    (tmp_path / "only.toml").write_text("[rules]\n")
    with pytest.raises(ProfileNotFoundError, match="only"):
        load_profile("absent", tmp_path)
    with pytest.raises(ProfileNotFoundError):
        load_profile("../etc/passwd", tmp_path)


def test_rules_in_code_are_validated_too() -> None:
    with pytest.raises(RulesError) as err:
        Rules(p_percent=10)
    assert err.value.key == "p_percent" and err.value.source is None


def test_rules_argument_accepts_name_dict_dataclass() -> None:
    assert coerce_rules("health-tier3").zeros == "suppress"
    overridden = coerce_rules({"profile": "health-tier3", "threshold": 25})
    assert (overridden.threshold, overridden.zeros) == (25, "suppress")
    assert coerce_rules({"threshold": 3}).threshold == 3
    assert coerce_rules(Rules(threshold=4)).threshold == 4
    df = table_from_counts([[12, 12], [12, 12]], "ab", "xy")
    assert protect_table(df, "r", "c", rules="business-tier2").rules.name == "business-tier2"
    with pytest.raises(RulesError):
        coerce_rules({"nonsense": 1})
