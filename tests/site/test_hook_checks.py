"""The clientauth hook cache: a hook verified once is not verified again, and it never passes what verify_hook refuses."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import clientauth
from mock_site.hook_checks import HookVerifier

CLIENT = "GUID:00000000-0000-0000-0000-0000000000AA"
OTHER = "GUID:00000000-0000-0000-0000-0000000000BB"
PAYLOAD = b"<RequestAssignments/>".decode().encode("utf-16-le")


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = clientauth.verify_hook

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(clientauth, "verify_hook", counted)
    return calls


def test_a_verified_hook_is_not_verified_again(key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    hook = clientauth.hook_properties(key, CLIENT, PAYLOAD, "DEVICE")
    verifier = HookVerifier()
    registered = key.public_key()
    for _ in range(5):
        verifier.verify(hook, registered, CLIENT, PAYLOAD)
    assert len(calls) == 1
    assert len(verifier) == 1


def test_a_refused_hook_is_refused_every_time(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    forged = clientauth.hook_properties(other_key, CLIENT, PAYLOAD, "DEVICE")
    verifier = HookVerifier()
    registered = key.public_key()
    for _ in range(3):
        with pytest.raises(clientauth.ClientAuthError):
            verifier.verify(forged, registered, CLIENT, PAYLOAD)
    assert len(calls) == 3 and len(verifier) == 0


def test_a_cached_hook_never_passes_what_the_uncached_check_refuses(key: rsa.RSAPrivateKey,
                                                                    other_key: rsa.RSAPrivateKey) -> None:
    registered = key.public_key()
    hook = clientauth.hook_properties(key, CLIENT, PAYLOAD, "DEVICE")
    verifier = HookVerifier()
    verifier.verify(hook, registered, CLIENT, PAYLOAD)
    changes = [
        (hook, other_key.public_key(), CLIENT, PAYLOAD),  # the client registered another key (or the key fault)
        (hook, registered, OTHER, PAYLOAD),  # the same hook replayed as another client
        (hook, registered, CLIENT, PAYLOAD + b"x\x00"),  # another body under the same signatures
        (hook[:3] + hook[4:], registered, CLIENT, PAYLOAD),  # PayloadSignature dropped
    ]
    for properties, public, client_id, payload in changes:
        with pytest.raises(clientauth.ClientAuthError):
            clientauth.verify_hook(properties, public, client_id, payload)
        with pytest.raises(clientauth.ClientAuthError):
            verifier.verify(properties, public, client_id, payload)
    verifier.verify(hook, registered, CLIENT, PAYLOAD)  # the original still passes


def test_the_cache_is_bounded_and_drops_its_oldest_entry(key: rsa.RSAPrivateKey,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = HookVerifier(max_entries=2)
    registered = key.public_key()
    payloads = [PAYLOAD + bytes([n, 0]) for n in range(3)]
    hooks = [clientauth.hook_properties(key, CLIENT, payload, "DEVICE") for payload in payloads]
    for hook, payload in zip(hooks, payloads, strict=True):
        verifier.verify(hook, registered, CLIENT, payload)
    assert len(verifier) == 2
    calls = _counting(monkeypatch)
    verifier.verify(hooks[2], registered, CLIENT, payloads[2])
    assert calls == []
    verifier.verify(hooks[0], registered, CLIENT, payloads[0])  # dropped: checked again
    assert calls == [1]


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^hook cache bound must be >= 1, got 0$"):
        HookVerifier(max_entries=0)



def test_a_cache_of_one_keeps_the_latest_hook(key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """The smallest bound works: each new hook replaces the one before it."""
    verifier = HookVerifier(max_entries=1)
    registered = key.public_key()
    first, second = PAYLOAD + b"1\x00", PAYLOAD + b"2\x00"
    hooks = {payload: clientauth.hook_properties(key, CLIENT, payload, "DEVICE") for payload in (first, second)}
    verifier.verify(hooks[first], registered, CLIENT, first)
    verifier.verify(hooks[second], registered, CLIENT, second)
    calls = _counting(monkeypatch)
    verifier.verify(hooks[second], registered, CLIENT, second)
    assert (calls, len(verifier)) == ([], 1)
    verifier.verify(hooks[first], registered, CLIENT, first)
    assert calls == [1]


def test_the_cache_key_keeps_every_text_apart() -> None:
    """Texts that only run together differently, or a payload that differs in one byte, never share a cache key."""
    from mock_site.hook_checks import _digest

    variants = [
        ((("ab", "c"),), CLIENT, PAYLOAD),
        ((("a", "bc"),), CLIENT, PAYLOAD),
        ((("", "abc"),), CLIENT, PAYLOAD),
        ((("1:a", "c"),), CLIENT, PAYLOAD),
        ((("a", "b"), ("c", "")), CLIENT, PAYLOAD),
        ((("a", "b"),), CLIENT + "c", PAYLOAD),
        ((("a", "b"),), CLIENT, PAYLOAD + b"\x00"),
        ((("a", "b"),), CLIENT, PAYLOAD[:-1] + b"\x01"),
        ((("a", "\ud800"),), CLIENT, PAYLOAD),  # a lone surrogate (an XML parser never yields one; still a key)
    ]
    keys = {_digest(*variant) for variant in variants}
    assert len(keys) == len(variants)
    assert _digest(*variants[0]) == _digest((("a" + "b", "c"),), CLIENT, bytes(PAYLOAD))
