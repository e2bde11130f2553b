"""Power loss: StopTransaction.transactionData survives a SIGKILL of the agent process.

With StopTxnSampledData and StopTxnAlignedData set, every periodic and clock-aligned
meter entry of a transaction is journalled together with its transaction-data twin (one
SQLite transaction), so the PowerLoss stop sent after the restart carries the
Transaction.Begin sample and every sample taken before the cut: exactly the timestamps
of the transaction's MeterValues (OCPP 1.6 6.47, 9.1 StopTxnSampledData).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from hil.csms import CsmsEmulator, ReceivedCall
from tests.powerloss.harness import (
    ENERGY_MEASURAND,
    AgentProcess,
    answered_tx_id,
    kill_agent,
    wait_journal,
)

CP_ID = "CP-STOPDATA"
GUARD_S = 20.0  # a guard against hangs only; every wait is on a condition
PERIODIC_SAMPLES = 3


@pytest.fixture
async def agent(tmp_path: Path, csms: CsmsEmulator) -> AsyncIterator[AgentProcess]:
    process = AgentProcess.create(
        tmp_path,
        csms_url=csms.url,
        charge_point_id=CP_ID,
        ocpp={"meter_value_sample_interval_s": 1, "clock_aligned_data_interval_s": 1},
    )
    try:
        yield process
    finally:
        await process.close()
        # shown by pytest only when the test failed
        print(f"----- agent log ({process.log_path}) -----\n{process.log_text()}")


async def boot(agent: AgentProcess, csms: CsmsEmulator) -> ReceivedCall:
    boots = len(csms.calls("BootNotification", CP_ID))
    await agent.start()
    boot = await csms.wait_for("BootNotification", count=boots + 1, timeout_s=GUARD_S)
    await agent.wait_control_socket()
    return boot


def stop_data_rows(data_dir: Path) -> int:
    """How many transaction-data samples the journal holds (read-only, like the harness)."""
    uri = f"{(data_dir / 'agent.db').as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
        return int(conn.execute("SELECT count(*) FROM tx_stop_data").fetchone()[0])


def context_of(meter_value: dict[str, Any]) -> str:
    (context,) = {v.get("context", "Sample.Periodic") for v in meter_value["sampledValue"]}
    return str(context)


def energy_of(meter_value: dict[str, Any]) -> float:
    (energy,) = [v for v in meter_value["sampledValue"] if v.get("measurand") == ENERGY_MEASURAND]
    return float(energy["value"])


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_power_loss_stop_carries_the_transaction_data_taken_before_the_cut(
    agent: AgentProcess, csms: CsmsEmulator
) -> None:
    await boot(agent, csms)
    for key in ("StopTxnSampledData", "StopTxnAlignedData"):
        result = await csms.call(CP_ID, call.ChangeConfiguration(key=key, value=ENERGY_MEASURAND))
        assert result.status == "Accepted"
    await agent.sim("plug")
    await agent.sim("swipe", "TAG-DATA")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    await csms.wait_answer(start, timeout_s=GUARD_S)
    tx_id = answered_tx_id(csms, start)
    assert tx_id is not None

    def periodic(c: ReceivedCall) -> bool:
        return c.payload.get("transactionId") == tx_id and any(
            context_of(mv) == "Sample.Periodic" for mv in c.payload["meterValue"]
        )

    await csms.wait_for(
        "MeterValues", count=PERIODIC_SAMPLES, predicate=periodic, timeout_s=GUARD_S
    )
    rows_at_cut = stop_data_rows(agent.data_dir)
    loss = await kill_agent(agent, csms)
    [interrupted] = loss.journal.running  # killed while charging

    await boot(agent, csms)
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    await csms.wait_answer(stop, timeout_s=GUARD_S)
    await wait_journal(agent.data_dir, lambda j: not j.queue, what="an empty queue")
    assert await agent.terminate() == 0

    assert stop.payload["reason"] == "PowerLoss"
    assert stop.payload["transactionId"] == tx_id
    data = stop.payload["transactionData"]
    assert len(data) >= rows_at_cut >= 1 + PERIODIC_SAMPLES  # nothing kept was lost
    # first the Transaction.Begin sample: the start's time and meter value
    begin, *taken = data
    assert context_of(begin) == "Transaction.Begin"
    assert begin["timestamp"] == start.payload["timestamp"]
    assert energy_of(begin) == start.payload["meterStart"]
    # then one sample per periodic and clock-aligned MeterValues of the transaction (the
    # ones delivered before the cut and any still queued at it), in order, with the same
    # readings; no Transaction.End sample (the meter was not read at the cut)
    sent = [
        mv
        for c in csms.calls("MeterValues", CP_ID)
        if c.payload.get("transactionId") == tx_id
        for mv in c.payload["meterValue"]
    ]
    # the one in flight at the cut may have come twice (harness.resends_after_losses)
    sent = list({(mv["timestamp"], context_of(mv)): mv for mv in sent}.values())
    assert [(mv["timestamp"], context_of(mv)) for mv in taken] == [
        (mv["timestamp"], context_of(mv)) for mv in sent
    ]
    assert [energy_of(mv) for mv in taken] == [energy_of(mv) for mv in sent]
    assert {context_of(mv) for mv in taken} == {"Sample.Periodic", "Sample.Clock"}
    assert taken[-1]["timestamp"] <= stop.payload["timestamp"] == interrupted.last_meter_time
