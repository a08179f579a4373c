"""A thin client of the control plane's airlock API, used from notebooks.

It builds each output locally with the same functions the server uses, stages it with its declared
computation and data, and asks for release. The local check helps the researcher see problems early;
the server's re-check is the one that counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tre_lib.disclosure import RegressionCheck, check_regression, protect_table
from tre_lib.disclosure.table import ProtectedTable
from tre_lib.outputs.specs import (
    Filter,
    RegressionSpec,
    TableSpec,
    apply_filters,
    coefficients_csv,
    fit_regression,
    table_to_csv,
    write_data,
)


class AirlockError(RuntimeError):
    """The control plane refused a request; the message is the server's, which says what to do next."""

    def __init__(self, status_code: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{message} (HTTP {status_code})")
        self.status_code = status_code
        self.body = dict(body or {})


@dataclass
class StagedOutput:
    """An output waiting to be sent with the next release request."""

    name: str
    kind: str
    content: bytes
    spec: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    data_name: str | None = None
    description: str = ""
    #: The local pre-check (ProtectedTable or RegressionCheck), shown to the researcher only.
    result: ProtectedTable | RegressionCheck | None = None
    #: For a ``dp`` output: the id of the server's stored DP result it refers to.
    dp_result_id: str | None = None

    @property
    def local_status(self) -> str | None:
        return self.result.status if self.result is not None else None


class Airlock:
    """Stage outputs of one project and request their release.

    Args:
        base_url: the control plane, e.g. ``http://127.0.0.1:8000``.
        token: the workspace's API token.
        project_id: the project the outputs come from.
        client: an ``httpx.Client`` to use instead of a new one (tests pass FastAPI's TestClient).
    """

    def __init__(self, base_url: str, token: str, project_id: str, *, client: Any = None) -> None:
        if client is None:
            import httpx  # imported here: notebooks that never stage outputs do not need it

            client = httpx.Client(base_url=base_url, timeout=120)
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}
        self.project_id = project_id
        self.staged: list[StagedOutput] = []
        self._rules: dict[str, Any] | None = None

    @classmethod
    def from_env(cls) -> Airlock:
        """Configured by the workspace's environment: TRE_API_URL, TRE_API_TOKEN and TRE_PROJECT_ID."""
        missing = [k for k in ("TRE_API_URL", "TRE_API_TOKEN", "TRE_PROJECT_ID") if not os.environ.get(k)]
        if missing:
            raise AirlockError(0, f"{', '.join(missing)} not set; start the notebook from a TRE workspace")
        return cls(os.environ["TRE_API_URL"], os.environ["TRE_API_TOKEN"], os.environ["TRE_PROJECT_ID"])

    # HTTP -----------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.request(method, f"/api/v1{path}", headers=self._headers, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text}
            raise AirlockError(response.status_code, str(body.get("message", "request refused")), body)
        return response.json() if response.content else None

    def rules(self) -> dict[str, Any]:
        """The disclosure-control rules the server applies to this project (cached)."""
        if self._rules is None:
            self._rules = self._call("GET", f"/projects/{self.project_id}/disclosure-rules")["rules"]
        return self._rules

    def budget(self) -> list[dict[str, Any]]:
        """The project's differential-privacy budget: limit, spent and remaining per scope."""
        result: list[dict[str, Any]] = self._call("GET", f"/projects/{self.project_id}/privacy-budget")
        return result

    def charge(
        self, dataset_ids: Sequence[str], epsilon: float, delta: float = 0.0, *, description: str
    ) -> Any:
        """Charge a DP query to the server's ledger BEFORE computing it (AirlockError: over budget)."""
        body = {
            "dataset_ids": list(dataset_ids),
            "epsilon": epsilon,
            "delta": delta,
            "description": description,
        }
        return self._call("POST", f"/projects/{self.project_id}/privacy-budget/charges", json=body)

    def dp_query(
        self,
        view: str,
        statistic: str,
        epsilon: float,
        *,
        column: str | None = None,
        bounds: tuple[float, float] | None = None,
        q: float | None = None,
        categories: Sequence[Any] | None = None,
        delta: float | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """Ask the server for a differentially private statistic of a project view.

        The server runs the same OpenDP mechanism as :mod:`tre_lib.privacy` on the view as it holds it,
        debits the project's and the dataset's budget in the same transaction as it stores the noisy
        result, and returns it (``result["value"]``, ``result["accuracy"]``, ``id``). Only such a stored
        result counts as differentially private at release: attach it with :meth:`dp_output`. What
        ``tre_lib.privacy`` computes in the notebook is a local preview.

        Raises:
            AirlockError: 403 ``budget_exceeded`` when over budget (nothing charged), 422 for a bad query.

        Example:
            >>> r = airlock.dp_query("hes", "count", epsilon=0.5)
            >>> airlock.dp_output(r["id"], "admissions-count.json")
        """
        body: dict[str, Any] = {"view": view, "statistic": statistic, "epsilon": epsilon}
        optional = {
            "column": column,
            "bounds": list(bounds) if bounds is not None else None,
            "q": q,
            "categories": list(categories) if categories is not None else None,
            "delta": delta,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if description:
            body["description"] = description
        result: dict[str, Any] = self._call("POST", f"/projects/{self.project_id}/dp-queries", json=body)
        return result

    def dp_output(self, dp_result_id: str, name: str, *, description: str = "") -> StagedOutput:
        """Stage a server-computed DP result (by reference) for the next release request."""
        return self._stage(StagedOutput(name, "dp", b"", description=description, dp_result_id=dp_result_id))

    def request_exception(self, request_id: str, file_id: str, justification: str) -> dict[str, Any]:
        """Ask for an exception to a failed finding of one output, with a written justification.

        Both output checkers must approve the request to grant it; the exception is audited and appears
        in the release's disclosure-control record.
        """
        result: dict[str, Any] = self._call(
            "POST",
            f"/releases/{request_id}/files/{file_id}/exception",
            json={"justification": justification},
        )
        return result

    # Building outputs -------------------------------------------------------------------------------

    def _stage(self, output: StagedOutput) -> StagedOutput:
        self.staged = [s for s in self.staged if s.name != output.name] + [output]
        return output

    def table(
        self,
        data: pd.DataFrame,
        index: str | Sequence[str],
        columns: str | Sequence[str] | None = None,
        values: str | None = None,
        aggfunc: str = "count",
        *,
        name: str,
        filters: Sequence[Filter | Sequence[Any] | Mapping[str, Any]] = (),
        dataset: str | None = None,
        view: str | None = None,
        margins: bool = True,
        description: str = "",
        rules: Mapping[str, Any] | None = None,
    ) -> StagedOutput:
        """Build a protected table with the server's rules and stage it (as CSV) with its computation."""
        spec = TableSpec.from_dict(
            {
                "index": [index] if isinstance(index, str) else list(index),
                "columns": []
                if columns is None
                else [columns]
                if isinstance(columns, str)
                else list(columns),
                "values": values,
                "aggfunc": aggfunc,
                "margins": margins,
                "dataset": dataset,
                "view": view,
                "filters": [Filter.from_value(f).as_dict() for f in filters],
            }
        )
        subset = apply_filters(data, spec.filters)[spec.needed_columns]
        result = protect_table(
            subset,
            list(spec.index),
            list(spec.columns) or None,
            spec.values,
            spec.aggfunc,
            rules=dict(rules) if rules is not None else self.rules(),
            margins=spec.margins,
        )
        return self._stage(
            StagedOutput(
                name=name,
                kind="table",
                content=table_to_csv(result.table),
                spec=spec.to_dict(),
                data=write_data(subset.reset_index(drop=True)),
                data_name=f"{Path(name).stem}-data.parquet",
                description=description,
                result=result,
            )
        )

    def regression(
        self,
        data: pd.DataFrame,
        outcome: str,
        predictors: Sequence[str],
        *,
        name: str,
        model: str = "ols",
        categorical: Sequence[str] = (),
        filters: Sequence[Filter | Sequence[Any] | Mapping[str, Any]] = (),
        dataset: str | None = None,
        description: str = "",
    ) -> StagedOutput:
        """Fit a regression, check it locally and stage its coefficients (CSV) with its specification."""
        spec = RegressionSpec.from_dict(
            {
                "model": model,
                "outcome": outcome,
                "predictors": list(predictors),
                "categorical": list(categorical),
                "dataset": dataset,
                "filters": [Filter.from_value(f).as_dict() for f in filters],
            }
        )
        subset = apply_filters(data, spec.filters)[spec.needed_columns]
        fitted, _warnings = fit_regression(subset, spec)
        return self._stage(
            StagedOutput(
                name=name,
                kind="regression",
                content=coefficients_csv(fitted),
                spec=spec.to_dict(),
                data=write_data(subset.reset_index(drop=True)),
                data_name=f"{Path(name).stem}-data.parquet",
                description=description,
                result=check_regression(fitted, self.rules()),
            )
        )

    def file(self, path: str | os.PathLike[str], kind: str, *, description: str = "") -> StagedOutput:
        """Stage a figure (PNG, SVG, PDF) or text (TXT, MD) file as it is; checkers read it by eye."""
        source = Path(path)
        return self._stage(StagedOutput(source.name, kind, source.read_bytes(), description=description))

    # Requesting release -----------------------------------------------------------------------------

    def request_release(self, title: str, justification: str = "", *, submit: bool = True) -> dict[str, Any]:
        """Create a release request with every staged output and (by default) submit it.

        Returns the server's view of the request: its state and, per file, the server's own findings.
        """
        if not self.staged:
            raise AirlockError(
                0, "nothing is staged; build an output with .table(), .regression() or .file()"
            )
        request = self._call(
            "POST",
            "/releases",
            json={"project_id": self.project_id, "title": title, "justification": justification},
        )
        for output in self.staged:
            if output.dp_result_id is not None:
                self._call(
                    "POST",
                    f"/releases/{request['id']}/dp-results",
                    json={"dp_result_id": output.dp_result_id, "name": output.name},
                )
                continue
            form: dict[str, str] = {
                "name": output.name,
                "kind": output.kind,
                "description": output.description,
            }
            if output.spec:
                form["spec"] = json.dumps(output.spec)
            if output.local_status is not None:
                form["client_check"] = json.dumps({"status": output.local_status})
            files: dict[str, tuple[str, bytes]] = {"content": (output.name, output.content)}
            if output.data is not None and output.data_name:
                files["data"] = (output.data_name, output.data)
            self._call("POST", f"/releases/{request['id']}/files", data=form, files=files)
        if submit:
            request = self._call("POST", f"/releases/{request['id']}/submit")
        self.staged = []
        result: dict[str, Any] = request
        return result

    def status(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/releases/{request_id}")
        return result

    def download(self, request_id: str, path: str | os.PathLike[str]) -> Path:
        """Save a released bundle; check it with ``tre release verify`` or ``verify_bundle``."""
        response = self._client.request("GET", f"/api/v1/releases/{request_id}/bundle", headers=self._headers)
        if response.status_code >= 400:
            raise AirlockError(response.status_code, response.json().get("message", "download refused"))
        target = Path(path)
        target.write_bytes(response.content)
        return target
