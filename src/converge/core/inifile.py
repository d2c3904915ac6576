"""Reading the few values Converge needs from Neutron's INI configuration files, without oslo.config, so
that the CLI and the standalone agent stay free of Neutron's libraries. Later files win, as in
oslo.config."""

from __future__ import annotations

import configparser

from converge.core.errors import ConfigurationError

KEYS = ("backend", "controller_urls", "token", "token_file", "ovn_nb_connection", "ovn_timeout",
        "ovn_gateway_chassis", "cafile", "certfile", "keyfile", "insecure")


def read_neutron_config(paths: list[str]) -> dict[str, str]:
    """``db`` ([database] connection) and the ``[converge]`` keys of :data:`KEYS` that are set (lists stay
    comma-separated text)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    for path in paths:
        try:
            with open(path) as f:
                parser.read_file(f, source=path)
        except OSError as err:
            raise ConfigurationError(f"cannot read config file {path}: {err.strerror}") from None
        except configparser.Error as err:
            raise ConfigurationError(f"config file {path} is not valid INI: {err}") from None
    found = {"db": parser.get("database", "connection", fallback="")}
    for key in KEYS:
        found[key] = parser.get("converge", key, fallback="")
    return {k: v.strip() for k, v in found.items() if v and v.strip()}
