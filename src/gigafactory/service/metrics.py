"""Prometheus metrics: queue length and running GPUs (read from the database at scrape
time, so every replica reports the same), cycle latency and submissions (counted here)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gigafactory.service.jobs.models import Job

QUEUED = ("pending", "requeued", "held", "starting", "running", "preempting")


class _DbCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "gigafactory_jobs", "jobs in each non-final state", labels=["state"]
        )
        gpus = GaugeMetricFamily("gigafactory_running_gpus", "GPUs held by running jobs")
        with self.sessions() as db:
            counts = dict(
                db.execute(
                    select(Job.state, func.count()).where(Job.state.in_(QUEUED)).group_by(Job.state)
                ).all()
            )
            held = db.scalar(select(func.coalesce(func.sum(Job.gpus), 0)).where(Job.active.is_(True)))
        for state in QUEUED:
            queue.add_metric([state], float(counts.get(state, 0)))
        yield queue
        length = GaugeMetricFamily(
            "gigafactory_queue_length", "jobs waiting to start (pending + requeued)"
        )
        length.add_metric([], float(counts.get("pending", 0) + counts.get("requeued", 0)))
        yield length
        gpus.add_metric([], float(held or 0))
        yield gpus


class Metrics:
    """One registry per app instance (tests build many apps in one process)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.submissions = Counter(
            "gigafactory_submissions",
            "job submissions by outcome (accepted, held, replayed, refused)",
            ["outcome"],
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            "gigafactory_cycle_seconds",
            "wall time of one scheduler cycle (snapshot, core, commit)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.submit_batch = Histogram(
            "gigafactory_submit_batch_size",
            "submissions written per transaction by the group-commit writer",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.cycles = Counter("gigafactory_cycles", "scheduler cycles run", registry=self.registry)
        self.registry.register(_DbCollector(sessions))
