"""The CLI, end to end through the typed client against the app (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gigafactory.cli import service_cmds
from gigafactory.cli.main import UserError, app
from gigafactory.client import Client, parse_duration

from .helpers import Api

runner = CliRunner()


@pytest.fixture
def cli(api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Api:
    """Route the CLI's client to the test app; keep credentials in a temp file."""
    api.tree()
    monkeypatch.setenv("GIGAFACTORY_CREDENTIALS", str(tmp_path / "creds.json"))
    monkeypatch.delenv("GIGAFACTORY_TOKEN", raising=False)
    monkeypatch.setattr(service_cmds, "Client",
                        lambda url, token=None: Client(url, token, http=api.client))
    return api


def fails(*args: str) -> str:
    """Run a command that must fail with a one-line user error; return the message."""
    result = runner.invoke(app, list(args), catch_exceptions=True)
    assert isinstance(result.exception, UserError), (result.output, result.exception)
    return str(result.exception)


def run(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=True)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_login_submit_jobs_show_cancel(cli: Api, tmp_path: Path) -> None:
    token = cli.user("ada", ("alpha", "member"))
    assert "not logged in" in fails("jobs")
    out = run("login", "--url", "http://testserver", "--token", token)
    assert "logged in to http://testserver as ada (member@alpha)" in out
    assert json.loads((tmp_path / "creds.json").read_text())["token"] == token
    out = run("submit", "--project", "alpha", "--gpus", "8", "--walltime", "2h", "--json",
              "--", "python", "train.py", "--lr", "3e-4")
    job = json.loads(out)
    assert job["gpus"] == 8 and job["walltime"] == 7200
    assert job["command"] == ["python", "train.py", "--lr", "3e-4"]
    listed = json.loads(run("jobs", "--json"))
    assert [j["id"] for j in listed] == [job["id"]]
    assert "pending" in run("jobs") and "pending" in run("show", str(job["id"]))
    out = run("cancel", str(job["id"]), "--reason", "wrong lr")
    assert f"job {job['id']}: cancelled" in out
    shown = json.loads(run("show", str(job["id"]), "--json"))
    assert shown["events"][-1]["reason"] == "cancelled by ada: wrong lr"


def test_cli_errors_are_one_line(cli: Api) -> None:
    token = cli.user("ada", ("alpha", "member"))
    run("login", "--url", "http://testserver", "--token", token)
    assert fails("submit", "-p", "alpha", "-g", "64", "--", "true").startswith(
        "HTTP 422: gpus: 64 GPUs can never run here")
    assert "cannot read duration 'soon'" in fails("submit", "-p", "alpha", "-t", "soon", "--", "true")
    assert fails("show", "999") == "HTTP 404: no job 999"


def test_admin_commands(cli: Api) -> None:
    run("login", "--url", "http://testserver", "--token", cli.admin)
    assert "created project zeta" in run("admin", "create", "project", "zeta", "--parent", "inv-prod")
    out = run("admin", "user", "zed")
    assert "created user zed; token (shown once): gf_" in out
    assert "granted member on zeta to zed" in run("admin", "grant", "zed", "member", "zeta")
    assert "zeta: 10 GPU-hours, 10.00 left" in run("admin", "budget", "zeta", "10")
    tree = json.loads(run("admin", "tree", "--json"))
    assert {"zeta", "alpha", "eu"} <= {t["name"] for t in tree}
    usage = json.loads(run("usage", "--json"))
    assert {p["project"] for p in usage["projects"]} >= {"zeta", "alpha"}
    ledger = json.loads(run("usage", "--guarantees", "--json"))
    assert [p["partner"] for p in ledger["partners"]] == ["eu", "host", "investor"]
    audit = json.loads(run("admin", "audit", "--json"))
    assert audit[0]["action"] == "project.budget"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("45", 2700),
     ("01:30:00", 5400), ("10:30", 630), ("1-12:00:00", 129600), ("2-6", 194400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_durations() -> None:
    for text in ("", "soon", "1x", "0m", "1:2:3:4"):
        with pytest.raises(ValueError):
            parse_duration(text)
