"""Clientauth hook verification with a cache of the hooks that verified.

A client signs the same RequestAssignments body with the same key on every policy poll, and PKCS#1 v1.5 signatures
are deterministic, so the MP sees the very same (hook, payload) for hours. Checking a hook costs two RSA verifications
and a key comparison (~20 % of a policy request's time on the MP); :class:`HookVerifier` remembers the hooks that
passed, against the key they passed with, and checks again whenever anything differs. Only successes are remembered:
a refused hook is checked (and refused) every time, and a remembered one counts only for the very key object it
verified with, so a changed registration or the key-change fault (another key) is checked afresh and refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import clientauth


class HookVerifier:
    """:func:`clientauth.verify_hook` with the verified (client, hook, payload) remembered by SHA-256; bounded."""

    def __init__(self, *, max_entries: int = 50_000) -> None:
        if max_entries < 1:
            raise ValueError(f"hook cache bound must be >= 1, got {max_entries!r}")
        self._max = max_entries
        # Insertion-ordered: when full, the oldest entry makes room (one at a time, never the whole cache).
        self._verified: dict[bytes, rsa.RSAPublicKey] = {}

    def verify(self, properties: Sequence[tuple[str, str]], registered: rsa.RSAPublicKey, client_id: str,
               payload: bytes) -> None:
        """Return if the hook verifies with ``registered``; raise :class:`clientauth.ClientAuthError` otherwise."""
        key = _digest(properties, client_id, payload)
        if self._verified.get(key) is registered:
            return
        clientauth.verify_hook(properties, registered, client_id, payload)
        if key not in self._verified and len(self._verified) >= self._max:
            del self._verified[next(iter(self._verified))]
        self._verified[key] = registered

    def __len__(self) -> int:
        return len(self._verified)


def _digest(properties: Sequence[tuple[str, str]], client_id: str, payload: bytes) -> bytes:
    # SHA-256 over everything verify_hook reads (each text length-prefixed, so no two inputs run together): 32 bytes
    # an entry instead of the ~2 KB of hex signatures and the body. The texts are joined first: one encode and one
    # update instead of two per text.
    texts = "".join(f"{len(text)}:{text}" for text in (client_id, *(text for pair in properties for text in pair)))
    digest = hashlib.sha256(texts.encode("utf-8", "surrogatepass"))
    digest.update(len(payload).to_bytes(8, "little"))
    digest.update(payload)
    return digest.digest()
