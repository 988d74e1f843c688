"""The net layer: how picflow speaks HTTP (httpx clients, retries, SSRF-safe fetches, signed notices)
and the AWS SDK session its AWS clients are built from.

Imports only :mod:`picflow.core`. Nothing heavy is imported here: import the module you need.
"""
