"""The core layer: picflow's vocabulary and rules, with no AWS and no network.

Errors, configuration, the operation catalogue and the provider specs, params models, S3 key
layout and ids, the state the job state machine carries, polling maths, image checks. Imports
nothing from the other layers (``docs/architecture.md``; ``lint-imports`` enforces it).
"""
