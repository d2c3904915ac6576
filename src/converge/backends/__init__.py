"""Controller backends. The engine sees only :mod:`converge.backends.base`; configuration picks the
implementation (today the fabric protocol over HTTP, ``backends.fabric``)."""
