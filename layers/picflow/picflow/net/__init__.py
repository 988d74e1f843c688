"""The net layer: how picflow speaks HTTP (httpx clients, retries, SSRF-safe fetches, signed notices).

Imports only :mod:`picflow.core`. Nothing heavy is imported here: import the module you need.
"""
