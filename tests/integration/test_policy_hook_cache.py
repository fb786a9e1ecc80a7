"""The MP's cache of verified clientauth hooks never outlives the key they verified with."""

from __future__ import annotations

from mock_site.testing import RunningSite, SiteClient


def test_a_cached_policy_signature_is_refused_while_the_key_change_fault_is_on(clean_site: RunningSite,
                                                                               site_client: SiteClient) -> None:
    _, smsid, token = site_client.register_device()
    for _ in range(2):  # the second poll is answered from the cache
        assert site_client.policy(token, smsid).status_code == 200
    clean_site.set_fault("policy_signature_mismatch", duration=30)
    refused = site_client.policy(token, smsid)
    assert (refused.status_code, refused.reason_phrase) == (403, "MP_Signature_Invalid")
    clean_site.clear_fault("policy_signature_mismatch")
    assert site_client.policy(token, smsid).status_code == 200
