"""Converge: an asynchronous, fenced, self-repairing Neutron backend driver for SDN controllers.

Layers (checked by import-linter, see pyproject.toml): ``cli`` over ``engine`` over ``store`` and
``backends`` over ``core``; the reference controller in ``fabric`` depends on ``core`` only.
"""

__version__ = "0.1.0"
