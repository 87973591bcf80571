"""The training queue on its own: one job at a time, coalescing into one rerun, the cool-down, failures."""

from __future__ import annotations

import threading
import time

from backend.train.jobs import TrainingJobs


def wait_for(predicate, timeout: float = 10.0) -> bool:
    give_up_at = time.monotonic() + timeout
    while not predicate() and time.monotonic() < give_up_at:
        time.sleep(0.01)
    return predicate()


def test_requests_during_a_run_coalesce_into_one_rerun():
    gate, started = threading.Event(), []

    def run(job):
        started.append(job.id)
        gate.wait(10)
        job.state = "published"

    jobs = TrainingJobs(run, cooldown_s=0.0)
    try:
        first = jobs.request(3)
        assert first["status"] == "queued" and first["job"]
        assert wait_for(lambda: started == [first["job"]])
        replies = [jobs.request(3) for _ in range(3)]
        rerun = replies[0]["job"]
        assert rerun != first["job"] and replies[0]["status"] == "queued" and replies[0]["after"] == first["job"]
        assert [r["job"] for r in replies] == [rerun] * 3 and [r["status"] for r in replies[1:]] == ["coalesced"] * 2
        snapshot = jobs.snapshot()
        assert snapshot["state"] == "running" and snapshot["running"]["id"] == first["job"]
        assert snapshot["waiting"]["id"] == rerun and snapshot["waiting"]["requests"] == 3
        assert snapshot["counts"]["started"] == 1  # no second job while one runs
        gate.set()
        assert jobs.wait_idle(10)
        assert started == [first["job"], rerun]
        counts = jobs.snapshot()["counts"]
        assert counts == {"requests": 4, "coalesced": 2, "started": 2, "published": 2}
    finally:
        gate.set()
        jobs.close()


def test_cool_down_delays_the_next_job():
    jobs = TrainingJobs(lambda job: setattr(job, "state", "kept"), cooldown_s=0.6)
    try:
        jobs.request()
        assert jobs.wait_idle(10)
        reply = jobs.request()
        assert reply["status"] == "queued" and 0.0 < reply["starts_in_s"] <= 0.6
        assert jobs.snapshot()["state"] == "waiting"
        assert jobs.wait_idle(10)
        second, first = jobs.snapshot()["history"]
        assert second["id"] == reply["job"] and second["started_at"] - first["finished_at"] >= 0.55
    finally:
        jobs.close()


def test_a_skipped_job_imposes_no_cool_down():
    jobs = TrainingJobs(lambda job: setattr(job, "state", "skipped"), cooldown_s=600.0)
    try:
        jobs.request()
        assert jobs.wait_idle(10)
        assert jobs.request()["starts_in_s"] == 0.0
        assert jobs.wait_idle(10) and jobs.snapshot()["counts"]["skipped"] == 2
    finally:
        jobs.close()


def test_a_failing_job_is_reported_in_one_line_and_the_queue_goes_on():
    outcomes = iter([ValueError("no res.jsonl in /data\n  (second line)"), None])

    def run(job):
        error = next(outcomes)
        if error:
            raise error
        job.state = "published"

    jobs = TrainingJobs(run, cooldown_s=0.0)
    try:
        jobs.request()
        assert jobs.wait_idle(10)
        jobs.request()
        assert jobs.wait_idle(10)
        second, first = jobs.snapshot()["history"]
        assert first["state"] == "failed" and first["reason"] == "no res.jsonl in /data (second line)"
        assert second["state"] == "published"
    finally:
        jobs.close()
