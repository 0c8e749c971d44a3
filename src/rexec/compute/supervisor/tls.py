"""TLS for QAP, terminated in the server process so R shells never hold the key.

Both ways in — a dedicated TLS port, and Rserve's in-band CMD_switch "TLS" before the
first command — end in the same place: the encrypted client socket stays here, and the
shell talks plain QAP over one end of a socket pair while :func:`relay` copies bytes
between the two.

Client certificates (``tls.client``, ``tls.ca``) follow Rserve's ``tls.client``:
``none`` asks for none; ``request`` asks, and a certificate that is shown must verify
against ``tls.ca``; ``require`` fails the handshake of a connection without a valid
one; ``match:A,B``, ``prefix:P`` and ``suffix:S`` require one and also check its
subject's common name (after the handshake: a mismatch closes the connection before the
greeting). ``tls.crl``, rexec's own, revokes client certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from rexec.config import Config
from rexec.revocation import load_crls

HANDSHAKE_TIMEOUT = 10.0
_CHUNK = 1 << 16
#: tls.client values besides the rules (``match:``, ``prefix:``, ``suffix:``).
CLIENT_MODES = ("none", "request", "require")
_RULES = ("match:", "prefix:", "suffix:")


class ClientRefused(ConnectionError):
    """A client certificate that verified, but whose name the ``tls.client`` rule refuses."""


class ServerContext(ssl.SSLContext):
    """The server's context; ``client_rule``: the ``tls.client`` rule its client
    certificates' common names must pass ("": none)."""

    client_rule: str = ""


def client_rule_problem(value: str) -> str | None:
    """Why ``value`` is not a ``tls.client`` setting, or None."""
    if value in CLIENT_MODES:
        return None
    if value.startswith(_RULES) and value.partition(":")[2].strip(", "):
        return None
    return (
        f"tls.client: {value!r} is none of {', '.join(CLIENT_MODES)}, "
        "match:NAME[,NAME...], prefix:TEXT, suffix:TEXT"
    )


def make_context(config: Config) -> ssl.SSLContext | None:
    """The server context, or None when no certificate is configured. Raises
    RuntimeError for a ``tls.client`` that is not one or lacks a ``tls.ca``, and for
    files that cannot be read."""
    cert, key = config["tls.cert"], config["tls.key"]
    client, ca, crl = config["tls.client"], config["tls.ca"], config["tls.crl"]
    problem = client_rule_problem(client)
    if problem:
        raise RuntimeError(problem)
    if not cert:
        if client != "none" or ca or crl:
            raise RuntimeError("tls.client, tls.ca and tls.crl need tls.cert (and tls.key)")
        return None
    if client != "none" and not ca:
        raise RuntimeError(f"tls.client = {client!r} needs tls.ca (the clients' CAs)")
    if crl and (client == "none" or not ca):
        raise RuntimeError("tls.crl needs tls.client and tls.ca: it checks client certificates")
    # Not create_default_context(CLIENT_AUTH): it would trust the system's CAs for
    # client certificates; only tls.ca's are.
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f"tls.cert {cert!r} / tls.key {key!r}: {exc}") from None
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise RuntimeError(f"tls.ca {ca!r}: {exc}") from None
    if crl:
        try:
            load_crls(context, crl)
        except ValueError as exc:
            raise RuntimeError(f"tls.crl {crl!r}: {exc}") from None
    if client == "request":
        context.verify_mode = ssl.CERT_OPTIONAL
    elif client != "none":
        context.verify_mode = ssl.CERT_REQUIRED
        context.client_rule = "" if client == "require" else client
    return context


def common_name(peercert: dict | None) -> str | None:
    """The subject's commonName of a certificate as ``SSLSocket.getpeercert()`` gives it."""
    for rdn in (peercert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return None


def rule_allows(rule: str, name: str | None) -> bool:
    """Rserve's ``tls.client`` rules: ``match:`` a comma-separated list of names,
    ``prefix:``, ``suffix:``; "" allows every (verified) certificate."""
    if not rule:
        return True
    if name is None:
        return False
    kind, _, text = rule.partition(":")
    if kind == "match":
        return name in (part.strip() for part in text.split(","))
    return name.startswith(text) if kind == "prefix" else name.endswith(text)


async def accept(
    client: socket.socket, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Handshake with ``client`` as the TLS server; the plain-text streams over it.
    Raises :class:`ClientRefused` when the client certificate's name fails the rule."""
    loop = asyncio.get_running_loop()
    client.setblocking(False)
    reader = asyncio.StreamReader(limit=_CHUNK)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol, client, ssl=context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
    )
    rule = getattr(context, "client_rule", "")
    if rule:
        name = common_name(transport.get_extra_info("peercert"))
        if not rule_allows(rule, name):
            transport.close()
            raise ClientRefused(f"client certificate {name!r} fails tls.client {rule!r}")
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def relay(
    tls_reader: asyncio.StreamReader,
    tls_writer: asyncio.StreamWriter,
    inner: socket.socket,
    prefix: bytes = b"",
) -> None:
    """Copy bytes both ways between the TLS streams and ``inner`` (the shell's plain
    side) until either side closes; ``prefix``: plain bytes already read from TLS."""
    plain_reader, plain_writer = await asyncio.open_unix_connection(sock=inner)
    if prefix:
        plain_writer.write(prefix)

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    await asyncio.gather(pump(tls_reader, plain_writer), pump(plain_reader, tls_writer))
