"""TLS for the controller connection: the client's context (Converge → a fabric controller behind an
internal CA, optionally presenting a client certificate), the reference controller's own, and the one
sentence an operator reads when a handshake fails.

Why here: both ends need it and the fabric controller may import only ``core``. Called by
``backends.fabric`` (client and event stream), ``fabric.serve`` and the test launchers. Pure ``ssl`` of the
standard library; a file that cannot be loaded becomes a ``ConfigurationError`` naming the file and the
option, never its content (a key file holds a secret).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from converge.core.errors import ConfigurationError


@dataclass(frozen=True)
class TlsFiles:
    """How a client reaches an ``https://`` controller.

    ``ca_file``: PEM bundle of the CA(s) the controller's certificate must chain to (else the system's
    trust store); ``cert_file`` / ``key_file``: the client certificate and its unencrypted key, for a
    controller that requires one (``key_file`` may be omitted when ``cert_file`` holds both);
    ``insecure``: do not verify the controller's certificate at all — an explicit choice, logged as a
    warning by the client.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


KEYS = ("cafile", "certfile", "keyfile", "insecure")  # their [converge] names (converge.neutron.config)


def from_config(conf: Mapping[str, str]) -> TlsFiles:
    """The TLS files of the ``[converge]`` values read without oslo.config (``core.inifile``)."""
    insecure = conf.get("insecure", "false").strip().lower()
    if insecure not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        raise ConfigurationError(f"[converge] insecure {insecure!r} is not a boolean")
    return TlsFiles(ca_file=conf.get("cafile") or None, cert_file=conf.get("certfile") or None,
                    key_file=conf.get("keyfile") or None, insecure=insecure in ("true", "yes", "on", "1"))


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The context a client verifies the controller with (and presents its certificate from)."""
    if files.key_file and not files.cert_file:
        raise ConfigurationError("a TLS key file is set without its certificate ([converge] certfile)")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if files.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif files.ca_file:
        _load(lambda: context.load_verify_locations(cafile=files.ca_file), "CA file", files.ca_file, "cafile")
    if files.cert_file:
        cert, key = files.cert_file, files.key_file
        _load(lambda: context.load_cert_chain(cert, key), "client certificate or key", cert, "certfile/keyfile")
    return context


CLIENT_CERTIFICATE_REQUIRED = "client_certificate_required"  # the fabric's error code for a request without one


def server_context(cert_file: str, key_file: str, client_ca_file: str | None = None) -> ssl.SSLContext:
    """The controller's context: its certificate and key; with ``client_ca_file`` a certificate a client
    presents must be signed by that CA.

    The certificate is *optional* in the handshake (``CERT_OPTIONAL``) and required by the application,
    which answers a request without one ``403 client_certificate_required``: with TLS 1.3 a server that
    refuses the handshake for a missing certificate does so after the client considers it done, and
    asyncio drops the alert, so the client would only see a closed connection."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load(lambda: context.load_cert_chain(cert_file, key_file), "certificate or key", cert_file,
          "--tls-cert/--tls-key")
    if client_ca_file:
        _load(lambda: context.load_verify_locations(cafile=client_ca_file), "client CA file", client_ca_file,
              "--tls-client-ca")
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _load(action: Callable[[], object], what: str, path: str, option: str) -> None:
    try:
        action()
    except FileNotFoundError:
        raise ConfigurationError(f"TLS {what} {path}: no such file ({option})") from None
    except (ssl.SSLError, OSError) as err:
        # The library's reason (e.g. "[SSL] PEM lib"), never the file's content.
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or type(err).__name__
        raise ConfigurationError(f"TLS {what} {path} cannot be loaded: {reason} ({option})") from None


# OpenSSL's reasons for a refused handshake, as an operator should read them.
_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the controller requires a client certificate ([converge] certfile, "
                                         "keyfile)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the controller refused the handshake (a client certificate may be "
                                     "required: [converge] certfile, keyfile)",
    "TLSV1_ALERT_UNKNOWN_CA": "the controller does not trust our client certificate's CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the controller refused our client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the controller refused our client certificate: it has expired",
    "WRONG_VERSION_NUMBER": "the controller does not speak TLS on this URL (use http://, or check the port)",
}


def describe_failure(err: BaseException) -> str | None:
    """One sentence naming why a TLS handshake failed, found in ``err``'s chain of causes; None when the
    failure was not TLS's."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (f"TLS: the controller's certificate was not accepted ({cause.verify_message}); "
                    "check [converge] cafile")
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or ""
            return "TLS: " + _ALERTS.get(reason, f"handshake failed ({reason or cause.strerror or cause})")
        cause = cause.__cause__ or cause.__context__
    return None
