"""How the driver counts the tree manager's deaths (``ManagerDeaths``, no Ray): the failures
of ``run()`` while Ray restarts the manager are one death, not one each, which a slow restart
on a loaded machine used to turn into 'restarts exhausted'."""

from __future__ import annotations

from itool_ray.rollout.run import ManagerDeaths


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_failures_during_one_restart_are_one_death():
    clock = Clock()
    deaths = ManagerDeaths(restarts=2, timeout_s=60, clock=clock)
    assert deaths.progress_failed() == "same"  # the progress call met the death first
    assert deaths.run_failed() == "new" and deaths.deaths == 1
    for _ in range(10):  # run() called again while Ray restarts the manager: unavailable
        clock.t += 1
        assert deaths.run_failed() == "same"
    deaths.answered()  # it is back
    assert deaths.run_failed() == "new" and deaths.deaths == 2
    deaths.answered()
    assert deaths.run_failed() == "final"  # a third death with 2 restarts


def test_a_manager_that_never_answers_again_is_final():
    clock = Clock()
    deaths = ManagerDeaths(restarts=3, timeout_s=60, clock=clock)
    assert deaths.run_failed() == "new"
    clock.t = 59
    assert deaths.run_failed() == "same" and deaths.progress_failed() == "same"
    clock.t = 61
    assert deaths.run_failed() == "final"
    deaths.answered()  # an answer starts the wait over
    clock.t = 200
    assert deaths.progress_failed() == "same" and deaths.run_failed() == "new"
