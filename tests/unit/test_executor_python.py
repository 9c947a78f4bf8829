"""The python executor: [interpreter, script, *arguments], no shell in between."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from schedd.config import WorkerSettings
from schedd.executors import pycommand
from schedd.executors.base import Ending, Outcome, StopSignal
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


# -- the seed's form: "python script.py ..." ------------------------------------------


def run_command(tmp_path: Path, command: str, *arguments: str) -> tuple[Outcome, Sink]:
    (tmp_path / "job.py").write_text(SCRIPT)
    settings = WorkerSettings(python_interpreter=sys.executable, working_directory=str(tmp_path))
    sink = Sink()
    outcome = PythonExecutor(settings).execute(
        spec(command, *arguments, executor="python"), sink, StopSignal()
    )
    return outcome, sink


@pytest.mark.parametrize("word", ["python", "python3"])
def test_a_leading_python_word_means_the_configured_interpreter(tmp_path: Path, word: str) -> None:
    outcome, sink = run_command(tmp_path, f"{word} job.py --input 'data file.csv'", "extra")
    assert outcome.ending == Ending.completed, outcome.error
    seen = json.loads(sink.text)
    assert seen["argv"] == ["job.py", "--input", "data file.csv", "extra"]
    assert Path(str(seen["executable"])).resolve() == Path(sys.executable).resolve()


def test_an_interpreter_path_is_run_as_written(tmp_path: Path) -> None:
    venv_python = tmp_path / "venv" / "bin" / f"python3.{sys.version_info.minor}"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    outcome, sink = run_command(tmp_path, f"{venv_python} -u job.py $HOME ';'")
    assert outcome.ending == Ending.completed, outcome.error
    seen = json.loads(sink.text)
    assert seen["argv"] == ["job.py", "$HOME", ";"]  # nothing expanded, no shell
    assert seen["executable"] == str(venv_python)


def test_a_missing_script_fails_before_starting_naming_it(tmp_path: Path) -> None:
    outcome, sink = run_command(tmp_path, "python process_data.py", "--input", "data.csv")
    assert outcome.ending == Ending.failed
    assert outcome.error == f"python script process_data.py does not exist in {tmp_path}"
    assert outcome.exit_code is None
    assert sink.text == ""


def test_an_unsplittable_command_fails_the_run_clearly(tmp_path: Path) -> None:
    outcome, _ = run_command(tmp_path, "python 'job.py")
    assert outcome.error == (
        "command cannot be split as a shell would split it: No closing quotation"
    )


@pytest.mark.parametrize(
    ("command", "interpreter", "words"),
    [
        ("python process_data.py", None, ("process_data.py",)),
        ("python3 -m http.server 0", None, ("-m", "http.server", "0")),
        ("/usr/bin/python3.11 a.py", "/usr/bin/python3.11", ("a.py",)),
        ("python3.12 'a b.py'", "python3.12", ("a b.py",)),
        ("/srv/jobs/report.py", None, ("/srv/jobs/report.py",)),
        ("/srv/my jobs/it's.py", None, ("/srv/my jobs/it's.py",)),  # bare path: as before
        ("pythonic.py", None, ("pythonic.py",)),
    ],
)
def test_parse(command: str, interpreter: str | None, words: tuple[str, ...]) -> None:
    parsed = pycommand.parse(command)
    assert (parsed.interpreter, parsed.words) == (interpreter, words)


def test_an_interpreter_without_a_script_is_a_problem() -> None:
    with pytest.raises(pycommand.CommandProblem, match=r"names the interpreter \(python3\)"):
        pycommand.parse("python3")


def test_missing_script_judges_only_directories_this_host_sees(tmp_path: Path) -> None:
    (tmp_path / "here.py").write_text("")
    seen = pycommand.parse("python here.py")
    gone = pycommand.parse("python gone.py")
    assert pycommand.missing_script(seen, str(tmp_path)) is None
    assert pycommand.missing_script(gone, str(tmp_path)) == (
        f"python script gone.py does not exist in {tmp_path}"
    )
    assert pycommand.missing_script(gone, None) is None  # the run user's home: unknown
    elsewhere = pycommand.parse("python /not/on/this/host/job.py")
    assert pycommand.missing_script(elsewhere, None) is None
    assert pycommand.missing_script(elsewhere, None, runs_here=True) == (
        "python script /not/on/this/host/job.py does not exist"
    )
    assert pycommand.missing_script(pycommand.parse("python -c pass"), str(tmp_path)) is None
