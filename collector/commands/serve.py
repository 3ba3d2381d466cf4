"""`gpucensus-collector serve --config FILE`: run the gRPC collector until SIGTERM or SIGINT.

On SIGTERM the health service turns NOT_SERVING, new calls are refused, each open stream finishes the envelope
in hand (stored, then acknowledged) and ends with UNAVAILABLE so its agent reconnects; after
`[server] shutdown_grace_seconds` whatever is left is cancelled. Nothing acknowledged is lost: the store commits first.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

log = logging.getLogger("gpucensus.collector")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the collector's gRPC service (enrollment, attestations, queries)",
        description="Receive, verify and store attestations over gRPC until SIGTERM. "
        "Keeps compliance under [policy] pack current as attestations arrive (policy findings in each Ack). "
        "Settings: [store], [server], [policy], [nodes], [metrics], [log], [enrollment], [location] and [dashboard] "
        "in the config file (see collector/config.py).",
    )
    parser.add_argument("--config", default=None, metavar="FILE", help="collector config file (TOML)")
    parser.add_argument("--listen", default=None, metavar="HOST:PORT", help="override [server] listen (port 0: any)")
    parser.add_argument(
        "--metrics-listen", default=None, metavar="HOST:PORT", help="override [metrics] listen (Prometheus endpoint)"
    )
    parser.add_argument(
        "--dashboard-listen", default=None, metavar="HOST:PORT", help="override [dashboard] listen (web dashboard)"
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    # here, not at the top: gRPC, the protos, metrics and the dashboard load only when the collector runs, so that
    # building the command line parser stays cheap for every other command (collector/commands/__init__.py)
    from gpucensus.collector.config import load_config
    from gpucensus.collector.dashboard.server import start_dashboard
    from gpucensus.collector.ingest.pipeline import utc_now
    from gpucensus.collector.server import run_server
    from gpucensus.collector.store import open_store

    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_config(
        args.config,
        overrides={
            "server": {"listen": args.listen},
            "metrics": {"listen": args.metrics_listen},
            "dashboard": {"listen": args.dashboard_listen},
        },
    )
    store = open_store(config.store.kind, **config.store.open_options())
    # handlers first: a SIGTERM right after the "serving" lines (a supervisor, a test) must stop it gracefully
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    dashboard = None
    try:
        server, port = run_server(config, store)
        host = config.server.listen.rpartition(":")[0]
        print(f"gpucensus-collector: serving on {host}:{port}", file=sys.stderr, flush=True)
        if server.metrics_port is not None:
            metrics_host = config.metrics.listen.rpartition(":")[0]
            print(
                f"gpucensus-collector: metrics on http://{metrics_host}:{server.metrics_port}/metrics",
                file=sys.stderr,
                flush=True,
            )
        if config.dashboard.listen:
            try:
                dashboard = start_dashboard(
                    config.dashboard, store, config.policy.pack, config.nodes, utc_now, server.compliance
                )
            except BaseException:
                server.stop(None).wait()
                raise
            print(f"gpucensus-collector: dashboard on {dashboard.url}", file=sys.stderr, flush=True)
        stop.wait()
        if dashboard is not None:
            dashboard.stop()
        log.info("stopping: finishing in-flight envelopes (up to %d s)", config.server.shutdown_grace_seconds)
        server.stop(config.server.shutdown_grace_seconds).wait()
        log.info("stopped; %d envelope(s) judged", server.timings.envelopes)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()
    return 0
