"""Alembic migrations of the schema; run them with ``webhooks db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import settings

HERE = Path(__file__).resolve().parent


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade() -> list[str]:
    """Bring every configured database to the newest schema; harmless when already there."""
    urls = list(dict.fromkeys([settings.DATABASE_URL, settings.AUDIT_DATABASE_URL]))
    for url in urls:
        command.upgrade(config(url), "head")
    return urls
