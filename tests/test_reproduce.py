"""reproduce.py runs every step, reports each failure, and stops on Ctrl-C after printing its summary."""

from __future__ import annotations

import sys
import types


def _fake_steps(monkeypatch, behaviours: dict[str, object]) -> list[str]:
    import reproduce

    ran: list[str] = []
    steps = []
    for name, behaviour in behaviours.items():
        mod = types.ModuleType(f"_fake_step_{name}")

        def main(argv, name=name, behaviour=behaviour):
            ran.append(name)
            if isinstance(behaviour, BaseException):
                raise behaviour
            return behaviour

        mod.main = main
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
        steps.append((name, mod.__name__, lambda out, dev: []))
    monkeypatch.setattr(reproduce, "STEPS", steps)
    return ran


def test_reproduce_runs_every_step_and_reports_each_failure(tmp_path, monkeypatch, capsys):
    import reproduce

    ran = _fake_steps(monkeypatch, {"argerror": SystemExit(2), "crash": RuntimeError("boom"), "fine": 0,
                                    "status": 3, "exit0": SystemExit(0)})
    assert reproduce.main(["--out", str(tmp_path)]) == 1
    assert ran == ["argerror", "crash", "fine", "status", "exit0"]
    out = capsys.readouterr()
    summary = out.out[out.out.index("== summary"):]
    for name, word in [("argerror", "FAILED (status 2)"), ("crash", "FAILED (status 1)"), ("fine", "ok"),
                       ("status", "FAILED (status 3)"), ("exit0", "ok")]:
        assert any(line.split()[:1] == [name] and word in line for line in summary.splitlines()), summary
    assert "failed steps: argerror, crash, status" in out.err and "RuntimeError: boom" in out.err
    _fake_steps(monkeypatch, {"a": 0, "b": 0})
    assert reproduce.main(["--out", str(tmp_path)]) == 0


def test_reproduce_stops_on_ctrl_c_after_printing_the_summary(tmp_path, monkeypatch, capsys):
    import reproduce

    ran = _fake_steps(monkeypatch, {"first": 0, "second": KeyboardInterrupt(), "third": 0})
    assert reproduce.main(["--out", str(tmp_path)]) == 130
    assert ran == ["first", "second"]
    out = capsys.readouterr()
    assert "INTERRUPTED" in out.out and "first" in out.out[out.out.index("== summary"):]
    assert "interrupted during step second" in out.err
