"""Converge inside Neutron: the ML2 mechanism driver, security-group callbacks, the sync workers run by
``neutron-periodic-workers``, and the ``[converge]`` options. The only package that imports Neutron,
neutron-lib or oslo (checked by import-linter)."""
