"""The ``maestro`` command: ``server``, ``migration`` (upstream's names), ``admin rebuild``, and the subcommands
other packages provide through ``maestro.commands`` entry points: ``agent``, and the client's ``consumer``,
``resourcebundle``, ``resource`` and ``mqtt``.

A plugin's command line reaches it before anything of the hub is imported (the hub's modules are imported inside
the functions that use them), so ``maestro resourcebundle list`` pays for neither the hub nor the agent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server import settings as settings_mod

DISTRIBUTION = "maestro-py"


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser(plugins: dict[str, metadata.EntryPoint], *, describe: bool) -> argparse.ArgumentParser:
    from server import settings as settings_mod

    parser = argparse.ArgumentParser(
        prog="maestro", description="Maestro in Python: the hub, its agent and a command-line client"
    )
    parser.add_argument("--version", action="version", version=f"maestro {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server = sub.add_parser(
        "server", help="run the hub: REST, gRPC, dispatch and status ingest", usage="%(prog)s [OPTIONS]"
    )
    settings_mod.add_arguments(server)
    sub.add_parser("agent", help="run an agent (see: maestro agent --help)", add_help=False)
    migration = sub.add_parser("migration", help="apply database migrations (idempotent)")
    settings_mod.add_arguments(migration, only={"db_url", "data_dir", "log_level", "log_format"})
    admin = sub.add_parser("admin", help="operator tasks on the hub's database: rebuild")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True, metavar="TASK")
    rebuild = admin_sub.add_parser(
        "rebuild",
        help="compare the resources table with the event logs (--dry-run) or rebuild it from them (--apply)",
        description="The event logs are the truth and the resources table their projection. --dry-run prints every "
        "resource whose row differs from what the logs say (exit status 3 if any, 0 if none); --apply rebuilds "
        "those rows in one transaction (writers wait meanwhile) and wakes the dispatchers for every changed spec.",
    )
    mode = rebuild.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="report the differences, change nothing")
    mode.add_argument("--apply", action="store_true", help="rebuild the differing rows from the logs")
    settings_mod.add_arguments(rebuild, only={"db_url", "data_dir", "log_level", "log_format"})
    agent_config = sub.add_parser(
        "agent-config",
        help="print an agent's broker config for the embedded broker, with a fresh password",
        description="Create (or renew: the old password stops working) the embedded broker's user of one "
        "consumer's agent and print that agent's broker config. Example: "
        "maestro agent-config --consumer cluster1 > agent-mqtt.yaml",
    )
    agent_config.add_argument("--consumer", required=True, help="the consumer whose agent logs in")
    settings_mod.add_arguments(
        agent_config, only={"data_dir", "source_id", "embedded_mqtt_port", "log_level", "log_format"}
    )
    for name, entry in plugins.items():
        if name not in sub.choices:
            sub.add_parser(name, help=_summary(entry, name) if describe else None, add_help=False)
    return parser


def _summary(entry: metadata.EntryPoint, name: str) -> str:
    """A plugin's one-line help: the first line of its entry point's docstring (loaded only for ``--help``)."""
    try:
        doc = entry.load().__doc__ or ""
    except Exception:  # NB: a broken plugin must not break the hub's help.
        doc = ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first or f"see: maestro {name} --help"


def _plugins() -> dict[str, metadata.EntryPoint]:
    """Subcommands other packages provide (``maestro agent``, ``maestro consumer``…), without the hub importing
    them."""
    return {ep.name: ep for ep in metadata.entry_points(group="maestro.commands")}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = _plugins()
    if argv and argv[0] in plugins:
        return int(plugins[argv[0]].load()(argv[1:]))
    from server import logging_setup
    from server import settings as settings_mod

    parser = _parser(plugins, describe=not argv or argv[0] in ("-h", "--help"))
    args = parser.parse_args(argv)
    try:
        settings = settings_mod.from_sources(args)
    except ValueError as exc:
        print(f"maestro: {exc}", file=sys.stderr)
        return 2
    logging_setup.configure(
        settings.logging.log_level, settings.logging.log_format, replica=settings.transport.client_id
    )
    if args.command == "migration":
        return _migration(settings)
    if args.command == "admin":
        return _rebuild(settings, apply=args.apply)
    if args.command == "agent-config":
        return _agent_config(settings, args.consumer)
    from server import eventloop, runner

    try:
        return eventloop.run(runner.run(settings))
    except runner.StartupError as exc:
        print(f"maestro server: {exc}", file=sys.stderr)
        return 1


def _migration(settings: settings_mod.Settings) -> int:
    from server import dsn, embedded, migrate

    with embedded.database_url(settings.database.db_url, settings.database.data_dir) as url:
        try:
            count = migrate.apply(url)
        except Exception as exc:
            print(f"maestro migration: failed on {dsn.redact(url)}: {exc}", file=sys.stderr)
            return 1
    print(f"applied {count} migration(s); the schema is up to date")
    return 0


def _rebuild(settings: settings_mod.Settings, *, apply: bool) -> int:
    import asyncio
    import collections

    from server import dsn, embedded
    from server.services import rebuild
    from server.store import db

    async def run(url: str) -> rebuild.Outcome:
        database = db.database(url, max_size=2)
        await database.connect()
        try:
            return await rebuild.rebuild(database, apply=apply)
        finally:
            await database.disconnect()

    with embedded.database_url(settings.database.db_url, settings.database.data_dir) as url:
        try:
            outcome = asyncio.run(run(url))
        except Exception as exc:
            print(f"maestro admin rebuild: failed on {dsn.redact(url)}: {exc}", file=sys.stderr)
            return 1
    for difference in outcome.differences:
        print(rebuild.describe(difference))
    counts = collections.Counter(difference.verdict for difference in outcome.differences)
    found = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())) or "none"
    if outcome.applied is None:
        print(f"differences between the resources table and the event logs: {found}")
        return 3 if outcome.differences else 0
    done = ", ".join(f"{n} {what}" for what, n in outcome.applied.items())
    print(f"differences found: {found}; rebuilt from the logs: {done}")
    return 0


def _agent_config(settings: settings_mod.Settings, consumer: str) -> int:
    from server import embedded
    from server.dispatch import broker_users, embedded_mqtt
    from server.services import validation

    if not validation.is_dns1123_label(consumer):
        print(f"maestro agent-config: {consumer!r} is not a valid consumer name (a DNS-1123 label)", file=sys.stderr)
        return 2
    users = broker_users.Users(embedded_mqtt.users_dir(embedded.data_dir(settings.database.data_dir)))
    name, password = users.new_agent(consumer)
    topics = f"sources/{settings.transport.source_id}/consumers/{consumer}"
    print(
        f"# broker config of {consumer}'s agent for the embedded broker (the password is shown only now)\n"
        f"brokerHost: 127.0.0.1:{settings.transport.embedded_mqtt_port}\n"
        f"username: {name}\n"
        f"password: {password}\n"
        "protocolVersion: 3\n"
        "topics:\n"
        f"  sourceEvents: {topics}/sourceevents\n"
        f"  agentEvents: {topics}/agentevents"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
