"""Control-plane settings: one pydantic-settings object, read from the environment and a file.

Precedence (highest first): explicit arguments, ``GIGAFACTORY_*`` environment variables,
the TOML file named by ``GIGAFACTORY_CONFIG`` (default ``./gigafactory.toml`` when it
exists), then the defaults below. Example file::

    database_url = "postgresql+psycopg://gf@db/gigafactory"
    facility = "dev-32"
    budget_exhausted = "hold"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATABASE_URL = "sqlite:///./gigafactory.db"


def config_file() -> Path:
    """The settings file: ``$GIGAFACTORY_CONFIG`` or ``./gigafactory.toml``."""
    return Path(os.environ.get("GIGAFACTORY_CONFIG", "gigafactory.toml"))


class Settings(BaseSettings):
    """Everything the control plane can be told. Field names map to ``GIGAFACTORY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GIGAFACTORY_", extra="ignore", frozen=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL; sqlite:///path (embedded default) or postgresql://...",
    )
    facility: str = Field(default="dev-32", description="facility preset name")
    policy: str = Field(default="gigafactory", description="scheduling policy name")
    executor: str = Field(default="local", description="executor name (EXECUTORS registry)")
    twin_speed: float = Field(
        default=60.0, gt=0, le=1e6,
        description="twin executor: simulated seconds per real second",
    )
    state_dir: Path = Field(
        default=Path("gigafactory-state"),
        description="where executors keep job logs and checkpoint directories",
    )
    scheduler_enabled: bool = Field(default=True, description="run the scheduler loop in-process")
    cycle_interval: float = Field(default=2.0, gt=0, le=3600, description="seconds between cycles")
    lease_ttl: float = Field(default=30.0, gt=0, description="seconds a claimed work item is leased")
    budget_exhausted: Literal["refuse", "hold"] = Field(
        default="refuse",
        description="on submit to a project without budget left: refuse it, or accept it held",
    )
    auth_cache_ttl: float = Field(
        default=5.0, ge=0, le=300,
        description="s a resolved token, and a project looked up for submissions, are cached "
        "per process; revocations, budgets and tenant changes made through another replica "
        "take effect within this time (0: no cache)",
    )
    token_ttl_days: int = Field(default=90, ge=1, le=3650, description="default API token life")
    default_grace: float = Field(default=60.0, gt=0, le=3600, description="SIGTERM grace, s")
    api_threads: int = Field(default=4, ge=1, le=256, description="request threads per process")
    submit_batch: int = Field(
        default=64, ge=1, le=10_000,
        description="most submissions one process writes in one transaction (group commit); "
        "1 writes each on its own",
    )
    submit_linger: float = Field(
        default=0.001, ge=0, le=0.1,
        description="s the submission writer waits for more submissions before writing a "
        "batch, only while batches hold more than one (0: never wait)",
    )
    submit_queue: int = Field(
        default=4096, ge=1, le=1_000_000,
        description="most submissions one process holds waiting to be written; beyond "
        "it a submission gets 503 (retry with its Idempotency-Key)",
    )
    page_size: int = Field(default=50, ge=1, le=1000, description="default list page size")
    max_page_size: int = Field(default=500, ge=1, le=10000, description="largest page a client may ask for")
    demo: bool = Field(default=False, description="seed demo tenants and keep demo jobs flowing")

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, url: str) -> str:
        """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        if not (url.startswith("sqlite") or url.startswith("postgresql+")):
            raise ValueError(
                f"database_url {url!r}: expected sqlite:///<path> or postgresql://<host>/<db>"
            )
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
