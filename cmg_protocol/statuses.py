"""The status texts CMG and connection point put into the HTTP reason phrase, as ConfigMgr's logs show them.

Clients and verdicts tell who refused a request by these texts, so the site, the simulated client and the proxy
configurations all take them from here.
"""

from __future__ import annotations

# The CMG (CMGService.log).
INVALID_TOKEN = "CMGService_Invalid_Token"
CLIENT_CERT_REQUIRED = "CMGService_Client_Certificate_Required"  # synthetic: not the public ConfigMgr format
NOT_IN_URL_MAP = "CMGService_Url_Not_Allowed"  # synthetic: not the public ConfigMgr format
BAD_REQUEST = "CMGService_Bad_Request"  # synthetic: not the public ConfigMgr format
METHOD_NOT_ALLOWED = "CMGService_Method_Not_Allowed"  # synthetic: not the public ConfigMgr format
TOO_LARGE = "CMGService_Request_Too_Large"  # synthetic: not the public ConfigMgr format
TENANT_NOT_ONBOARDED = "CMGService_Tenant_Not_Onboarded"  # synthetic: not the public ConfigMgr format
NO_CONNECTION_POINT = "CMGService_No_Connection_Point_Available"  # synthetic: not the public ConfigMgr format
CONNECTION_POINT_TIMEOUT = "CMGService_Connection_Point_Timeout"  # synthetic: not the public ConfigMgr format

# The connection point (SMS_CLOUD_PROXYCONNECTOR.log).
CONNECTOR_CLIENT_CERT_REQUIRED = "CMGConnector_Clientcertificaterequired"
CONNECTOR_UNAUTHORIZED = "CMGConnector_Unauthorized"
CONNECTOR_INTERNAL_SERVER_ERROR = "CMGConnector_InternalServerError"
CONNECTOR_SERVICE_UNAVAILABLE = "CMGConnector_ServiceUnavailable"  # synthetic: not the public ConfigMgr format
CONNECTOR_GATEWAY_TIMEOUT = "CMGConnector_GatewayTimeout"  # synthetic: not the public ConfigMgr format
CONNECTOR_BAD_REQUEST = "CMGConnector_BadRequest"  # synthetic: not the public ConfigMgr format
#: The caller is not the CMG this connection point serves (it takes work from nobody else).
CONNECTOR_NOT_FROM_CMG = "CMGConnector_Forbidden"  # synthetic: not the public ConfigMgr format

#: Every connection point status text starts so.
CONNECTOR_PREFIX = "CMGConnector_"

# The management point (ours: the MP's refusals are not public).
MP_INVALID_TOKEN = "MP_Invalid_Token"  # synthetic: not the public ConfigMgr format
MP_NOT_REGISTERED = "MP_Client_Not_Registered"  # synthetic: not the public ConfigMgr format
MP_NO_CP_CERTIFICATE = "MP_Connection_Point_Certificate_Required"  # synthetic: not the public ConfigMgr format
MP_BAD_MESSAGE = "MP_Bad_Message"  # synthetic: not the public ConfigMgr format
#: Identity headers (the CMG's client certificate, the public URI) from a caller that is not a connection point.
MP_IDENTITY_HEADER_REFUSED = "MP_Identity_Header_Refused"  # synthetic: not the public ConfigMgr format
#: A registration or policy request whose signature does not verify (registration: against the signing certificate it
#: carries; policy: against the certificate the client registered).
MP_SIGNATURE_INVALID = "MP_Signature_Invalid"  # synthetic: not the public ConfigMgr format
#: A registration whose Entra token (``X-CCM-AAD-Token``) is missing, refused, or for another tenant than its CCM token:
#: the MP rejects the registration itself (no proxy let a bad CCM token through; the CMG does not check that header).
MP_REGISTRATION_TOKEN_INVALID = "MP_Registration_AAD_Token_Invalid"  # synthetic: not the public ConfigMgr format
