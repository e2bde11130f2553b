"""Power loss: the transaction data of the end survives a SIGKILL of the agent process.

With StopTxnSampledData and StopTxnAlignedData set (2.0.1: SampledDataCtrlr /
AlignedDataCtrlr TxEndedMeasurands; the same agent settings), every periodic and
clock-aligned meter entry of a transaction is journalled together with its
transaction-data twin (one SQLite transaction), so the PowerLoss end sent after the
restart carries the Transaction.Begin sample and every sample taken before the cut:
exactly the timestamps of the transaction's meter values (OCPP 1.6 6.47, 9.1
StopTxnSampledData: StopTransaction.transactionData; 2.0.1 E06/J02: the meterValue of
TransactionEvent Ended). Runs for both versions.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsEmulator, ReceivedCall
from tests.powerloss.harness import ENERGY_MEASURAND, AgentProcess, kill_agent, wait_journal
from tests.powerloss.rig import GUARD_S, boot, charge, csms, logged_agent, ocpp
from tests.versions import OcppVersion

__all__ = ["csms", "ocpp"]  # the fixtures, imported

CP_ID = "CP-STOPDATA"
PERIODIC_SAMPLES = 3


@pytest.fixture
async def agent(
    tmp_path: Path, csms: CsmsEmulator, ocpp: OcppVersion
) -> AsyncIterator[AgentProcess]:
    process = AgentProcess.create(
        tmp_path,
        csms_url=csms.url,
        charge_point_id=CP_ID,
        ocpp={
            "meter_value_sample_interval_s": 1,
            "clock_aligned_data_interval_s": 1,
            "stop_txn_sampled_data": [ENERGY_MEASURAND],
            "stop_txn_aligned_data": [ENERGY_MEASURAND],
        },
        ocpp_version=ocpp.name,
    )
    async with logged_agent(process):
        yield process


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


def meter_values(call: ReceivedCall) -> list[dict[str, Any]]:
    """The meterValue objects of a 1.6 MeterValues or a 2.0.1 TransactionEvent."""
    return list(call.payload.get("meterValue", []))


def end_data(stop: ReceivedCall) -> list[dict[str, Any]]:
    """The transaction data of an end: 1.6 ``transactionData``, 2.0.1 ``meterValue``."""
    return list(stop.payload.get("transactionData", stop.payload.get("meterValue", [])))


def start_reading(start: ReceivedCall) -> tuple[str, float]:
    """(timestamp, Wh) of a start: 1.6 ``meterStart``, 2.0.1 its Transaction.Begin value."""
    if "meterStart" in start.payload:
        return str(start.payload["timestamp"]), float(start.payload["meterStart"])
    [begin] = [mv for mv in meter_values(start) if context_of(mv) == "Transaction.Begin"]
    return str(begin["timestamp"]), energy_of(begin)


def unique(values: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeated samples (the one in flight at the cut may have come twice)."""
    return list({(mv["timestamp"], context_of(mv)): mv for mv in values}.values())


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_power_loss_end_carries_the_transaction_data_taken_before_the_cut(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion
) -> None:
    start = await charge(agent, csms, ocpp, "TAG-DATA")
    tx_id = ocpp.tx_id_of(start, csms)
    assert tx_id is not None

    def periodic(c: ReceivedCall) -> bool:
        return any(key[0] == tx_id for key in ocpp.meter_keys([c])) and any(
            context_of(mv) == "Sample.Periodic" for mv in meter_values(c)
        )

    await csms.wait_for(
        ocpp.meter_action, count=PERIODIC_SAMPLES, predicate=periodic, timeout_s=GUARD_S
    )
    rows_at_cut = stop_data_rows(agent.data_dir)
    loss = await kill_agent(agent, csms)
    [interrupted] = loss.journal.running  # killed while charging

    await boot(agent, csms)
    stop = await csms.wait_for(
        ocpp.stop_action, predicate=lambda c: bool(ocpp.stops([c])), timeout_s=GUARD_S
    )
    await csms.wait_answer(stop, timeout_s=GUARD_S)
    await wait_journal(agent.data_dir, lambda j: not j.queue, what="an empty queue")
    assert await agent.terminate() == 0

    assert ocpp.stop_reason(stop) == "PowerLoss"
    assert ocpp.tx_id_of(stop, csms) == tx_id
    data = end_data(stop)
    assert len(data) >= rows_at_cut >= 1 + PERIODIC_SAMPLES  # nothing kept was lost
    # first the Transaction.Begin sample: the start's time and meter value
    begin, *taken = data
    assert context_of(begin) == "Transaction.Begin"
    assert (begin["timestamp"], energy_of(begin)) == start_reading(start)
    # then one sample per periodic and clock-aligned meter value of the transaction (the
    # ones delivered before the cut and any still queued at it), in order, with the same
    # readings; no Transaction.End sample (the meter was not read at the cut)
    sent = unique(
        [
            mv
            for c in csms.received
            if c.charge_point_id == CP_ID
            and c is not start
            and c is not stop
            and any(key[0] == tx_id for key in ocpp.meter_keys([c]))
            for mv in meter_values(c)
        ]
    )
    assert [(mv["timestamp"], context_of(mv)) for mv in taken] == [
        (mv["timestamp"], context_of(mv)) for mv in sent
    ]
    assert [energy_of(mv) for mv in taken] == [energy_of(mv) for mv in sent]
    assert {context_of(mv) for mv in taken} == {"Sample.Periodic", "Sample.Clock"}
    assert taken[-1]["timestamp"] <= stop.payload["timestamp"] == interrupted.last_meter_time
