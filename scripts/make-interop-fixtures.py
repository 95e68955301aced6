#!/usr/bin/env python3
"""Makes crates/testkit/fixtures/interop.json with independent JOSE implementations
(pyjwt for the ES256 token assertions, jwcrypto for the ECDH-ES/A256GCM card data), the way real
D1 integrations build them. The Rust tests replay these at the fixed time `now`, so the committed
file never goes stale. Re-run only to change the fixtures:

    pip install pyjwt jwcrypto cryptography
    python3 scripts/make-interop-fixtures.py
"""
import base64, hashlib, hmac, json, os, pathlib
import jwt  # pyjwt
from jwcrypto import jwe, jwk
from cryptography.hazmat.primitives import serialization

NOW = 1893456000  # 2030-01-01T00:00:00Z
ISSUER = "INTEROP001"
AUD = "https://api.d1.thalescloud.io"
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/testkit/fixtures/interop.json"

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

signing = jwk.JWK.generate(kty="EC", crv="P-256", kid="interop-sig-1")
other_signing = jwk.JWK.generate(kty="EC", crv="P-256", kid="interop-sig-1")
signing_pem = signing.export_to_pem(private_key=True, password=None)
other_pem = other_signing.export_to_pem(private_key=True, password=None)
public_jwk = json.loads(signing.export_public())
public_jwk.pop("kid", None)

def assertion(claims, kid="interop-sig-1", key=signing_pem):
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})

base = {"iss": ISSUER, "sub": ISSUER, "aud": AUD, "iat": NOW, "exp": NOW + 600}

def unsigned(header, claims, sign=None):
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    signature = sign(f"{head}.{body}".encode()) if sign else b""
    return f"{head}.{body}.{b64(signature)}"

public_pem = signing.export_to_pem(private_key=False)
assertions = {
    "valid": assertion({**base, "jti": "interop-jti-1"}),
    "validMinimal": assertion({"iss": ISSUER, "sub": ISSUER, "exp": NOW + 300}),
    "validAudienceList": assertion({**base, "aud": [AUD, "https://other"]}),
    "algNone": unsigned({"alg": "none", "typ": "JWT", "kid": "interop-sig-1"}, base),
    # The classic confusion attack: HS256 keyed with the issuer's public key.
    "hs256WithPublicKey": unsigned(
        {"alg": "HS256", "typ": "JWT", "kid": "interop-sig-1"}, base,
        lambda m: hmac.new(public_pem, m, hashlib.sha256).digest()),
    "unknownKid": assertion(base, kid="interop-sig-9"),
    "signedByAnotherKey": assertion(base, key=other_pem),
    "expired": assertion({**base, "exp": NOW - 1}),
    "thirtyMinutes": assertion({**base, "exp": NOW + 1800}),
    "issNotSub": assertion({**base, "sub": "OTHERBANK1"}),
    "wrongAudience": assertion({**base, "aud": "https://elsewhere.example"}),
    "iatInTheFuture": assertion({**base, "iat": NOW + 300}),
    "noExp": assertion({"iss": ISSUER, "sub": ISSUER}),
    "unknownIssuer": assertion({**base, "iss": "NOBANK0001", "sub": "NOBANK0001"}),
}

# The cardplane-side encryption key the tests install for the issuer, and another one.
encryption = jwk.JWK.generate(kty="EC", crv="P-256", kid="interop-enc-1")
other_encryption = jwk.JWK.generate(kty="EC", crv="P-256", kid="interop-enc-1")

def encrypt(plaintext: dict, key=encryption, kid="interop-enc-1", extra=None) -> str:
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": kid, **(extra or {})}
    token = jwe.JWE(json.dumps(plaintext).encode(), protected=json.dumps(header))
    token.add_recipient(key)
    return token.serialize(compact=True)

pan_exp = {"pan": "4111111111111111", "exp": "1229"}
all_fields = {"pan": "5555555555554444", "exp": "0731", "cvv": "123", "name": "JANE Q DOE"}
card_data = {
    "panExp": {"jwe": encrypt(pan_exp), "plaintext": pan_exp},
    "allFields": {"jwe": encrypt(all_fields), "plaintext": all_fields},
    "withApuApv": {"jwe": encrypt(pan_exp, extra={"apu": b64(b"issuer"), "apv": b64(b"d1")}), "plaintext": pan_exp},
    "toAnotherKey": {"jwe": encrypt(pan_exp, key=other_encryption)},
    "badLuhn": {"jwe": encrypt({"pan": "4111111111111112", "exp": "1229"})},
}
parts = card_data["panExp"]["jwe"].split(".")
tampered = bytearray(base64.urlsafe_b64decode(parts[3] + "=="))
tampered[0] ^= 1
parts[3] = b64(bytes(tampered))
card_data["tampered"] = {"jwe": ".".join(parts)}

fixture = {
    "generatedBy": f"pyjwt {jwt.__version__}, jwcrypto (scripts/make-interop-fixtures.py)",
    "now": NOW,
    "issuerId": ISSUER,
    "audience": AUD,
    "assertionKey": {"kid": "interop-sig-1", "jwk": public_jwk},
    "assertions": assertions,
    "encryptionKey": {k: v for k, v in json.loads(encryption.export_private()).items() if k in ("kid", "d", "x", "y")},
    "cardData": card_data,
}
OUT.write_text(json.dumps(fixture, indent=2) + "\n")
print(f"wrote {OUT}")
