"""picflow's Lambda layer: the operation catalogue, provider clients and domain code.

Kept import-light on purpose (cold starts): import submodules where they are used.
"""

__version__ = "0.1.0"
