"""Controller backends. The engine sees only :mod:`converge.backends.base`; configuration picks the
implementation through :mod:`converge.backends.select`: the fabric protocol over HTTP (``backends.fabric``)
or OVN's Northbound DB (``backends.ovn``)."""
