"""The ``maestro`` command: ``server``, ``migration`` (upstream's names), and ``agent`` from the agent package."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib import metadata

from server import dsn, logging_setup, migrate
from server import settings as settings_mod


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maestro", description="Maestro hub in Python")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run the hub: REST, gRPC, dispatch and status ingest")
    settings_mod.add_arguments(server)
    sub.add_parser("agent", help="run an agent (see: maestro agent --help)", add_help=False)
    migration = sub.add_parser("migration", help="apply database migrations (idempotent)")
    settings_mod.add_arguments(migration, only={"db_url", "data_dir", "log_level", "log_format"})
    return parser


def _plugins() -> dict[str, metadata.EntryPoint]:
    """Subcommands other packages provide (``maestro agent``), without the hub importing them."""
    return {ep.name: ep for ep in metadata.entry_points(group="maestro.commands")}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = _plugins()
    if argv and argv[0] in plugins:
        return int(plugins[argv[0]].load()(argv[1:]))
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_mod.from_sources(args)
    except ValueError as exc:
        print(f"maestro: {exc}", file=sys.stderr)
        return 2
    logging_setup.configure(settings.log_level, settings.log_format)
    if args.command == "migration":
        return _migration(settings)
    from server import runner

    try:
        return asyncio.run(runner.run(settings))
    except runner.StartupError as exc:
        print(f"maestro server: {exc}", file=sys.stderr)
        return 1


def _migration(settings: settings_mod.Settings) -> int:
    from server import embedded

    pg = None
    url = settings.db_url
    if not url:
        pg = embedded.EmbeddedPostgres(embedded.data_dir(settings.data_dir))
        url = pg.start()
    try:
        count = migrate.apply(url)
    except Exception as exc:
        print(f"maestro migration: failed on {dsn.redact(url)}: {exc}", file=sys.stderr)
        return 1
    finally:
        if pg is not None:
            pg.stop()
    print(f"applied {count} migration(s); the schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
