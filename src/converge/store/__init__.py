"""The intent store: desired objects, the change journal, per-object status, per-root sync state and
leases, in SQL through SQLAlchemy 2 Core. SQLite serves one process; MariaDB (also Galera) serves many.

``record()`` is the only call the Neutron driver makes in its API transaction; everything else is the
workers' and the CLI's.
"""
