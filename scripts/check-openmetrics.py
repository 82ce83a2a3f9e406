#!/usr/bin/python3
"""Reads an OpenMetrics text exposition on stdin and parses it with the
strict parser of the Prometheus Python client (Debian:
python3-prometheus-client). Exits non-zero with the parser's message on the
first violation; prints the number of families and samples otherwise."""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    families = list(text_string_to_metric_families(text))
except Exception as e:  # the parser raises ValueError (and others) on bad input
    print(f"openmetrics: {e}", file=sys.stderr)
    sys.exit(1)
print(len(families), sum(len(f.samples) for f in families))
