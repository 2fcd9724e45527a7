"""``maestro consumer|resourcebundle|resource`` against a real hub (``maestro server`` on PostgreSQL and Mosquitto)
with the product's simulated agent answering: tables and JSON, apply/update/delete with ``--wait``, a wait that
times out, a failing condition's message, and an unreachable hub."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.simulator import SimulatedAgent
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.postgres import PostgresServer, free_port
from tests.integration.client_support import NGINX, database, environment, hub_process, maestro, next_line, spawn, stop
from tests.integration.dispatch_support import HubProcess, simulated_agent

pytestmark = pytest.mark.timeout(30)

SOURCE = f"src-cli-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def module_db(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    url, drop = database(pg_server, pg_template)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="module")
async def hub(
    tmp_path_factory: pytest.TempPathFactory, module_db: str, mosquitto: MosquittoServer
) -> AsyncIterator[HubProcess]:
    process = hub_process(tmp_path_factory.mktemp("hub"), db_url=module_db, mosquitto=mosquitto, source=SOURCE)
    process.start()
    try:
        await process.wait_ready()
        yield process
    finally:
        assert process.stop() == 0, process.output()[-3000:]


@pytest.fixture
def url(hub: HubProcess) -> str:
    return f"http://127.0.0.1:{hub.http}"


@pytest.fixture
def consumer() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def agent_for(mosquitto: MosquittoServer, consumer: str, **options: Any) -> SimulatedAgent:
    config = mosquitto.config(source=SOURCE, consumer=consumer)
    return simulated_agent(config, source=SOURCE, consumer=consumer, client_id=f"agent-{consumer}", **options)


def write(path: Path, document: Any) -> str:
    path.write_text(yaml.safe_dump_all(document) if isinstance(document, list) else yaml.safe_dump(document))
    return str(path)


def one_line_error(result: Any, *needles: str) -> str:
    assert result.code == 1, (result.out, result.err)
    assert len(result.err_lines) == 1, result.err
    line: str = result.err_lines[0]
    assert line.startswith("maestro: ")
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in line, line
    return line


async def test_consumer_commands(url: str, consumer: str) -> None:
    created = await maestro("consumer", "create", consumer, "--label", "env=dev", rest_url=url)
    assert created.code == 0, created.err
    assert created.out.startswith(f"consumer/{consumer} created (id ")

    table = await maestro("consumer", "list", "--search", f"name = '{consumer}'", rest_url=url, COLUMNS="80")
    header, row = table.out.splitlines()
    assert header.split() == ["NAME", "ID", "LABELS", "AGE"]
    assert row.split()[0] == consumer
    assert "env=dev" in row
    assert all(len(line) <= 80 for line in table.out.splitlines())

    updated = await maestro("consumer", "update", consumer, "--label", "tier=gold", "--label", "env-", rest_url=url)
    assert updated.code == 0, updated.err
    got = json.loads((await maestro("consumer", "get", consumer, "-o", "json", rest_url=url)).out)
    assert got["name"] == consumer
    assert got["labels"] == {"tier": "gold"}
    by_id = yaml.safe_load((await maestro("consumer", "get", got["id"], "-o", "yaml", rest_url=url)).out)
    assert by_id["id"] == got["id"]

    listed = json.loads((await maestro("consumer", "list", "--size", "1", "-o", "json", rest_url=url)).out)
    assert listed["kind"] == "ConsumerList"
    assert listed["size"] == 1
    assert listed["total"] >= 1

    assert (await maestro("consumer", "delete", consumer, rest_url=url)).out.strip() == f"consumer/{consumer} deleted"
    one_line_error(await maestro("consumer", "get", consumer, rest_url=url), f"consumer '{consumer}' not found")
    # The hub's own reason, as it said it: a duplicate name.
    await maestro("consumer", "create", consumer, rest_url=url)
    one_line_error(await maestro("consumer", "create", consumer, rest_url=url), "already exists")
    await maestro("consumer", "delete", consumer, rest_url=url)


async def test_bundle_apply_wait_status_update_delete(
    url: str, consumer: str, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    assert (await maestro("consumer", "create", consumer, rest_url=url)).code == 0
    manifest = write(tmp_path / "nginx.yaml", NGINX)
    async with agent_for(mosquitto, consumer):
        applied = await maestro(
            "resourcebundle", "apply", "-f", manifest, "--consumer", consumer, "--wait", rest_url=url
        )
        assert applied.code == 0, applied.err
        name = f"{consumer}-deployment-default-nginx"
        assert applied.out.splitlines() == [
            f"resourcebundle/{name} created (version 1)",
            f"resourcebundle/{name} version 1: Applied=True Available=True",
        ]

        table = await maestro("resourcebundle", "list", "--consumer", consumer, rest_url=url, COLUMNS="80")
        header, row = table.out.splitlines()
        assert header.split() == ["NAME", "CONSUMER", "VERSION", "STATUS", "AGE"]
        assert row.split()[:4] == [name, consumer, "1", "Available"]
        assert all(len(line) <= 80 for line in table.out.splitlines())

        got = json.loads((await maestro("resourcebundle", "get", name, "-o", "json", rest_url=url)).out)
        assert got["manifests"] == [NGINX]
        assert got["status"]["ObservedVersion"] == 1
        prefix = got["id"][:8]
        assert (
            json.loads((await maestro("resourcebundle", "get", prefix, "-o", "json", rest_url=url)).out)["id"]
            == got["id"]
        )

        status = await maestro("resourcebundle", "status", name, rest_url=url)
        assert "Status:    Available" in status.out
        assert "Applied=True AppliedManifestWorkComplete: Apply manifest work complete" in status.out
        assert "Manifest 0: Deployment default/nginx" in status.out
        assert all(len(line) <= 80 for line in status.out.splitlines())

        again = await maestro("resourcebundle", "apply", "-f", manifest, "--consumer", consumer, rest_url=url)
        assert again.out.strip() == f"resourcebundle/{name} unchanged (version 1)"

        # The bundle as `get -o yaml` prints it, edited, applies back: PUT with the version just read.
        edited = {**got, "manifests": [{**NGINX, "spec": {**NGINX["spec"], "replicas": 3}}]}
        changed = await maestro(
            "resourcebundle",
            "apply",
            "-f",
            write(tmp_path / "edited.yaml", edited),
            "--wait",
            "-o",
            "json",
            rest_url=url,
        )
        assert changed.code == 0, changed.err
        final = json.loads(changed.out)
        assert final["version"] == 2
        assert final["status"]["ObservedVersion"] == 2

        deleted = await maestro("resourcebundle", "delete", name, "--wait", rest_url=url)
        assert deleted.out.strip() == f"resourcebundle/{name} deleted", deleted.err
        one_line_error(await maestro("resourcebundle", "get", name, rest_url=url), "not found")
    assert (await maestro("consumer", "delete", consumer, rest_url=url)).code == 0


async def test_bundle_of_several_manifests_and_manifestwork(
    url: str, consumer: str, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    await maestro("consumer", "create", consumer, rest_url=url)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "namespace": "default"}}
    several = write(tmp_path / "app.yaml", [NGINX, service])
    unnamed = await maestro("resourcebundle", "apply", "-f", several, "--consumer", consumer, rest_url=url)
    one_line_error(unnamed, "a bundle of 2 manifests needs a name")

    work = {
        "apiVersion": "work.open-cluster-management.io/v1",
        "kind": "ManifestWork",
        "metadata": {"name": f"{consumer}-web", "namespace": consumer, "labels": {"app": "web"}},
        "spec": {"workload": {"manifests": [NGINX, service]}, "deleteOption": {"propagationPolicy": "Orphan"}},
    }
    async with agent_for(mosquitto, consumer):
        result = await maestro(
            "resourcebundle", "apply", "-f", "-", "-o", "json", "--wait", rest_url=url, stdin=json.dumps(work)
        )
        assert result.code == 0, result.err
        bundle = json.loads(result.out)
        assert bundle["name"] == f"{consumer}-web"
        assert bundle["consumer_name"] == consumer
        assert len(bundle["manifests"]) == 2
        assert bundle["delete_option"]["propagationPolicy"] == "Orphan"
        assert bundle["metadata"]["labels"] == {"app": "web"}
        await maestro("resourcebundle", "delete", f"{consumer}-web", "--wait", rest_url=url)


async def test_resource_apply_list_get_delete(
    url: str, consumer: str, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    await maestro("consumer", "create", consumer, rest_url=url)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "default"}}
    both = write(tmp_path / "both.yaml", [NGINX, config])
    async with agent_for(mosquitto, consumer):
        applied = await maestro("resource", "apply", "-f", both, "--consumer", consumer, "--wait", rest_url=url)
        assert applied.code == 0, applied.err
        lines = applied.out.splitlines()
        assert lines[0].endswith("(Deployment default/nginx) created (version 1)")
        assert lines[1].endswith("(ConfigMap default/web) created (version 1)")
        assert lines[2].endswith("version 1: Applied=True Available=True StatusFeedbackSynced=True")

        table = await maestro("resource", "list", "--consumer", consumer, rest_url=url, COLUMNS="80")
        header, *rows = table.out.splitlines()
        assert header.split() == ["NAME", "CONSUMER", "OBJECT", "VERSION", "STATUS", "AGE"]
        assert sorted(" ".join(r.split()[2:4]) for r in rows) == ["ConfigMap default/web", "Deployment default/nginx"]
        assert all(len(line) <= 80 for line in table.out.splitlines())

        # Applying the same object again updates the resource that deploys it: found by what it deploys.
        scaled = {**NGINX, "spec": {**NGINX["spec"], "replicas": 2}}
        result = await maestro(
            "resource", "apply", "-f", write(tmp_path / "scaled.yaml", scaled), "--consumer", consumer,
            "--wait", "-o", "json", rest_url=url,
        )  # fmt: skip
        assert result.code == 0, result.err
        updated = json.loads(result.out)
        assert updated["version"] == 2
        assert updated["manifest"]["spec"]["replicas"] == 2
        assert updated["status"]["ReconcileStatus"]["ObservedVersion"] == 2

        status = await maestro("resource", "status", updated["id"][:8], rest_url=url)
        assert "Status:    Available" in status.out
        assert 'Object status: {"availableReplicas": 2' in status.out

        # A watch of one resource: its current status, then the next change, in the stream's (bundle) shape.
        watcher = await spawn("resource", "status", updated["id"][:8], "--watch", "-o", "json", rest_url=url)
        try:
            current = json.loads(await next_line(watcher.stdout))
            assert (current["type"], current["object"]["version"]) == ("Current", 2)
            assert current["object"]["status"]["ObservedVersion"] == 2
            scaled = {**NGINX, "spec": {**NGINX["spec"], "replicas": 3}}
            again = await maestro(
                "resource", "apply", "-f", write(tmp_path / "three.yaml", scaled), "--consumer", consumer, rest_url=url
            )
            assert again.out.rstrip().endswith("(Deployment default/nginx) configured (version 3)")
            change = json.loads(await next_line(watcher.stdout))
            assert (change["type"], change["object"]["id"], change["object"]["version"]) == (
                "StatusUpdate",
                updated["id"],
                3,
            )
        finally:
            await stop(watcher)

        listed = json.loads((await maestro("resource", "list", "--consumer", consumer, "-o", "json", rest_url=url)).out)
        assert listed["kind"] == "ResourceList"
        assert listed["total"] == 2
        got = json.loads((await maestro("resource", "get", updated["id"][:10], "-o", "json", rest_url=url)).out)
        assert got["id"] == updated["id"]

        # The hub lists bundles only under resource-bundles; the CLI still finds a single resource as a bundle.
        bundles = json.loads(
            (await maestro("resourcebundle", "list", "--consumer", consumer, "-o", "json", rest_url=url)).out
        )
        assert (bundles["total"], bundles["items"]) == (0, [])
        for ref in (updated["id"][:8], updated["name"]):
            as_bundle = await maestro("resourcebundle", "get", ref, "-o", "json", rest_url=url)
            found = json.loads(as_bundle.out)
            assert (found["id"], found["manifests"][0]["kind"]) == (updated["id"], "Deployment"), as_bundle.err
        watcher = await spawn("resource", "status", "--watch", "--consumer", consumer, "-o", "json", rest_url=url)
        try:
            currents = [json.loads(await next_line(watcher.stdout)) for _ in listed["items"]]
            assert {(c["type"], c["object"]["id"]) for c in currents} == {("Current", i["id"]) for i in listed["items"]}
        finally:
            await stop(watcher)

        for item in listed["items"]:
            deleted = await maestro("resource", "delete", item["id"], "--wait", rest_url=url)
            assert deleted.code == 0, deleted.err
        assert (
            json.loads((await maestro("resource", "list", "--consumer", consumer, "-o", "json", rest_url=url)).out)[
                "total"
            ]
            == 0
        )


async def test_wait_times_out_without_an_agent(url: str, consumer: str, tmp_path: Path) -> None:
    await maestro("consumer", "create", consumer, rest_url=url)
    manifest = write(tmp_path / "nginx.yaml", NGINX)
    result = await maestro(
        "resourcebundle", "apply", "-f", manifest, "--consumer", consumer, "--wait", "--timeout", "2s", rest_url=url
    )
    assert result.out.strip().endswith("created (version 1)")  # written, then waited for in vain
    one_line_error(result, "timed out after 2s", "version 1", f"no status from the agent of consumer '{consumer}'")
    gone = await maestro(
        "resourcebundle", "delete", f"{consumer}-deployment-default-nginx", "--wait", "--timeout", "1s", rest_url=url
    )
    one_line_error(gone, "to be deleted")


async def test_wait_names_the_failing_condition(
    url: str, consumer: str, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    await maestro("consumer", "create", consumer, rest_url=url)
    manifest = write(tmp_path / "nginx.yaml", NGINX)
    async with agent_for(mosquitto, consumer, failure_rate=1.0):
        result = await maestro(
            "resourcebundle", "apply", "-f", manifest, "--consumer", consumer, "--wait", "--timeout", "3s", rest_url=url
        )
        one_line_error(result, "Applied=False (AppliedManifestWorkFailed): Simulated apply failure")
        listed = await maestro("resourcebundle", "list", "--consumer", consumer, rest_url=url)
        assert listed.out.splitlines()[1].split()[3] == "Failed"


async def test_bad_input_is_one_line(url: str, consumer: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    one_line_error(
        await maestro("resourcebundle", "apply", "-f", str(bad), "--consumer", "c", rest_url=url),
        "neither JSON nor YAML",
    )
    one_line_error(await maestro("resource", "apply", "-f", str(tmp_path / "none.yaml"), rest_url=url), "cannot read")
    nameless = write(tmp_path / "x.yaml", {"apiVersion": "v1", "kind": "ConfigMap"})
    one_line_error(await maestro("resource", "apply", "-f", nameless, "--consumer", "c", rest_url=url), "metadata.name")
    no_consumer = write(tmp_path / "y.yaml", NGINX)
    one_line_error(await maestro("resource", "apply", "-f", no_consumer, rest_url=url), "give --consumer")
    # The hub's validation reason for a consumer that does not exist.
    one_line_error(
        await maestro("resource", "apply", "-f", no_consumer, "--consumer", consumer, rest_url=url), "does not exist"
    )
    usage = await maestro("resourcebundle", "status", rest_url=url)
    assert usage.code == 2
    assert "NAME is required" in usage.err


async def test_unreachable_hub_is_one_line() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for args in (("consumer", "list"), ("resourcebundle", "get", "x"), ("resource", "status", "x", "--watch")):
        one_line_error(await maestro(*args, rest_url=nowhere), f"cannot reach the hub at {nowhere}", "refused")
    one_line_error(await maestro("consumer", "list", "--rest-url", "ftp://x"), "is not an http")


async def test_rest_commands_import_neither_hub_nor_agent(url: str) -> None:
    """The CLI's start-up cost: ``maestro resourcebundle list`` loads the client and the standard library only."""
    process = await asyncio.create_subprocess_exec(
        *argv_with("-X", "importtime"), "resourcebundle", "list", "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment(url),
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["kind"] == "ResourceBundleList"
    modules = {line.rsplit("|", 1)[1].strip() for line in err.decode().splitlines() if line.startswith("import time:")}
    assert "client.rest" in modules
    heavy = ("agent", "kopf", "grpc", "httpx", "starlette", "gmqtt", "databases", "asyncpg", "protocol", "yaml")
    loaded = sorted(m for m in modules if m.split(".")[0] in heavy or (m.startswith("server.") and m != "server.cli"))
    assert loaded == []


async def test_version_and_help() -> None:
    version = await maestro("--version")
    assert version.code == 0
    assert version.out.strip() == f"maestro {metadata.version('maestro-py')}"
    top = await maestro("--help")
    listed = {line.split()[0] for line in top.out.splitlines() if line.startswith("    ") and line.split()}
    assert {"server", "agent", "migration", "consumer", "resourcebundle", "resource", "mqtt"} <= listed
    assert "manage resource bundles" in top.out
    for command in (("consumer",), ("resourcebundle",), ("resource",), ("mqtt",), ("resource", "apply")):
        shown = await maestro(*command, "--help")
        assert shown.code == 0
        assert "examples:" in shown.out


def argv_with(*flags: str) -> list[str]:
    return [sys.executable, *flags, "-m", "server.cli"]
