"""The HMAC key never appears in a Spark query plan (any explain mode, any phase, JSON) nor in the logs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tre_lib.pseudonymise import spark_hmac_sha256, spark_pseudonymise
from tre_lib.pseudonymise._core import HmacKey
from tre_lib.pseudonymise.errors import UnsupportedValueError

KEY = hashlib.sha256(b"tre-spark-leak-test").digest()
METHODS = ("builtin", "sha2", "arrow_udf", "pandas_udf")


def _needles(key: bytes) -> list[str]:
    """Every form the key or its RFC 2104 padded variants could take in a plan or a log line (lowercased)."""
    ipad_key, opad_key = HmacKey(key).padded_keys()
    forms = []
    for secret in (key, ipad_key, opad_key):
        forms += [secret.hex(), base64.b64encode(secret).decode().lower(), secret[:12].hex()]
        forms.append(",".join(str(b) for b in secret[:12]))  # JSON / Seq rendering of a byte array
        forms.append(", ".join(str(b if b < 128 else b - 256) for b in secret[:12]))  # Java signed bytes
    return forms


def _secrets(key: bytes) -> list[bytes]:
    ipad_key, opad_key = HmacKey(key).padded_keys()
    return [key, ipad_key, opad_key]


def _leaks(text: str, key: bytes) -> list[str]:
    """Return what in ``text`` reveals the key: a textual form, or the raw bytes inside any base64 run.

    Py4J, for one, logs byte arrays as base64; a key embedded in a longer blob (a pickled closure) does not
    show as base64 of the key alone, so every base64 run is decoded and searched for the raw bytes.
    """
    lowered = text.lower()
    found = [needle for needle in _needles(key) if needle in lowered]
    for run in re.findall(r"[A-Za-z0-9+/]{24,}={0,2}", text):
        # A type tag may precede the base64 (Py4J writes "j" + base64), so try each alignment.
        for start in range(4):
            body = run[start:].rstrip("=")
            decoded = base64.b64decode(body[: len(body) // 4 * 4], validate=False)
            found += [f"raw bytes in base64 run {run[:12]}..." for s in _secrets(key) if s[:16] in decoded]
    return found


def _plan_text(df: Any) -> str:
    texts = []
    for mode in ("simple", "extended", "codegen", "cost", "formatted"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            df.explain(mode=mode)
        texts.append(buf.getvalue())
    qe = df._jdf.queryExecution()
    texts.append(qe.toString())
    for phase in ("logical", "analyzed", "optimizedPlan", "executedPlan"):
        texts.append(getattr(qe, phase)().toJSON())
    return "\n".join(texts).lower()


def _frame(spark: Any) -> Any:
    return spark.createDataFrame(
        [("alice", 1, bytearray(b"\x00\x01")), (None, 2, None)], "name string, n long, raw binary"
    )


def test_the_detector_finds_a_key_passed_as_a_literal(spark: Any):
    """Control: a naive literal key is visible, so the checks below would catch a leak."""
    from pyspark.sql import functions as F

    df = _frame(spark)
    leaky = df.select(F.hmac(F.lit(KEY), F.col("name").cast("binary")).alias("h"))
    leaky.collect()
    assert _leaks(_plan_text(leaky), KEY)


@pytest.mark.parametrize("method", METHODS)
def test_no_key_material_in_any_plan(spark: Any, method: str):
    out = spark_pseudonymise(
        _frame(spark), {"h_name": "name", "h_n": "n", "h_raw": "raw"}, KEY, method=method
    )
    rows = out.collect()
    assert rows[0]["h_name"] is not None and rows[1]["h_name"] is None
    text = _plan_text(out)
    assert "h_name" in text  # the plan text was really captured
    assert not _leaks(text, KEY)


@pytest.mark.parametrize("method", METHODS)
def test_no_key_material_in_the_plan_of_a_column_expression_used_in_sql_ops(spark: Any, method: str):
    df = _frame(spark).withColumn("h", spark_hmac_sha256("name", KEY, method=method))
    out = df.groupBy("h").count().join(df, "h").filter("n > 0")
    out.collect()
    text = _plan_text(out)
    assert "count" in text
    assert not _leaks(text, KEY)


@contextlib.contextmanager
def _jvm_log_capture(spark: Any, path: Path) -> Iterator[None]:
    """Send every JVM log event, at DEBUG, to ``path`` while the block runs."""
    jvm = spark._jvm
    log4j = jvm.org.apache.logging.log4j
    context = log4j.LogManager.getContext(False)
    config = context.getConfiguration()
    layout = (
        log4j.core.layout.PatternLayout.newBuilder()
        .withPattern("%p %c: %m%n")
        .withConfiguration(config)
        .build()
    )
    appender = (
        log4j.core.appender.FileAppender.newBuilder()
        .withFileName(str(path))
        .setName("tre-leak-test")
        .setLayout(layout)
        .setConfiguration(config)
        .build()
    )
    appender.start()
    root = config.getRootLogger()
    old_level = root.getLevel()
    root.addAppender(appender, log4j.Level.ALL, None)
    root.setLevel(log4j.Level.DEBUG)
    context.updateLoggers()
    try:
        yield
    finally:
        root.removeAppender("tre-leak-test")
        root.setLevel(old_level)
        context.updateLoggers()
        appender.stop()


def test_no_key_material_in_jvm_or_python_logs(spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    log_file = tmp_path / "spark-debug.log"
    with caplog.at_level(logging.DEBUG), _jvm_log_capture(spark, log_file):
        for method in METHODS:
            out = spark_pseudonymise(_frame(spark), ["name", "n"], KEY, method=method)
            assert len(out.collect()) == 2
        for method in METHODS:
            column = _frame(spark).select(spark_hmac_sha256("name", KEY, method=method))
            assert len(column.collect()) == 2
    assert "\nDEBUG org.apache.spark" in log_file.read_text(
        errors="replace"
    )  # the capture really recorded the job
    assert "command to send" in caplog.text.lower()  # Py4J's own DEBUG logging was on and captured
    for text in (log_file.read_text(errors="replace"), caplog.text):
        assert not _leaks(text, KEY)


def test_spark_pseudonymise_refuses_float_columns_before_running(spark: Any):
    df = spark.createDataFrame([(1.5,)], "x double")
    with pytest.raises(UnsupportedValueError, match="cast it first"):
        spark_pseudonymise(df, ["x"], KEY)


@pytest.mark.parametrize("method", METHODS)
def test_a_float_column_expression_fails_with_a_readable_message(spark: Any, method: str):
    from pyspark.errors import PySparkException

    df = spark.createDataFrame([(1.5,)], "x double")
    with pytest.raises(PySparkException, match=r"cast it first|IDs must be"):
        df.select(spark_hmac_sha256("x", KEY, method=method)).collect()


def test_spark_pseudonymise_appends_mapped_columns_and_keeps_the_source(spark: Any):
    out = spark_pseudonymise(_frame(spark), {"pid": "name", "n": "n"}, KEY)
    assert out.columns == ["name", "n", "raw", "pid"]
    row = out.collect()[0]
    assert row["name"] == "alice" and row["pid"] == HmacKey(KEY).hexdigest(b"alice")
    assert row["n"] == HmacKey(KEY).hexdigest(b"1")


def test_hmac_sha256_dispatches_a_spark_column(spark: Any):
    from pyspark.sql import functions as F

    from tre_lib.pseudonymise import hmac_sha256

    rows = _frame(spark).select(hmac_sha256(F.col("name"), KEY).alias("h")).collect()
    assert [r["h"] for r in rows] == [HmacKey(KEY).hexdigest(b"alice"), None]
