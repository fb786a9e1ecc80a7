"""The edges of the clientauth key-blob and ClientToken parsers: the largest blob still read, the smallest key still
taken, odd bit lengths, and a ClientToken without its time field."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import clientauth
from cmg_protocol.clientauth import ClientAuthError

HEADER = bytes.fromhex("0602000000A4000052534131")  # PUBLICKEYBLOB, CALG_RSA_KEYX, "RSA1"


def _blob(bits: int, modulus: int, *, modulus_bytes: int | None = None, exponent: int = 65537) -> str:
    size = (bits + 7) // 8 if modulus_bytes is None else modulus_bytes
    return (HEADER + bits.to_bytes(4, "little") + exponent.to_bytes(4, "little")
            + modulus.to_bytes(size, "little")).hex().upper()


def _odd_modulus(bits: int) -> int:
    """An odd number of exactly ``bits`` bits (the parser checks sizes, not primes)."""
    return (1 << (bits - 1)) | 1


def test_the_largest_rsa_key_blob_is_read() -> None:
    """A 16,384-bit key, the largest CryptoAPI writes, fills the length limit exactly and is read."""
    blob = _blob(16384, _odd_modulus(16384))
    assert len(blob) == 2 * (12 + 8 + 2048)
    assert clientauth.public_key_from_blob(blob).key_size == 16384


def test_one_byte_past_the_largest_blob_is_refused_for_its_length() -> None:
    blob = _blob(16384, _odd_modulus(16384)) + "00"
    with pytest.raises(ClientAuthError, match=r"^PublicKey is 4138 hex characters, more than any RSA key blob$"):
        clientauth.public_key_from_blob(blob)


def test_a_1024_bit_key_is_the_smallest_taken() -> None:
    assert clientauth.public_key_from_blob(_blob(1024, _odd_modulus(1024))).key_size == 1024
    with pytest.raises(ClientAuthError, match=r"^PublicKey blob holds 128 modulus bytes for a 1023-bit key$"):
        clientauth.public_key_from_blob(_blob(1023, _odd_modulus(1023)))


def test_a_bit_length_that_is_not_a_whole_number_of_bytes_rounds_up() -> None:
    """A 1,025-bit modulus takes 129 bytes: written so, read back the same, and 128 bytes for it are refused."""
    key = rsa.RSAPublicNumbers(65537, _odd_modulus(1025)).public_key()
    blob = clientauth.public_key_blob(key)
    assert len(bytes.fromhex(blob)) == 12 + 8 + 129
    assert clientauth.public_key_from_blob(blob).public_numbers() == key.public_numbers()
    with pytest.raises(ClientAuthError, match=r"^PublicKey blob holds 128 modulus bytes for a 1025-bit key$"):
        clientauth.public_key_from_blob(_blob(1025, _odd_modulus(1024), modulus_bytes=128))


@pytest.mark.parametrize("token", ["GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139", "SMS:C66EE0FD;2026-01-01T00:00:00Z",
                                   ";2026-01-01T00:00:00Z"])
def test_a_client_token_needs_a_guid_and_a_time(token: str) -> None:
    with pytest.raises(ClientAuthError, match=r"^ClientToken is not GUID:<id>;<time>\[;2\]: "):
        clientauth.client_token_id(token)


def test_a_client_token_names_its_client() -> None:
    assert clientauth.client_token_id("guid:ab;2026-01-01T00:00:00Z;2") == "guid:ab"


def test_every_byte_of_the_bit_length_and_exponent_is_read() -> None:
    """A bit length with its high byte set is no 1,024-bit key, and an exponent of four bytes is kept whole."""
    with pytest.raises(ClientAuthError, match=r"^PublicKey blob holds 128 modulus bytes for a 16778240-bit key$"):
        clientauth.public_key_from_blob(_blob(0x01000400, _odd_modulus(1024), modulus_bytes=128))
    exponent = 0x7FFFFFFF
    assert clientauth.public_key_from_blob(_blob(1024, _odd_modulus(1024), exponent=exponent)).public_numbers().e \
        == exponent
