"""Location messages (MP_LocationManager): site information, content locations and the MP list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from .xmlbase import (
    MessageError,
    as_int,
    child_text,
    escape_attr,
    escape_text,
    expect_root,
    flag_text,
    parse_flag,
    parse_int,
    parse_xml,
    required_attr,
    required_child,
)


@dataclass(frozen=True, slots=True)
class SiteInformationRequest:
    """``SiteInformationRequest``: which site (version, build) the client was told to join."""

    ROOT: ClassVar[str] = "SiteInformationRequest"

    site_code: str

    def to_xml(self) -> str:
        """The request as XML."""
        # synthetic: not the public ConfigMgr format (the SiteCode child's shape)
        return f'<{self.ROOT} SchemaVersion="1.00"><SiteCode Name="{escape_attr(self.site_code)}"/></{self.ROOT}>'

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a request, naming what is missing."""
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        return cls(site_code=required_attr(required_child(root, "SiteCode"), "Name"))


@dataclass(frozen=True, slots=True)
class SiteInfoReply:
    """``SiteInfoReply``: the site's code, version and build number (and, in our mock, its MP name)."""

    ROOT: ClassVar[str] = "SiteInfoReply"

    site_code: str
    version: str
    build_number: int
    mp_name: str | None = None

    def to_xml(self) -> str:
        """The reply as XML."""
        # synthetic: not the public ConfigMgr format (an MP child naming the management point)
        mp = "" if self.mp_name is None else f"<MP>{escape_text(self.mp_name)}</MP>"
        return (
            f'<{self.ROOT} SchemaVersion="1.00"><Site><SiteCode>{escape_text(self.site_code)}</SiteCode>'
            f"<Version>{escape_text(self.version)}</Version><BuildNumber>{self.build_number:d}</BuildNumber>"
            f"{mp}</Site></{self.ROOT}>"
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a reply, naming what is missing."""
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        site = required_child(root, "Site")
        mp = site.find("MP")
        return cls(
            site_code=child_text(site, "SiteCode"),
            version=child_text(site, "Version"),
            build_number=parse_int(child_text(site, "BuildNumber"), "BuildNumber"),
            mp_name=None if mp is None else (mp.text or ""),
        )


@dataclass(frozen=True, slots=True)
class ContentLocationRequest:
    """``ContentLocationRequest``: where to download a package, or the client package when ``package_id`` is None."""

    ROOT: ClassVar[str] = "ContentLocationRequest"

    site_code: str
    package_id: str | None
    package_version: str
    use_azure: bool = True
    use_internet_dp: bool = True

    def to_xml(self) -> str:
        """The request as XML."""
        version = escape_attr(self.package_version)
        if self.package_id is None:
            # synthetic: not the public ConfigMgr format (a Version attribute on ClientPackage)
            package = f'<ClientPackage RequestForLatest="0" Version="{version}"/>'
        else:
            package = f'<Package ID="{escape_attr(self.package_id)}" Version="{version}"/>'
        return (
            f'<{self.ROOT} SchemaVersion="1.00" BGRVersion="1">{package}'
            f'<AssignedSite SiteCode="{escape_attr(self.site_code)}"/>'
            f'<ClientLocationInfo LocationType="SMSPackage" UseProtocol="https"'
            f' UseAzure="{flag_text(self.use_azure)}" UseInternetDP="{flag_text(self.use_internet_dp)}"/>'
            f"</{self.ROOT}>"
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a request, naming what is missing."""
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        client_package = root.find("ClientPackage")
        if client_package is not None:
            package_id, version = None, client_package.get("Version", "")
        else:
            package = required_child(root, "Package")
            package_id, version = required_attr(package, "ID"), required_attr(package, "Version")
        info = required_child(root, "ClientLocationInfo")
        return cls(
            site_code=required_attr(required_child(root, "AssignedSite"), "SiteCode"),
            package_id=package_id,
            package_version=version,
            use_azure=parse_flag(required_attr(info, "UseAzure"), "UseAzure"),
            use_internet_dp=parse_flag(required_attr(info, "UseInternetDP"), "UseInternetDP"),
        )


@dataclass(frozen=True, slots=True)
class ContentLocationReply:
    """``ContentLocationReply``: the download URLs for the requested content, in order of preference."""

    ROOT: ClassVar[str] = "ContentLocationReply"

    site_code: str
    urls: tuple[str, ...]

    def to_xml(self) -> str:
        """The reply as XML."""
        records = "".join(f'<LocationRecord><URL Name="{escape_attr(url)}"/></LocationRecord>' for url in self.urls)
        site = escape_attr(self.site_code)
        return (
            f'<{self.ROOT} SchemaVersion="1.00"><Sites><Site>'
            f'<MPSite SiteCode="{site}" MasterSiteCode="{site}" SiteLocality="LOCAL"/>'
            f"<LocationRecords>{records}</LocationRecords></Site></Sites></{self.ROOT}>"
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a reply, naming what is missing."""
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        site = required_child(root, "Sites/Site")
        records = required_child(site, "LocationRecords")
        return cls(
            site_code=required_attr(required_child(site, "MPSite"), "SiteCode"),
            urls=tuple(required_attr(url, "Name") for url in records.iterfind("LocationRecord/URL")),
        )


@dataclass(frozen=True, slots=True)
class MPEntry:
    """One management point (``<MP>``) in an MPLIST reply."""

    name: str
    fqdn: str
    version: str
    ssl_state: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ssl_state", as_int(self.ssl_state, "SSLState"))


@dataclass(frozen=True, slots=True)
class MPList:
    """``MPList``: the management points the site offers (``GET /SMS_MP/.sms_aut?MPLIST``)."""

    ROOT: ClassVar[str] = "MPList"

    entries: tuple[MPEntry, ...]

    def to_xml(self) -> str:
        """The list as XML."""
        mps = "".join(
            f'<MP Name="{escape_attr(mp.name)}" FQDN="{escape_attr(mp.fqdn)}"><Version>{escape_text(mp.version)}'
            f'</Version><Capabilities SchemaVersion="1.0"><Property Name="SSLState" Value="{mp.ssl_state:d}"/>'
            f"</Capabilities></MP>"
            for mp in self.entries
        )
        return f"<{self.ROOT}>{mps}</{self.ROOT}>"

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a list, naming what is missing."""
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        entries = []
        for mp in root.iterfind("MP"):
            ssl = next((p for p in mp.iterfind("Capabilities/Property") if p.get("Name") == "SSLState"), None)
            if ssl is None:
                raise MessageError(f"<MP Name={mp.get('Name')!r}> is missing the SSLState capability")
            entries.append(
                MPEntry(
                    name=required_attr(mp, "Name"),
                    fqdn=required_attr(mp, "FQDN"),
                    version=child_text(mp, "Version"),
                    ssl_state=parse_int(required_attr(ssl, "Value"), "SSLState"),
                )
            )
        return cls(entries=tuple(entries))
