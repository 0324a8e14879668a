"""Settings (environment over file over defaults), first start of ``serve``, and the
audit log covering every mutating endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gigafactory.service.serve import prepare
from gigafactory.service.settings import Settings

from .helpers import Api


def test_settings_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gf.toml"
    path.write_text('budget_exhausted = "hold"\ncycle_interval = 5.0\n'
                    'database_url = "postgresql://gf@db.example/gigafactory"\n')
    monkeypatch.setenv("GIGAFACTORY_CONFIG", str(path))
    monkeypatch.delenv("GIGAFACTORY_DATABASE_URL", raising=False)
    s = Settings()
    assert s.budget_exhausted == "hold" and s.cycle_interval == 5.0
    assert s.database_url == "postgresql+psycopg://gf@db.example/gigafactory"
    monkeypatch.setenv("GIGAFACTORY_CYCLE_INTERVAL", "0.5")
    assert Settings().cycle_interval == 0.5
    monkeypatch.setenv("GIGAFACTORY_DATABASE_URL", "mysql://nope")
    with pytest.raises(ValueError, match="expected sqlite:///<path> or postgresql://"):
        Settings()


def test_serve_first_start_migrates_and_prints_admin_token(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/gigafactory.db",
                        state_dir=tmp_path / "state", scheduler_enabled=False)
    app, banner = prepare(demo=False, host="127.0.0.1", port=8000, settings=settings)
    assert (tmp_path / "gigafactory.db").is_file()
    assert "first start: created user 'admin'" in banner and "--token gf_" in banner
    app.state.ctx.engine.dispose()
    _, again = prepare(demo=False, host="127.0.0.1", port=8000, settings=settings)
    assert "first start" not in again  # the token is shown once


def _mutations(api: Api) -> list[tuple[str, str, Any]]:
    """One valid call per mutating endpoint (method, path, body), in a workable order."""
    job = api.job(api.admin, "alpha", 1)["id"]
    job2 = api.job(api.admin, "alpha", 1)["id"]
    return [
        ("POST", "/v1/users", {"name": "newbie"}),
        ("PATCH", "/v1/users/newbie", {"email": "n@example.eu"}),
        ("POST", "/v1/memberships", {"user": "newbie", "tenant": "alpha", "role": "member"}),
        ("DELETE", "/v1/memberships/{membership}", None),
        ("POST", "/v1/tokens", {"name": "t"}),
        ("DELETE", "/v1/tokens/{token}", None),
        ("POST", "/v1/partners", {"name": "p2"}),
        ("PATCH", "/v1/partners/p2", {"title": "P2"}),
        ("POST", "/v1/programmes", {"name": "g2", "parent": "p2"}),
        ("PATCH", "/v1/programmes/g2", {"weight": 2}),
        ("POST", "/v1/projects", {"name": "j2", "parent": "g2"}),
        ("PATCH", "/v1/projects/j2", {"title": "J2"}),
        ("PUT", "/v1/projects/j2/budget", {"gpu_hours": 10}),
        ("DELETE", "/v1/projects/j2", None),
        ("DELETE", "/v1/programmes/g2", None),
        ("DELETE", "/v1/partners/p2", None),
        ("POST", "/v1/jobs", {"project": "alpha", "gpus": 1, "command": ["true"]}),
        ("POST", f"/v1/jobs/{job}/hold", None),
        ("POST", f"/v1/jobs/{job}/release", None),
        ("POST", f"/v1/jobs/{job}/cancel", None),
        ("POST", f"/v1/jobs/{job2}/requeue", None),  # refused (pending): not audited
    ]


def test_every_mutating_endpoint_is_audited(api: Api) -> None:
    api.tree()
    spec = api.client.get("/openapi.json").json()
    mutating = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops
                if m in ("post", "put", "patch", "delete")}
    calls = _mutations(api)
    covered = set()
    ids: dict[str, Any] = {}
    for method, path, body in calls:
        path = path.format(**ids)
        before = api.get("/v1/audit", api.admin, params={"limit": 1}).json()["items"][0]["id"]
        r = api.client.request(method, path, json=body, headers=api.h(api.admin))
        after = api.get("/v1/audit", api.admin, params={"limit": 1}).json()["items"][0]
        if r.status_code < 400:
            assert after["id"] == before + 1, f"{method} {path} wrote no audit entry"
            assert after["actor"] == "admin" and after["at"]
        else:
            assert after["id"] == before, f"refused {method} {path} must not be audited"
        if path == "/v1/memberships" and method == "POST":
            ids["membership"] = r.json()["id"]
        if path == "/v1/tokens" and method == "POST":
            ids["token"] = r.json()["id"]
        template = next(p for m, p in mutating if m == method and _matches(p, path))
        covered.add((method, template))
    assert covered == mutating


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


def test_every_setting_is_documented_with_its_default() -> None:
    from pathlib import Path

    from gigafactory.service.settings import Settings

    doc = (Path(__file__).resolve().parents[2] / "docs" / "control-plane.md").read_text()
    for name, field in Settings.model_fields.items():
        default = field.default if isinstance(field.default, str) else str(field.default)
        row = f"| `{name}` | `{default}` | {field.description} |"
        assert row in doc, f"docs/control-plane.md lacks or misstates setting {name}: {row}"
