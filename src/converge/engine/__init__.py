"""The sync engine: level-triggered reconciliation of one root at a time, the worker loop that shares
roots through leases, the periodic sweep and local repair. Never imports Neutron."""
