"""Prometheus metrics of one served flow, and `GET /metrics` (at the root, not under base_path).

Every metric is fed from the host's listeners (`run.started`, `run.finished`, `reload`) or
read at scrape time (service states), never from the per-chunk path: a run costs the
metrics two callbacks, whatever its length. Each app gets its own `CollectorRegistry` (not
prometheus-client's global one), so several apps in one process do not clash.

    metrics = FlowMetrics(host)          # subscribes to host.listeners
    text = metrics.render()              # Prometheus text format, bytes
    router = metrics_router(ctx)         # the app's `GET /metrics`

| metric | type | labels |
|---|---|---|
| `flowctl_runs_total` | counter | workflow, status (succeeded, failed, cancelled) |
| `flowctl_run_duration_seconds` | histogram | workflow |
| `flowctl_time_to_first_chunk_seconds` | histogram | workflow |
| `flowctl_chunks_total` | counter | workflow |
| `flowctl_prompt_tokens_total` | counter | workflow |
| `flowctl_completion_tokens_total` | counter | workflow |
| `flowctl_runs_in_flight` | gauge | workflow |
| `flowctl_service_up` | gauge (1 ready, 0 not) | node |
| `flowctl_service_restarts_total` | counter | node |
| `flowctl_reloads_total` | counter | result (ok, error) |
| `flowctl_replica_up` | gauge (1 serving, 0 not) | node, replica |
| `flowctl_replica_in_flight` | gauge | node, replica |
| `flowctl_replica_requests_total` | counter | node, replica |
| `flowctl_replica_failures_total` | counter | node, replica |

The replica series cover requests balanced by http-stream's `service:` (a `url:` names no
replica); a node without replicas is its own one replica (`replica="llm"`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from litestar import Response, Router, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..engine.host import FlowHost
from ..engine.runs import RunRecord, RunStatus
from .routes_api import ServerContext

#: seconds; runs of an LLM flow last from a fraction of a second to minutes
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: seconds; time to first chunk is what a chat user feels
TTFC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: statuses a finished run can have (label values created up front, so rate() has a series)
FINISHED = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)


class _ServiceCollector(Collector):
    """Service node up/down and restarts, read from the supervisor at scrape time."""

    def __init__(self, host: FlowHost) -> None:
        self.host = host

    def describe(self) -> list[Metric]:
        return []  # collected lazily: nothing to check at registration time

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("flowctl_service_up", "1 when the service node is ready, 0 otherwise.", labels=["node"])
        restarts = CounterMetricFamily("flowctl_service_restarts", "Restarts of the service node's process.", labels=["node"])
        statuses = self.host.supervisor.statuses()
        nodes = list(self.host.flow.services)
        nodes += [node for node in statuses if node not in nodes]
        for node in nodes:
            status = statuses.get(node)
            up.add_metric([node], 1.0 if status is not None and status.ready else 0.0)
            restarts.add_metric([node], float(status.restarts if status is not None else 0))
        yield up
        yield restarts
        yield from self._replicas()

    def _replicas(self) -> Iterator[Metric]:
        labels = ["node", "replica"]
        up = GaugeMetricFamily("flowctl_replica_up", "1 while the replica serves, 0 otherwise.", labels=labels)
        in_flight = GaugeMetricFamily("flowctl_replica_in_flight", "Streams balanced to the replica and not finished.", labels=labels)
        requests = CounterMetricFamily("flowctl_replica_requests", "Requests balanced to the replica (every attempt).", labels=labels)
        failures = CounterMetricFamily("flowctl_replica_failures", "Attempts that failed on the replica: no connection, a non-2xx answer, a stream broken off.", labels=labels)
        for node, pool in list(self.host.supervisor.pools.items()):
            for member in pool.members:
                names = [node, member.name]
                up.add_metric(names, 1.0 if member.ready else 0.0)
                in_flight.add_metric(names, float(member.in_flight))
                requests.add_metric(names, float(member.requests))
                failures.add_metric(names, float(member.failures))
        yield from (up, in_flight, requests, failures)


@dataclass(frozen=True)
class _WorkflowSeries:
    """One workflow's labelled children, looked up once (labels() takes a lock and a dict)."""

    runs: dict[str, Any]
    duration: Any
    ttfc: Any
    chunks: Any
    prompt_tokens: Any
    completion_tokens: Any
    in_flight: Any


class FlowMetrics:
    """The metrics of one host, in their own registry. Subscribes to `host.listeners`."""

    def __init__(self, host: FlowHost, registry: CollectorRegistry | None = None) -> None:
        self.host = host
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter("flowctl_runs", "Finished runs by workflow and final status.", ["workflow", "status"], registry=r)
        self.duration = Histogram("flowctl_run_duration_seconds", "Run duration, from start (slot acquired) to end.", ["workflow"], buckets=DURATION_BUCKETS, registry=r)
        self.ttfc = Histogram("flowctl_time_to_first_chunk_seconds", "Time from run start to its first output chunk.", ["workflow"], buckets=TTFC_BUCKETS, registry=r)
        self.chunks = Counter("flowctl_chunks", "Output chunks streamed.", ["workflow"], registry=r)
        # what the upstreams reported (OpenAI's `usage`); runs whose upstreams report none add nothing
        self.prompt_tokens = Counter("flowctl_prompt_tokens", "Prompt tokens the model servers reported reading.", ["workflow"], registry=r)
        self.completion_tokens = Counter("flowctl_completion_tokens", "Completion tokens the model servers reported generating.", ["workflow"], registry=r)
        self.in_flight = Gauge("flowctl_runs_in_flight", "Runs executing now (not counting queued ones).", ["workflow"], registry=r)
        self.reloads = Counter("flowctl_reloads", "Hot reloads of the flow file by result.", ["result"], registry=r)
        r.register(_ServiceCollector(host))
        self._started: set[str] = set()
        self._children: dict[str, _WorkflowSeries] = {}
        for result in ("ok", "error"):
            self.reloads.labels(result)
        self._init_workflows()
        host.listeners.append(self.on_event)

    def _init_workflows(self) -> None:
        """Create every workflow's series at 0, so a dashboard sees them before the first run."""
        for workflow in self.host.flow.workflows:
            self._series(workflow)

    def _series(self, workflow: str) -> _WorkflowSeries:
        series = self._children.get(workflow)
        if series is None:
            series = self._children[workflow] = _WorkflowSeries(
                runs={status: self.runs.labels(workflow, status) for status in FINISHED},
                duration=self.duration.labels(workflow),
                ttfc=self.ttfc.labels(workflow),
                chunks=self.chunks.labels(workflow),
                prompt_tokens=self.prompt_tokens.labels(workflow),
                completion_tokens=self.completion_tokens.labels(workflow),
                in_flight=self.in_flight.labels(workflow),
            )
        return series

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        """A host listener: called at run start and end, on service changes and reloads."""
        if event == "run.started":
            record: RunRecord = data["run"]
            self._started.add(record.id)
            self._series(record.workflow).in_flight.inc()
        elif event == "run.finished":
            self._finished(data["run"])
        elif event == "reload":
            self.reloads.labels(str(data.get("result", "ok"))).inc()
            if data.get("result") == "ok":
                self._init_workflows()

    def _finished(self, record: RunRecord) -> None:
        series = self._series(record.workflow)
        status = record.status.value
        counter = series.runs.get(status)
        (counter if counter is not None else self.runs.labels(record.workflow, status)).inc()
        if record.id not in self._started:
            return  # never got a slot (queue full, shutdown): it did not run
        self._started.discard(record.id)
        series.in_flight.dec()
        if record.chunks:
            series.chunks.inc(record.chunks)
        if record.usage is not None:
            series.prompt_tokens.inc(record.usage.prompt_tokens)
            series.completion_tokens.inc(record.usage.completion_tokens)
        if record.finished_mono is not None:
            series.duration.observe(max(0.0, record.finished_mono - record.started_mono))
        ttfc = record.time_to_first_chunk
        if ttfc is not None:
            series.ttfc.observe(max(0.0, ttfc))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def metrics_router(ctx: ServerContext, metrics: FlowMetrics | None = None) -> Router:
    """`GET /metrics`, mounted at the app's root; one `FlowMetrics` (one registry) per app."""
    metrics = metrics if metrics is not None else FlowMetrics(ctx.host)

    @get("/metrics", sync_to_thread=False)
    def prometheus_metrics() -> Response[bytes]:
        # as a header: a text/* media_type would get Litestar's `; charset=utf-8` a second time
        return Response(metrics.render(), headers={"content-type": CONTENT_TYPE_LATEST})

    return Router(path="/", route_handlers=[prometheus_metrics], tags=["metrics"])


__all__ = ["FlowMetrics", "metrics_router"]
