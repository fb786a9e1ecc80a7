"""The MP remembers parsed RequestAssignments bodies: by their whole text, never a bad one."""

from __future__ import annotations

import pytest

from cmg_protocol.messages import MessageError, RequestAssignments
from mock_site import mp


def _body(client_id: str, site_code: str = "PS1") -> str:
    return RequestAssignments(client_id=client_id, fqdn="d.example", netbios_name="D", sid="", site_code=site_code).to_xml()


def test_a_repeated_body_is_parsed_once_and_another_body_afresh() -> None:
    first = _body("GUID:00000000-0000-0000-0000-0000000000AA")
    again = mp._request_assignments(first)
    assert mp._request_assignments("".join(list(first))) is again  # an equal text, not only the same object
    assert again.client_id == "GUID:00000000-0000-0000-0000-0000000000AA"
    # One character apart: another client, another site; each is read from its own text.
    other = mp._request_assignments(_body("GUID:00000000-0000-0000-0000-0000000000AB"))
    assert other.client_id == "GUID:00000000-0000-0000-0000-0000000000AB"
    assert mp._request_assignments(_body("GUID:00000000-0000-0000-0000-0000000000AA", "PS2")).site_code == "PS2"
    assert mp._request_assignments(first).site_code == "PS1"


def test_a_body_that_does_not_parse_is_refused_every_time() -> None:
    bad = _body("GUID:00000000-0000-0000-0000-0000000000AA").replace("SMS:PS1", "PS1")
    for _ in range(3):
        with pytest.raises(MessageError, match="PolicySource"):
            mp._request_assignments(bad)


@pytest.mark.parametrize(("value", "valid"), [
    ("GUID:00000000-0000-0000-0000-0000000000AA", True),
    ("guid:00000000-0000-0000-0000-0000000000aa", True),
    ("GUID:00000000-0000-0000-0000-0000000000AG", False),  # one character from a valid id
    ("GUID:00000000-0000-0000-0000-0000000000A", False),
    ("GUID:{00000000-0000-0000-0000-0000000000AA}", False),  # 43 characters
    ("UUID:00000000-0000-0000-0000-0000000000AA", False),
    ("", False),
])
def test_a_client_id_is_judged_the_same_every_time(value: str, valid: bool) -> None:
    """The MP's check of a ClientID (remembered per id) gives the same answer on every poll."""
    assert [mp._is_smsid(value) for _ in range(3)] == [valid] * 3
