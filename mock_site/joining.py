"""Split roles join by manifest: the links a role process needs, read from the manifests of the processes that run the
other roles, and every link checked against what the role behind it really serves.

``cmg-harness up --role X --join FILE`` takes from each joined manifest (``site-<roles>.json``, written by the process
that serves those roles) exactly the URL this process needs: the CRL *file* (the CRL distribution point the CMG's
certificate will carry), the Entra ID and MP base URLs, every connection point. ``--link ROLE=URL`` still names a role
by hand; either way the site probes the URL before it serves (:class:`LinkProbe`), so a base URL given where the CRL
file is needed is refused at start instead of failing every device later as ``tls.revocation_offline``.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from mock_site.manifest import ManifestError, SiteManifest

#: The roles a site can split into, in the order their URLs are needed (each role links only to roles before it).
JOIN_ROLES = ("crl", "entra", "mp", "cp", "cmg")
#: Where the mock MP answers without side effects: the client package, refused (401) without a token.
MP_PROBE_PATH = "/CCM_Client/ccmsetup.cab"
#: Entra ID's signing keys, which the MP and the CMG fetch from the linked Entra ID.
ENTRA_PROBE_PATH = "/common/discovery/keys"
PROBE_TIMEOUT_SECONDS = 5.0
#: How much of an answer a probe reads (a CRL of many revoked serials is still far below this).
_MAX_PROBE_BYTES = 4 * 1024 * 1024


class JoinError(ValueError):
    """A ``--join`` file or a ``--link`` cannot be used; the one-line message names it and what it served."""


def role_url(manifest: SiteManifest, role: str) -> str | None:
    """The URL of ``role`` exactly as another process needs it (cp: comma-separated), from the manifest of the
    process that serves it; None when that process has none (a site without the mock CMG)."""
    if role == "crl":
        return manifest.crl_url
    if role == "entra":
        return manifest.entra_url
    if role == "mp":
        return manifest.mp_url
    if role == "cp":
        return ",".join(manifest.cp_urls) or None
    if role == "cmg":
        return manifest.cmg_url
    raise JoinError(f"unknown role {role!r}; roles: {', '.join(JOIN_ROLES)}")


def join_links(joins: Sequence[Path], links: Mapping[str, str], *, roles: Iterable[str],
               ca_file: Path | None = None) -> dict[str, str]:
    """The links of a process running ``roles``: the URLs of the other roles from the ``joins`` manifests, then the
    ``links`` given by hand (which win). ``ca_file`` (this process's root CA, when known) must be the joined sites' CA:
    the roles trust one another through it."""
    here = set(roles)
    joined: dict[str, str] = {}
    sources: dict[str, Path] = {}
    for path in joins:
        try:
            manifest = SiteManifest.read(path)
        except ManifestError as error:
            raise JoinError(f"--join: {error}") from None
        _check_same_ca(path, manifest, ca_file)
        for role in manifest.roles:
            url = role_url(manifest, role)
            if role in here or url is None:
                continue
            if role in joined:
                if role == "cp":  # connection points of several processes all serve the CMG
                    joined[role] += "," + url
                    continue
                raise JoinError(f"--join {str(path)!r}: role {role} is also served by {str(sources[role])!r}; "
                                f"join one of them")
            joined[role], sources[role] = url, path
    if joins and not joined and not links:
        raise JoinError(f"--join {', '.join(repr(str(p)) for p in joins)}: no role there that is not run here")
    return {**joined, **links}


def _check_same_ca(path: Path, manifest: SiteManifest, ca_file: Path | None) -> None:
    """A joined site whose CA this host can read must be ours (another host's file cannot be read: the probes judge)."""
    if ca_file is None:
        return
    try:
        theirs = manifest.ca_file.read_bytes()
    except OSError:
        return
    if manifest.ca_file.resolve() == ca_file.resolve():
        return
    try:
        same = ca_file.read_bytes() == theirs
    except OSError:
        same = False
    if not same:
        raise JoinError(f"--join {str(path)!r}: that site's CA {str(manifest.ca_file)!r} is not this one's "
                        f"{str(ca_file)!r}; start every role with the same --state-dir (or a copy of its pki/ folder)")


# --- probing what a link serves --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """What a URL answered: the status, the ConfigMgr-style status text (if any) and the start of the body."""

    status: int
    status_text: str
    body: bytes


#: Fetch ``url`` (GET) with TLS through the given context; raise OSError when nothing answers.
Fetch = Callable[[str, "ssl.SSLContext | None"], ProbeAnswer]


def http_get(url: str, context: ssl.SSLContext | None, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> ProbeAnswer:
    """GET ``url`` once (no redirects followed, bounded time and size)."""
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            return ProbeAnswer(response.status, response.headers.get("x-cmg-status-text", ""),
                               response.read(_MAX_PROBE_BYTES))
    except urllib.error.HTTPError as error:
        return ProbeAnswer(error.code, error.headers.get("x-cmg-status-text", "") if error.headers else "",
                           error.read(_MAX_PROBE_BYTES) if error.fp is not None else b"")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class LinkProbe:
    """Checks that a linked URL serves what this process needs from that role, before the site serves anything.

    ``server_context`` trusts the site CA (to reach Entra ID); ``mp_context`` also presents the connection point's
    client certificate (the MP takes identity headers from nobody else); ``cp_context`` presents the CMG's identity
    (a connection point takes work from nobody else; without it, ``server_context``); ``ca`` checks that a CRL is
    this site's.
    """

    ca: x509.Certificate
    server_context: ssl.SSLContext
    mp_context: ssl.SSLContext
    fetch: Fetch = http_get
    cp_context: ssl.SSLContext | None = None

    def check(self, role: str, url: str) -> None:
        """Raise :class:`JoinError` naming ``--link role=url`` and what it served unless it is what ``role`` serves."""
        if role == "cp":
            for one in url.split(","):
                self._check(role, one, url)
        else:
            self._check(role, url, url)

    def _check(self, role: str, url: str, given: str) -> None:
        name = f"--link {role}={given}"
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise JoinError(f"{name}: {url!r} has a port that is not a number") from None
        if role == "crl":
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise JoinError(f"{name}: the CRL's URL must be http(s)://host[:port]/path, got {url!r}")
            self._check_crl(name, url)
            return
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query:
            raise JoinError(f"{name}: a {role} is linked by its base URL https://host:port (no path), got {url!r}")
        if role == "cmg":
            return  # only named (in the MP's replies and the manifest): the CMG may well start after this process
        if role == "entra":
            answer = self._get(name, url + ENTRA_PROBE_PATH, self.server_context)
            if answer.status != 200 or not _is_jwks(answer.body):
                raise JoinError(f"{name}: {ENTRA_PROBE_PATH} answered {_said(answer)}, not Entra ID's signing keys")
        elif role == "mp":
            answer = self._get(name, url + MP_PROBE_PATH, self.mp_context)
            if answer.status != 401 or not answer.status_text.startswith("MP_"):
                raise JoinError(f"{name}: {MP_PROBE_PATH} without a token answered {_said(answer)}, "
                                f"not a management point's 401 MP_Invalid_Token")
        elif role == "cp":
            # Any answer over TLS the site CA trusts will do.
            self._get(name, url + "/", self.cp_context or self.server_context)

    def _check_crl(self, name: str, url: str) -> None:
        answer = self._get(name, url, self.server_context)
        crl = _parse_crl(answer.body) if answer.status == 200 else None
        if crl is None:
            hint = " (give the CRL file's URL, e.g. the crl_url of that role's manifest, or --join its manifest)" \
                if answer.status == 404 or not urlsplit(url).path.strip("/") else ""
            raise JoinError(f"{name}: answered {_said(answer)}, not a CRL{hint}")
        if crl.issuer != self.ca.subject or not crl.is_signature_valid(self.ca.public_key()):  # type: ignore[arg-type]
            raise JoinError(f"{name}: serves a CRL of another CA ({crl.issuer.rfc4514_string()}), not this site's")

    def _get(self, name: str, url: str, context: ssl.SSLContext) -> ProbeAnswer:
        try:
            return self.fetch(url, context if url.startswith("https:") else None)
        except (OSError, ValueError) as error:
            cause = getattr(error, "reason", None) or error  # urllib wraps what went wrong in URLError.reason
            if isinstance(cause, ssl.SSLError):
                raise JoinError(f"{name}: TLS with {url} failed ({_first_line(cause)}): is it this site's role, "
                                f"sharing its --state-dir (pki/)?") from None
            raise JoinError(f"{name}: nothing answers at {url} ({_first_line(cause)}); start that role first") \
                from None


def _first_line(error: object) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def _said(answer: ProbeAnswer) -> str:
    text = f" {answer.status_text}" if answer.status_text else ""
    return f"{answer.status}{text} ({len(answer.body)} bytes)"


def _is_jwks(body: bytes) -> bool:
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("keys"), list) and bool(document["keys"])


def _parse_crl(body: bytes) -> x509.CertificateRevocationList | None:
    for load in (x509.load_der_x509_crl, x509.load_pem_x509_crl):
        try:
            return load(body)
        except ValueError:
            continue
    return None
