"""The python executor: [interpreter, script, *arguments], no shell in between."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schedd.config import WorkerSettings
from schedd.executors.base import Ending, StopSignal
from schedd.executors.python import PythonExecutor
from tests.workerkit import Sink, spec

SCRIPT = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "executable": sys.executable,
                  "run": os.environ["SCHED_RUN_ID"],
                  "buffered": os.environ.get("PYTHONUNBUFFERED")}))
"""


def run_script(tmp_path: Path, *arguments: str) -> tuple[Ending, int | None, dict[str, object]]:
    (tmp_path / "job.py").write_text(SCRIPT)
    settings = WorkerSettings(python_interpreter=sys.executable, working_directory=str(tmp_path))
    sink = Sink()
    outcome = PythonExecutor(settings).execute(
        spec("job.py", *arguments, executor="python"), sink, StopSignal()
    )
    return outcome.ending, outcome.exit_code, json.loads(sink.text)


def test_arguments_are_argv_with_nothing_interpreted(tmp_path: Path) -> None:
    arguments = ["a b", "; touch x", "$HOME", "*", "-c"]
    ending, code, seen = run_script(tmp_path, *arguments)
    assert (ending, code) == (Ending.completed, 0)
    assert seen["argv"] == ["job.py", *arguments]
    assert seen["run"] == "7"
    assert not (tmp_path / "x").exists()


def test_the_configured_interpreter_runs_the_script_unbuffered(tmp_path: Path) -> None:
    _, _, seen = run_script(tmp_path)
    assert Path(str(seen["executable"])).resolve() == Path(sys.executable).resolve()
    assert seen["buffered"] == "1"


def test_a_failing_script_fails_the_run_with_its_status(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text("import sys; print('bad input', file=sys.stderr); sys.exit(4)")
    sink = Sink()
    settings = WorkerSettings(python_interpreter=sys.executable, working_directory=str(tmp_path))
    outcome = PythonExecutor(settings).execute(
        spec("job.py", executor="python"), sink, StopSignal()
    )
    assert (outcome.ending, outcome.exit_code) == (Ending.failed, 4)
    assert outcome.error == "exited with status 4"
    assert sink.text == "bad input\n"
