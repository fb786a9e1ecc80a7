"""Helpers for driving a lifecycle without a network: a scripted site that answers every request as the mock site does.

Tests (ours and users') and the benchmark use it: :func:`run_scripted` plays a whole life with a fake clock, and
``ScriptedSite.script`` queues hand-made replies for chosen steps (a 401, a reset, a TLS failure) to inject faults.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from collections import defaultdict, deque
from urllib.parse import parse_qsl, urlsplit

from cmg_protocol import envelope, messages
from cmg_protocol.clock import FakeClock
from cmg_protocol.storage_urls import ContentXml
from harness.client import events as ev
from harness.client import lifecycle as lc
from harness.client.device import DeviceProfile
from harness.client.events import Done, Reply, Request, Response, SiteEndpoints, Wait
from harness.client.outcome import Outcome

#: Lengths of the tokens the scripted site hands out: about what RS256 JWTs with the site's claims measure.
ENTRA_TOKEN_CHARS = 1_050
CCM_TOKEN_CHARS = 900
POLICY_COUNT = 6
#: What the scripted site serves for ccmsetup.cab and the client package, and the hash its content XML announces.
SCRIPTED_CONTENT = b"MSCF" + bytes(60)
SCRIPTED_CONTENT_SHA256 = hashlib.sha256(SCRIPTED_CONTENT).hexdigest().upper()


def scripted_endpoints(*, policy_interval_s: float = 3600.0, time_scale: float = 1.0) -> SiteEndpoints:
    """Endpoints of a site that does not exist: for driving a lifecycle with :class:`ScriptedSite`."""
    return SiteEndpoints(cmg_url="https://cmg.test:8443", role_id="72186325152220500",
                         entra_url="https://entra.test:9443", site_code="MEM", policy_interval_s=policy_interval_s,
                         time_scale=time_scale)


class ScriptedSite:
    """Answers lifecycle requests like the mock site, with tokens that live ``ccm_lifetime`` / ``entra_lifetime``."""

    def __init__(self, clock: FakeClock, *, rng: random.Random | None = None, ccm_lifetime: float = 8 * 3600.0,
                 entra_lifetime: float = 75 * 60.0, elapsed: float = 0.0) -> None:
        self.clock = clock
        self.rng = rng or random.Random(0)
        self.ccm_lifetime = ccm_lifetime
        self.entra_lifetime = entra_lifetime
        self.elapsed = elapsed
        self.requests: list[Request] = []
        self.entra_tokens: list[str] = []
        self.ccm_tokens: list[str] = []
        #: Keep requests and tokens (off for benchmarks, so the site does not grow).
        self.record = True
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._policies = tuple(
            messages.PolicyAssignment(policy_id="{" + str(uuid.UUID(int=n + 1)).upper() + "}", policy_version="1.00",
                                      policy_type="Machine", policy_category="Machine", policy_flags=0,
                                      location_url=f"http://<mp>/SMS_MP/.sms_pol?{{{str(uuid.UUID(int=n + 1)).upper()}}}"
                                                   f"/1.00")
            for n in range(POLICY_COUNT))
        self._assignments_xml = messages.ReplyAssignments(assignments=self._policies).to_xml()
        self._reply_header = envelope.MessageHeader(target_endpoint="SccmMessaging", source_host="MP.CORP.CONTOSO.COM",
                                                    message_id="{36EE3A78-8F6E-425F-BF5C-8460E8E56C33}")

    def script(self, step: str, *replies: Reply) -> None:
        """Answer the next requests of ``step`` with ``replies`` (in order) instead of the normal answer."""
        self._scripts[step].extend(replies)

    def bump_policies(self) -> None:
        """Publish a new version of the first policy (the next poll fetches one body)."""
        first = self._policies[0]
        newer = messages.PolicyAssignment(first.policy_id, "2.00", first.policy_type, first.policy_category,
                                          first.policy_flags, first.location_url.replace("/1.00", "/2.00"))
        self._policies = (newer, *self._policies[1:])
        self._assignments_xml = messages.ReplyAssignments(assignments=self._policies).to_xml()

    def answer(self, request: Request) -> Reply:
        """The reply the site would give ``request`` (or the next scripted one for its step)."""
        if self.record:
            self.requests.append(request)
        scripted = self._scripts.get(request.step)
        if scripted:
            return scripted.popleft()
        step, ms = request.step, self.elapsed
        if step == ev.STEP_AAD_INFO:
            tenant = dict(parse_qsl(urlsplit(request.url).query))["TenantID"]
            info = {"AADTENANTID": tenant, "AADCLIENTAPPID": "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
                    "AADRESOURCEURI": "https://ConfigMgrService"}
            return Response(200, json.dumps(info).encode(), content_type="application/json", ms=ms)
        if step == ev.STEP_ENTRA_TOKEN:
            token = self._token(ENTRA_TOKEN_CHARS)
            if self.record:
                self.entra_tokens.append(token)
            entra = {"access_token": token, "token_type": "Bearer", "expires_in": int(self.entra_lifetime),
                     "resource": "https://ConfigMgrService"}
            return Response(200, json.dumps(entra).encode(), content_type="application/json", ms=ms)
        if step == ev.STEP_CCM_TOKEN:
            now = self.clock()
            token = self._token(CCM_TOKEN_CHARS)
            if self.record:
                self.ccm_tokens.append(token)
            ccm = {"token": token, "token_type": "UDA", "expires_in": self.ccm_lifetime,
                   "expires_at": now + self.ccm_lifetime}
            return Response(200, json.dumps(ccm).encode(), content_type="application/json", ms=ms)
        if step in (ev.STEP_CCMSETUP_CAB, ev.STEP_CONTENT_DOWNLOAD):
            return Response(200, SCRIPTED_CONTENT, content_type="application/octet-stream", ms=ms)
        if step == ev.STEP_CONTENT_XML:
            # A content-enabled CMG: the content is on its storage, behind a signed URL (the signature is not checked).
            url = ("https://storage.test:8444/content/CS100001/CS100001?tid=t&oid=o&iss=cmg&alg=HMACSHA256"
                   "&st=2020-06-24T15:00:00Z&se=2020-06-24T16:00:00Z&sig=c2ln")
            content_info = ContentXml(package_id="CS100001", url=url, size=64, sha256=SCRIPTED_CONTENT_SHA256)
            return Response(200, content_info.to_xml().encode(), content_type="text/xml; charset=utf-8", ms=ms)
        if step == ev.STEP_POLICY_BODY:
            query = urlsplit(request.url).query
            policy_id, _, version = query.partition("/")
            body = messages.PolicyBody(policy_id=policy_id, policy_version=version, body="<Policy/>").to_bytes()
            return Response(200, body, content_type="text/xml; charset=utf-16", ms=ms)
        message = envelope.decode_message(request.headers.get("Content-Type"), request.body)
        if step == ev.STEP_SITE_INFO:
            reply_xml = messages.SiteInfoReply(site_code="MEM", version="5.00.8968.1000", build_number=8968).to_xml()
        elif step == ev.STEP_CONTENT_LOCATION:
            url = "https://cmg.test:8443/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001"
            reply_xml = messages.ContentLocationReply(site_code="MEM", urls=(url,)).to_xml()
        elif step == ev.STEP_REGISTRATION:
            smsid = "GUID:" + str(uuid.UUID(int=self.rng.getrandbits(128))).upper()
            reply_xml = messages.RegistrationResponse(status=0, smsid=smsid, approval_status=3,
                                                      timestamp="2020-06-24T15:31:46Z").to_xml()
        elif step == ev.STEP_POLICY_ASSIGNMENTS:
            reply_xml = self._assignments_xml
        else:
            raise AssertionError(f"the scripted site has no answer for step {step!r}")
        header = envelope.MessageHeader(target_endpoint="SccmMessaging", source_host="MP.CORP.CONTOSO.COM",
                                        message_id=self._reply_header.message_id,
                                        correlation_id=message.header.message_id)
        return Response(200, envelope.encode_message(header, reply_xml), content_type=envelope.CONTENT_TYPE, ms=ms)

    def _token(self, chars: int) -> str:
        # Distinct per answer, like real tokens, so memory measurements do not profit from shared strings.
        return base64.urlsafe_b64encode(self.rng.randbytes(chars * 3 // 4)).decode("ascii")[:chars]


def drive(life: lc.Lifecycle, site: ScriptedSite, *, max_actions: int = 10_000) -> Outcome:
    """Play ``life`` against ``site`` to its end, jumping the fake clock over every Wait."""
    for _ in range(max_actions):
        action = life.next_request()
        if isinstance(action, Done):
            return action.outcome
        if isinstance(action, Wait):
            site.clock.now = max(site.clock.now, action.until)
            continue
        life.feed(site.answer(action))
    raise AssertionError(f"the life did not end within {max_actions} actions")


def run_scripted(profile: DeviceProfile, *, polls: int = 1, seed: int = 0,
                 **site_options: float) -> tuple[Outcome, ScriptedSite]:
    """Play a whole life of ``profile`` against a fresh :class:`ScriptedSite`; returns the outcome and the site."""
    clock = FakeClock()
    site = ScriptedSite(clock, rng=random.Random(seed), **site_options)
    life = lc.Lifecycle(profile, scripted_endpoints(), clock=clock, rng=random.Random(seed), polls=polls)
    return drive(life, site), site
