"""Sends traces, logs and metrics to Sift with the real OpenTelemetry Python SDK exporters.

Prints one JSON object: how many spans, log records and metric data points the SDK exporters
reported as successfully exported, and how many exports failed. The Rust tests compare these
figures with what Sift counted and stored.

usage: send_telemetry.py --protocol grpc|http --endpoint URL [--traces N] [--logs-per-span N]
                         [--compression none|gzip] [--service NAME] [--attr KEY=VALUE ...]
                         [--log-suffix TEXT]
"""

import argparse
import json
import logging
import sys
import time

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import Status, StatusCode

counts = {"spans": 0, "logs": 0, "points": 0, "failed_exports": 0, "trace_ids": []}


def exporters(protocol):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter, OTLPLogExporter, OTLPMetricExporter


def counting(span_cls, log_cls, metric_cls):
    class Spans(span_cls):
        def export(self, spans):
            result = super().export(spans)
            if result == SpanExportResult.SUCCESS:
                counts["spans"] += len(spans)
            else:
                counts["failed_exports"] += 1
            return result

    class Logs(log_cls):
        def export(self, batch):
            result = super().export(batch)
            if result in (LogRecordExportResult.SUCCESS,) or getattr(result, "name", "") == "SUCCESS":
                counts["logs"] += len(batch)
            else:
                counts["failed_exports"] += 1
            return result

    class Metrics(metric_cls):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            points = sum(
                len(metric.data.data_points)
                for rm in metrics_data.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
            )
            if result == MetricExportResult.SUCCESS:
                counts["points"] += points
            else:
                counts["failed_exports"] += 1
            return result

    return Spans, Logs, Metrics


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument("--endpoint", required=True, help="grpc: http://host:port; http: http://host:port")
    parser.add_argument("--traces", type=int, default=20)
    parser.add_argument("--logs-per-span", type=int, default=1)
    parser.add_argument("--compression", choices=["none", "gzip"], default="none")
    parser.add_argument("--service", default="checkout")
    parser.add_argument("--attr", action="append", default=[], help="KEY=VALUE set on every span, log and point")
    parser.add_argument("--log-suffix", default="", help="text appended to every log body")
    parser.add_argument("--error-every", type=int, default=5, help="trace i has an error span when i %% N == 0")
    parser.add_argument("--slow-every", type=int, default=0, help="trace i lasts --slow-ms when i %% N == 1 (0: never)")
    parser.add_argument("--slow-ms", type=int, default=800)
    args = parser.parse_args()

    extra = dict(kv.split("=", 1) for kv in args.attr)
    span_cls, log_cls, metric_cls = counting(*exporters(args.protocol))
    kwargs = {}
    if args.compression == "gzip":
        if args.protocol == "grpc":
            from grpc import Compression
            kwargs["compression"] = Compression.Gzip
        else:
            from opentelemetry.exporter.otlp.proto.http import Compression
            kwargs["compression"] = Compression.Gzip

    def url(signal):
        base = args.endpoint.rstrip("/")
        return base if args.protocol == "grpc" else f"{base}/v1/{signal}"

    grpc_opts = {"insecure": True} if args.protocol == "grpc" else {}
    resource = Resource.create({"service.name": args.service, "deployment.environment": "test", **extra})

    tracer_provider = TracerProvider(resource=resource)
    # Queues large enough for every item the script makes: the SDK drops silently beyond them.
    tracer_provider.add_span_processor(
        BatchSpanProcessor(span_cls(endpoint=url("traces"), **grpc_opts, **kwargs), max_queue_size=1 << 17)
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(log_cls(endpoint=url("logs"), **grpc_opts, **kwargs), max_queue_size=1 << 17)
    )
    reader = PeriodicExportingMetricReader(
        metric_cls(endpoint=url("metrics"), **grpc_opts, **kwargs), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])

    log = logging.getLogger("sift.test")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))

    tracer = tracer_provider.get_tracer("sift.test", "1.0.0")
    meter = meter_provider.get_meter("sift.test", "1.0.0")
    requests = meter.create_counter("http.server.requests", unit="1")
    latency = meter.create_histogram("http.server.duration", unit="ms")

    for i in range(args.traces):
        # Slow traces get explicit timestamps instead of sleeping.
        slow = args.slow_every > 0 and i % args.slow_every == 1
        start = time.time_ns()
        root_kwargs = {"start_time": start, "end_on_exit": not slow}
        with tracer.start_as_current_span(
            "POST /pay", attributes={"http.route": "/pay", "order.id": i, **extra}, **root_kwargs
        ) as root:
            counts["trace_ids"].append(format(root.get_span_context().trace_id, "032x"))
            with tracer.start_as_current_span("SELECT orders", attributes={"db.system": "postgresql"}) as child:
                if args.error_every > 0 and i % args.error_every == 0:
                    child.set_status(Status(StatusCode.ERROR, "deadlock detected"))
                    child.add_event("exception", {"exception.message": "deadlock detected", **extra})
                for j in range(args.logs_per_span):
                    log.info("charged order %d step %d%s", i, j, args.log_suffix, extra={"order.id": i, **extra})
            # Recorded inside the root span: the SDK attaches an exemplar pointing at this trace.
            route = "/pay" if i % 2 else "/refund"
            requests.add(1, {"http.route": route, **extra})
            latency.record(10.0 + i, {"http.route": route, **extra})
        if slow:
            root.end(end_time=start + args.slow_ms * 1_000_000)

    tracer_provider.force_flush()
    logger_provider.force_flush()
    reader.force_flush()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown()
    json.dump(counts, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
