"""Both versions validate OCPP payloads inline, not in the library's thread pool (a
thread hop per message): checked in a fresh interpreter that imports only one
version's adapter, as a 1.6-only or a 2.0.1-only agent does."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("adapter", ["agent.ocpp.v16.adapter", "agent.ocpp.v201.adapter"])
def test_importing_one_adapter_turns_thread_pool_validation_off(adapter: str) -> None:
    code = (
        f"import {adapter}, sys, ocpp.messages\n"
        "sys.exit(0 if ocpp.messages.ASYNC_VALIDATION is False else 3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
