"""2,000 seeded, structure-aware fuzzed CCM messages through the real site: never a 5xx, never an answer over 1 s.

The long run (100,000 by default) is ``benchmarks/fuzz_messages.py``; its figures are in docs/security.md.
"""

from __future__ import annotations

import random

from harness.message_fuzzer import FuzzTokens, MessageFuzzer, send_cases
from mock_site.testing import RunningSite, SiteClient

SEED = 14
COUNT = 2000


def test_fuzzed_messages_get_4xx_or_2xx_and_answer_quickly(clean_site: RunningSite, site_client: SiteClient) -> None:
    device = site_client.register_device()
    tokens = FuzzTokens(ccm=device.ccm_token, entra=device.entra_token, smsid=device.smsid)
    fuzzer = MessageFuzzer(random.Random(SEED), site_code=clean_site.manifest.site_code, tokens=tokens)
    report = send_cases(site_client.http, site_client.server_auth("ccm_system_tokenauth/request"),
                        fuzzer.cases(COUNT))
    assert report.sent == COUNT
    assert report.server_errors == [], report.server_errors[:10]
    assert report.too_slow == [], report.too_slow[:10]
    assert report.statuses is not None
    # Structure-aware: a good share of cases is still a message the MP reads and answers.
    assert report.statuses.get(200, 0) > COUNT // 10 and report.statuses.get(400, 0) > COUNT // 10
