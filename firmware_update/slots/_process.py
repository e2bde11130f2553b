"""Running a health-check executable with a time bound (shared by the slot backends)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

_DETAIL_CHARS = 200


async def run_check(argv: Sequence[str], *, cwd: Path | None, timeout_s: float) -> tuple[bool, str]:
    """Run ``argv``; ok when it exits 0 within ``timeout_s`` (killed otherwise).

    Returns:
        (ok, detail): the last output line (stdout+stderr), or why it failed.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as e:
        return False, f"cannot run {argv[0]}: {e.strerror or e}"
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return False, f"{Path(argv[0]).name} timed out after {timeout_s:g} s"
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.shield(process.wait())
        raise
    lines = output.decode(errors="replace").strip().splitlines()
    last = lines[-1][:_DETAIL_CHARS] if lines else ""
    code = process.returncode
    if code == 0:
        return True, last or "ok"
    return False, f"exit code {code}" + (f": {last}" if last else "")
