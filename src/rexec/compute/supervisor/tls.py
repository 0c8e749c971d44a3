"""TLS for QAP, terminated in the server process so R shells never hold the key.

Both ways in — a dedicated TLS port, and Rserve's in-band CMD_switch "TLS" before the
first command — end in the same place: the encrypted client socket stays here, and the
shell talks plain QAP over one end of a socket pair while :func:`relay` copies bytes
between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from rexec.config import Config

HANDSHAKE_TIMEOUT = 10.0
_CHUNK = 1 << 16


def make_context(config: Config) -> ssl.SSLContext | None:
    """The server context, or None when no certificate is configured."""
    cert, key = config["tls.cert"], config["tls.key"]
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key or None)
    return context


async def accept(
    client: socket.socket, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Handshake with ``client`` as the TLS server; the plain-text streams over it."""
    loop = asyncio.get_running_loop()
    client.setblocking(False)
    reader = asyncio.StreamReader(limit=_CHUNK)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol, client, ssl=context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
    )
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
