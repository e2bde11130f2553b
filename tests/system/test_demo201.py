"""``evse-agent demo --ocpp 2.0.1``: the scripted 2.0.1 session ends with result OK."""

from __future__ import annotations

import pytest

from agent.cli import build_parser
from hil.demo201 import run_demo201


async def test_the_201_demo_tells_the_whole_story(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_demo201(quiet=True) == 0
    out = capsys.readouterr().out
    assert "Summary (OCPP 2.0.1)" in out
    assert "TransactionEvent : Ended x1, Started x1, Updated x" in out
    assert "stop reason      : Remote" in out
    assert "result           : OK" in out


def test_the_demo_command_takes_the_version() -> None:
    args = build_parser().parse_args(["demo", "--ocpp", "2.0.1"])
    assert args.ocpp == "2.0.1"
    assert build_parser().parse_args(["demo"]).ocpp == "1.6"
