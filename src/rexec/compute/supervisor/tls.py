"""TLS for QAP, terminated in the server process so R shells never hold the key.

Both ways in — a dedicated TLS port, and Rserve's in-band CMD_switch "TLS" — end in
the same place: the encrypted client socket stays here, and the shell talks plain QAP
over one end of a socket pair while :func:`relay` copies bytes between the two.
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


async def relay(client: socket.socket, inner: socket.socket, context: ssl.SSLContext) -> None:
    """Handshake with ``client`` as the TLS server, then copy bytes both ways until
    either side closes."""
    loop = asyncio.get_running_loop()
    client.setblocking(False)
    tls_reader = asyncio.StreamReader(limit=_CHUNK)
    protocol = asyncio.StreamReaderProtocol(tls_reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol, client, ssl=context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
    )
    tls_writer = asyncio.StreamWriter(transport, protocol, tls_reader, loop)
    plain_reader, plain_writer = await asyncio.open_unix_connection(sock=inner)

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
