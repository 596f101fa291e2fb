"""Object identifiers of the SecureMail profile (RFC 5652, 5083/5084, 5753, 8017, 2634, 5035).

Dotted strings, because that is what asn1crypto hands back for identifiers it does not know
and what it accepts for any identifier.
"""

# RFC 5652 content types
ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
ID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
ID_CT_RECEIPT = "1.2.840.113549.1.9.16.1.1"

# RFC 5652 / RFC 8551 / RFC 2634 / RFC 5035 attributes
ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5"
ATTR_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
ATTR_RECEIPT_REQUEST = "1.2.840.113549.1.9.16.2.1"
ATTR_SECURITY_LABEL = "1.2.840.113549.1.9.16.2.2"
ATTR_MSG_SIG_DIGEST = "1.2.840.113549.1.9.16.2.5"
ATTR_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
ATTR_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"

# digests
SHA1 = "1.3.14.3.2.26"
MD5 = "1.2.840.113549.2.5"
SHA256 = "2.16.840.1.101.3.4.2.1"
SHA384 = "2.16.840.1.101.3.4.2.2"
SHA512 = "2.16.840.1.101.3.4.2.3"

# signatures
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
RSAES_OAEP = "1.2.840.113549.1.1.7"
MGF1 = "1.2.840.113549.1.1.8"
RSASSA_PSS = "1.2.840.113549.1.1.10"
MD5_WITH_RSA = "1.2.840.113549.1.1.4"
SHA1_WITH_RSA = "1.2.840.113549.1.1.5"
SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
SHA384_WITH_RSA = "1.2.840.113549.1.1.12"
SHA512_WITH_RSA = "1.2.840.113549.1.1.13"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
ECDSA_SHA1 = "1.2.840.10045.4.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
ECDSA_SHA384 = "1.2.840.10045.4.3.3"
ECDSA_SHA512 = "1.2.840.10045.4.3.4"

# content encryption
AES128_CBC = "2.16.840.1.101.3.4.1.2"
AES192_CBC = "2.16.840.1.101.3.4.1.22"
AES256_CBC = "2.16.840.1.101.3.4.1.42"
AES128_GCM = "2.16.840.1.101.3.4.1.6"
AES192_GCM = "2.16.840.1.101.3.4.1.26"
AES256_GCM = "2.16.840.1.101.3.4.1.46"
DES_EDE3_CBC = "1.2.840.113549.3.7"

# key wrap and ECDH key agreement (RFC 3394, RFC 5753 / SEC 1)
AES128_WRAP = "2.16.840.1.101.3.4.1.5"
AES192_WRAP = "2.16.840.1.101.3.4.1.25"
AES256_WRAP = "2.16.840.1.101.3.4.1.45"
ECDH_STD_SHA1KDF = "1.3.133.16.840.63.0.2"
ECDH_STD_SHA256KDF = "1.3.132.1.11.1"
ECDH_STD_SHA384KDF = "1.3.132.1.11.2"
ECDH_STD_SHA512KDF = "1.3.132.1.11.3"

# certificate extended key usage (RFC 5280)
EKU_EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"

# The SecureMail security-label policy (ESS securityLabel policy identifier). A 2.25 UUID
# arc (ITU-T X.667) chosen once for the project; never change it: it is on the wire.
SECUREMAIL_LABEL_POLICY = "2.25.12228491194379699965502975167948141975"

# Extended key usage of the federation operator's directory-signing certificate: under the
# project's arc, so no message-signing certificate can ever sign a directory.
EKU_DIRECTORY_SIGNING = SECUREMAIL_LABEL_POLICY + ".2"

# The sealedFor signed attribute (profile "Recipient binding"): the receiving member and the
# envelope recipients at it, so a signature cannot be re-sent to, or re-encrypted for,
# anyone it does not name (THREATS.md K, surreptitious forwarding). On the wire: never change.
ATTR_SEALED_FOR = SECUREMAIL_LABEL_POLICY + ".3"

# The senderAssurance signed attribute (profile §2.2, "Sender assurance"): how the mailbox
# holder logged in to submit the message, whether the mailbox is sole-use acknowledged, and
# how the provider verified the holder's identity. On the wire: never change.
ATTR_SENDER_ASSURANCE = SECUREMAIL_LABEL_POLICY + ".4"
