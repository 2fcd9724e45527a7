"""The client commands' entry points (``maestro.commands``) and their argument parsers.

Each entry point takes the arguments after its name and returns the exit code: 0, 1 for an error (one line on
stderr: the hub's ``reason``, or why it could not be reached), 2 for a usage error, 130 on Ctrl-C. This module
imports only the standard library; what a command needs is imported when it runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from client.errors import CLIError

if TYPE_CHECKING:
    from client.rest import Rest

DEFAULT_REST_URL: Final = "http://127.0.0.1:8000"
_DURATION: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

Handler = Callable[[argparse.Namespace], int]


def consumer(argv: Sequence[str]) -> int:
    """manage consumers, the clusters the hub delivers to (list, get, create, update, delete)"""
    return _main(_consumer_parser(), argv)


def resourcebundle(argv: Sequence[str]) -> int:
    """manage resource bundles (list, get, apply, delete, status [--watch])"""
    return _main(_works_parser("resourcebundle"), argv)


def resource(argv: Sequence[str]) -> int:
    """manage single-manifest resources (list, get, apply, delete, status [--watch])"""
    return _main(_works_parser("resource"), argv)


def mqtt(argv: Sequence[str]) -> int:
    """watch the CloudEvents on consumers' MQTT topics; print a Mosquitto ACL for agents"""
    return _main(_mqtt_parser(), argv)


# -- running ----------------------------------------------------------------------------------------


def _main(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    args = parser.parse_args(list(argv))
    handler: Handler = args.handler
    try:
        return handler(args)
    except CLIError as exc:
        print(f"maestro: {exc.message}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # NB: the reader went away (``| head``); say nothing more and don't let Python complain at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def duration(text: str) -> float:
    """``30s``, ``2m``, ``500ms``, ``1h`` or plain seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30s, 2m or 500ms")
    return float(match[1]) * _UNITS[match[2]]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def _rest(args: argparse.Namespace) -> Rest:
    from client.rest import Rest

    token = args.token
    if args.token_file:
        if token:
            raise CLIError("give --token or --token-file, not both")
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise CLIError(f"cannot read --token-file {args.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise CLIError(f"--token-file {args.token_file} is empty")
    return Rest(args.rest_url, token=token or None, timeout=args.timeout, insecure=args.insecure_skip_verify)


def _with_rest(call: Callable[[Rest, argparse.Namespace], int]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        rest = _rest(args)
        try:
            return call(rest, args)
        finally:
            rest.close()

    return handler


# -- parsers ----------------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--rest-url",
        default=os.environ.get("MAESTRO_REST_URL") or DEFAULT_REST_URL,
        metavar="URL",
        help="the hub's REST API (env MAESTRO_REST_URL; default %(default)s)",
    )
    group.add_argument(
        "--token", default=os.environ.get("MAESTRO_TOKEN"), help="bearer JWT for a hub with auth on (env MAESTRO_TOKEN)"
    )
    group.add_argument(
        "--token-file",
        default=os.environ.get("MAESTRO_TOKEN_FILE"),
        metavar="FILE",
        help="read the bearer JWT from FILE (env MAESTRO_TOKEN_FILE)",
    )
    group.add_argument(
        "--timeout",
        type=duration,
        default=30.0,
        metavar="DURATION",
        help="limit for each request and for --wait, e.g. 30s, 2m (default 30s)",
    )
    group.add_argument(
        "--insecure-skip-verify", action="store_true", help="accept any TLS certificate from the hub (https only)"
    )
    group.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table", help="default: table")
    return common


def _paging(parser: argparse.ArgumentParser, *, consumer: bool) -> None:
    parser.add_argument("--page", type=_positive, default=1, help="page number (default 1)")
    parser.add_argument("--size", type=_positive, default=100, help="items per page (default 100)")
    parser.add_argument("--search", help="the hub's search, e.g. \"name like 'web%%'\" or \"labels.env = 'prod'\"")
    if consumer:
        parser.add_argument("--consumer", metavar="NAME", help="only this consumer's")


def _consumer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maestro consumer",
        description="Manage consumers: the clusters the hub delivers to (one agent each).",
        formatter_class=_Formatter,
        epilog="""examples:
  maestro consumer create cluster1 --label env=prod
  maestro consumer list --search "labels.env = 'prod'"
  maestro consumer get cluster1 -o yaml
  maestro consumer update cluster1 --label tier=gold --label env-
  maestro consumer delete cluster1        # refused while resources target it""",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = _common()

    def handler(name: str) -> Handler:
        def call(rest: Rest, args: argparse.Namespace) -> int:
            from client import consumers

            result: int = getattr(consumers, name)(rest, args)
            return result

        return _with_rest(call)

    p = verbs.add_parser("list", parents=[common], help="list consumers", formatter_class=_Formatter)
    _paging(p, consumer=False)
    p.set_defaults(handler=handler("list_"))
    p = verbs.add_parser("get", parents=[common], help="show one consumer", formatter_class=_Formatter)
    p.add_argument("ref", metavar="NAME|ID")
    p.set_defaults(handler=handler("get"))
    p = verbs.add_parser("create", parents=[common], help="create a consumer", formatter_class=_Formatter)
    p.add_argument("name", metavar="NAME", help="a DNS label: the agent's --consumer-name and its topics' segment")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    p.set_defaults(handler=handler("create"))
    p = verbs.add_parser("update", parents=[common], help="change a consumer's labels", formatter_class=_Formatter)
    p.add_argument("ref", metavar="NAME|ID")
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE|KEY-", help="set, or remove with KEY-; repeatable"
    )
    p.set_defaults(handler=handler("update"))
    p = verbs.add_parser("delete", parents=[common], help="delete a consumer", formatter_class=_Formatter)
    p.add_argument("ref", metavar="NAME|ID")
    p.set_defaults(handler=handler("delete"))
    return parser


def _works_parser(noun: str) -> argparse.ArgumentParser:
    bundle = noun == "resourcebundle"
    what = "resource bundle" if bundle else "single-manifest resource"
    file_help = (
        "YAML or JSON: one manifest, a list of manifests (one bundle), or bundle documents (name, manifests, "
        "manifest_configs, delete_option) or ManifestWorks; - reads stdin"
        if bundle
        else "YAML or JSON: one manifest or several (one resource each), or resource documents (manifest, "
        "update_strategy, delete_option); - reads stdin"
    )
    examples = (
        """examples:
  maestro resourcebundle apply -f nginx.yaml --consumer cluster1 --wait
  maestro resourcebundle apply -f app.yaml --consumer cluster1 --name web-app   # several manifests: one bundle
  maestro resourcebundle list --consumer cluster1 --search "name like 'web%'"
  maestro resourcebundle status web-app --watch
  maestro resourcebundle get web-app -o yaml > web-app.yaml   # edit it, then apply -f web-app.yaml
  maestro resourcebundle delete web-app --wait

NAME is a bundle's name, its id, or the start of its id (tables show 8 characters)."""
        if bundle
        else """examples:
  maestro resource apply -f nginx.yaml --consumer cluster1 --wait
  maestro resource list --consumer cluster1
  maestro resource status 3f28c601 --watch
  maestro resource get 3f28c601 -o json
  maestro resource delete 3f28c601 --wait

Applying a manifest again updates the resource that deploys the same object (apiVersion, kind, namespace,
name) on that consumer. NAME is a resource's name, its id, or the start of its id."""
    )
    parser = argparse.ArgumentParser(
        prog=f"maestro {noun}",
        description=f"Manage {what}s on the hub; the agent of their consumer applies them.",
        formatter_class=_Formatter,
        epilog=examples,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = _common()

    def handler(name: str) -> Handler:
        def call(rest: Rest, args: argparse.Namespace) -> int:
            from client import applying, objects, works

            kind = objects.BUNDLE if bundle else objects.RESOURCE
            if name == "apply":
                return applying.apply_bundles(rest, args) if bundle else applying.apply_resources(rest, args)
            result: int = getattr(works, name)(rest, kind, args)
            return result

        return _with_rest(call)

    p = verbs.add_parser("list", parents=[common], help=f"list {what}s", formatter_class=_Formatter)
    _paging(p, consumer=True)
    p.set_defaults(handler=handler("list_"))
    p = verbs.add_parser("get", parents=[common], help=f"show one {what}", formatter_class=_Formatter)
    p.add_argument("ref", metavar="NAME")
    p.set_defaults(handler=handler("get"))
    p = verbs.add_parser(
        "apply",
        parents=[common],
        help=f"create or update {what}s from a file",
        description=f"Create the {what}s a file describes, or update them if the hub has them already; with "
        "--wait, wait until the agent reports them Applied and Available (a timeout names the failing condition).",
        formatter_class=_Formatter,
        epilog=f"""examples:
  maestro {noun} apply -f nginx.yaml --consumer cluster1 --wait --timeout 2m
  kubectl create deployment web --image=nginx --dry-run=client -o yaml | maestro {noun} apply -f - --consumer c1""",
    )
    p.add_argument("-f", "--filename", dest="file", required=True, metavar="FILE", help=file_help)
    p.add_argument("--consumer", metavar="NAME", help="the target consumer (unless the file names it)")
    if bundle:
        p.add_argument(
            "--name", help="the bundle's name (default: the file's; one manifest: <consumer>-<kind>-<namespace>-<name>)"
        )
    p.add_argument("--wait", action="store_true", help="wait until the agent reports Applied and Available")
    p.set_defaults(handler=handler("apply"), name=None)
    p = verbs.add_parser("delete", parents=[common], help=f"delete a {what}", formatter_class=_Formatter)
    p.add_argument("ref", metavar="NAME")
    p.add_argument("--wait", action="store_true", help="wait until the agent has removed its manifests")
    p.set_defaults(handler=handler("delete"))
    p = verbs.add_parser(
        "status",
        parents=[common],
        help="show the agent's conditions, or follow them",
        description="Show what the agent reported: the conditions, per manifest, with their messages. --watch "
        "prints the current status, then every change as the hub's status stream brings it; a dropped "
        "connection (a hub restart) resumes from the last event seen, without missing or repeating one.",
        formatter_class=_Formatter,
        epilog=f"""examples:
  maestro {noun} status {"web-app" if bundle else "3f28c601"}
  maestro {noun} status --watch --consumer cluster1
  maestro {noun} status {"web-app" if bundle else "3f28c601"} --watch -o json   # one JSON line per event""",
    )
    p.add_argument("ref", metavar="NAME", nargs="?", help="required without --watch")
    p.add_argument("--watch", "-w", action="store_true", help="follow status changes (resumes after a hub restart)")
    p.add_argument("--consumer", metavar="NAME", help="with --watch and no NAME: only this consumer's")
    p.set_defaults(handler=_needs_ref(p, handler("status")))
    return parser


def _needs_ref(parser: argparse.ArgumentParser, handler: Handler) -> Handler:
    def checked(args: argparse.Namespace) -> int:
        if not args.ref and not args.watch:
            parser.error("NAME is required (or --watch to follow every one)")
        return handler(args)

    return checked


def _mqtt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maestro mqtt",
        description="See what travels on the consumers' MQTT topics, and confine agents to their own.",
        formatter_class=_Formatter,
        epilog="""examples:
  maestro mqtt watch --consumer cluster1 --mqtt-config-file hub-mqtt.yaml
  maestro mqtt watch --mqtt-config-file hub-mqtt.yaml -o json | jq .type      # every consumer
  maestro mqtt acl --consumers cluster1,cluster2 > /etc/mosquitto/acl""",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser(
        "watch",
        help="print each CloudEvent on a consumer's sourceevents/agentevents topics",
        formatter_class=_Formatter,
        description="One line per CloudEvent: time, consumer, topic kind, type, resource id, version, sequence id "
        "and what it carries. Both content modes are read (binary needs protocolVersion 5, the default).",
    )
    p.add_argument("--consumer", metavar="NAME", help="one consumer's topics (default: every consumer's, +)")
    p.add_argument(
        "--source", metavar="ID", help="the hub's --source-id (default: from the config's topics, or maestro)"
    )
    p.add_argument(
        "--mqtt-config-file",
        required=True,
        metavar="FILE",
        help="broker config in upstream's YAML (the hub's or an agent's: address, credentials, TLS)",
    )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table", help="json: the whole event per line")
    p.add_argument("--timeout", type=duration, default=10.0, metavar="DURATION", help="to connect (default 10s)")
    p.set_defaults(handler=_mqtt_watch)
    p = verbs.add_parser(
        "acl",
        help="print a Mosquitto ACL confining each agent to its own topics",
        formatter_class=_Formatter,
        description="Print a Mosquitto ACL file: user <consumer>-agent may read its sourceevents and write its "
        "agentevents; the hub's user may read and write every consumer's. The comments say how to make "
        "the password file.",
    )
    p.add_argument("--consumers", required=True, metavar="C1,C2,...", help="the consumers' names")
    p.add_argument("--source", default="maestro", metavar="ID", help="the hub's --source-id (default maestro)")
    p.add_argument("--hub-user", default="maestro", metavar="USER", help="the hub's MQTT user (default maestro)")
    p.set_defaults(handler=_mqtt_acl)
    return parser


def _mqtt_watch(args: argparse.Namespace) -> int:
    from client import mqtt_watch

    return mqtt_watch.run(args)


def _mqtt_acl(args: argparse.Namespace) -> int:
    from client import mqtt_acl
    from protocol.errors import ProtocolError

    names = [c.strip() for c in args.consumers.split(",") if c.strip()]
    if not names:
        raise CLIError("--consumers names no consumer")
    if not args.hub_user or any(c.isspace() for c in args.hub_user):
        raise CLIError(f"--hub-user {args.hub_user!r} must be one word")
    try:
        text = mqtt_acl.render(names, source=args.source, hub_user=args.hub_user)
    except ProtocolError as exc:
        raise CLIError(str(exc)) from None
    sys.stdout.write(text)
    return 0
