"""What every command group shares: the click context object, the consoles and the engine context."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from sync.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


class _Ctx:
    def __init__(self, config_file: str | None) -> None:
        self.config_file = config_file
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    def engine(self, *, check: bool = True) -> Any:
        from sync.store.db import check_schema, make_engine

        engine = make_engine(self.settings.database_url)
        if check:
            check_schema(engine)
        return engine


pass_ctx = click.make_pass_decorator(_Ctx)


def _context(ctx: _Ctx) -> Any:
    from sync.context import SyncContext

    return SyncContext.from_settings(ctx.settings)
