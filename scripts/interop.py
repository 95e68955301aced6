#!/usr/bin/env python3
"""A D1 client built the way real integrations are (pyjwt for the ES256 assertion, jwcrypto for the
ECDH-ES/A256GCM card data), run against a live cardplane: it onboards an issuer, gets a token,
registers a card, reads it back, and checks a refusal. Exits non-zero on any mismatch.

    pip install pyjwt jwcrypto requests
    python3 scripts/interop.py http://127.0.0.1:8080
"""
import json, sys, time, uuid
import jwt, requests
from jwcrypto import jwe, jwk

base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080"
issuer = "PYINTEROP" + uuid.uuid4().hex[:1].upper()

signing = jwk.JWK.generate(kty="EC", crv="P-256")
public = json.loads(signing.export_public())
onboard = requests.put(f"{base}/admin/v1/issuers/{issuer}", json={
    "name": "Python Interop Bank",
    "assertionKeys": [{"kid": "py-sig-1", "jwk": public}],
    "cardProducts": [{"cardProductId": "VISA_LIGHT", "scheme": "VISA", "authorisationMode": "LIGHT"}],
})
assert onboard.status_code == 200, onboard.text
encryption_key = onboard.json()["encryptionKeys"][0]

now = int(time.time())
assertion = jwt.encode(
    {"iss": issuer, "sub": issuer, "aud": "https://api.d1.thalescloud.io", "iat": now, "exp": now + 600,
     "jti": str(uuid.uuid4())},
    signing.export_to_pem(private_key=True, password=None), algorithm="ES256", headers={"kid": "py-sig-1"})
token = requests.post(f"{base}/authz/v1/oauth2/token", data={
    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
assert token.status_code == 200, token.text
bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}

recipient = jwk.JWK(**encryption_key)
encrypted = jwe.JWE(json.dumps({"pan": "4111111111111111", "exp": "1230"}).encode(),
                    protected=json.dumps({"alg": "ECDH-ES", "enc": "A256GCM", "kid": encryption_key["kid"]}))
encrypted.add_recipient(recipient)
card = requests.put(f"{base}/banking/v2/issuers/{issuer}/cards/py-card-1", headers=bearer, json={
    "consumerId": "py-consumer", "cardProductId": "VISA_LIGHT", "encryptedData": encrypted.serialize(compact=True)})
assert card.status_code == 204, card.text
read = requests.get(f"{base}/banking/v2/issuers/{issuer}/cards/py-card-1", headers=bearer)
assert read.status_code == 200 and read.json()["last4"] == "1111" and read.json()["expiry"] == "1230", read.text

# A replayed jti and a foreign issuer's path are refused.
again = requests.post(f"{base}/authz/v1/oauth2/token", data={
    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
foreign = requests.get(f"{base}/banking/v2/issuers/OTHERBANK1/cards/py-card-1", headers=bearer)
assert foreign.status_code == 403 and foreign.json()["errorCode"] == "ISSUER_MISMATCH", foreign.text
print(f"interop: pyjwt + jwcrypto client accepted by {base} (issuer {issuer})")
