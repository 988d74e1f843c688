"""The aws layer: the services container and everything kept in AWS (jobs table, result cache,
coordination table, starting executions).

Imports :mod:`picflow.core`, :mod:`picflow.net` and :mod:`picflow.providers` (the container builds
the provider registry). Nothing heavy is imported here: import the module you need.
"""
