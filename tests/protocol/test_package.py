"""Specification of the protocol package's public surface."""

from __future__ import annotations

import cmg_protocol as protocol


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions, each alphabetical.
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_all_is_sorted() -> None:
    """__all__ is kept in isort order so additions are easy to review."""
    assert protocol.__all__ == sorted(protocol.__all__, key=_isort_key)


def test_every_exported_name_exists() -> None:
    """Each name in __all__ is importable from the package."""
    missing = [name for name in protocol.__all__ if not hasattr(protocol, name)]
    assert missing == []


def test_contract_names_are_exported() -> None:
    """The names docs/internals.md promises are part of the package surface."""
    promised = {
        "MessageHeader", "Message", "EnvelopeError", "encode_message", "decode_message", "BOUNDARY", "CONTENT_TYPE",
        "parse_xml", "root_tag", "TokenRejected", "issue_entra_token", "verify_entra_token", "issue_ccm_token",
        "verify_ccm_token", "match", "Route", "AuthKind", "UrlMapError", "cmtrace_line", "parse_cmtrace_line",
        "smstrace_line", "parse_smstrace_line", "cmgservice_text", "parse_cmgservice_text",
    }
    assert promised <= set(protocol.__all__)
