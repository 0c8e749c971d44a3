"""Certificate revocation lists for TLS contexts, shared by the compute node (its
clients' certificates, ``tls.crl``) and the web node (compute nodes' certificates,
``compute_tls.crl``): files of PEM ``X509 CRL`` blocks, checked for the peer's own
certificate (OpenSSL's CRL_CHECK_LEAF: its issuer needs a CRL in the file)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

_PEM_LABEL = re.compile(r"^-----BEGIN ([A-Z0-9 ]+)-----\s*$", re.MULTILINE)


def load_crls(context: ssl.SSLContext, path: str) -> None:
    """Add the CRLs of ``path`` to ``context`` and check the peer's certificate against
    them. OpenSSL reads certificates from the same file as CRLs and would trust them as
    CAs, so a file with anything but ``X509 CRL`` blocks is refused. Raises ValueError
    with the reason."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    labels = _PEM_LABEL.findall(text)
    if not labels or any(label != "X509 CRL" for label in labels):
        found = ", ".join(sorted(set(labels))) or "no PEM block"
        raise ValueError(f"X509 CRL blocks only, found {found}")
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(str(exc)) from None
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
