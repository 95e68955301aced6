#!/usr/bin/env python3
"""Checks the published contract of a live cardplane with tools that know nothing of its code:

1. `openapi-spec-validator` validates `GET /openapi.json` as OpenAPI 3.1;
2. schemathesis generates requests from the document (valid and invalid ones) against the server,
   with a real bearer token for one onboarded issuer, and checks that no answer is a server error
   and that every answer conforms to the document (status, content type, headers, schema).

    pip install openapi-spec-validator schemathesis pyjwt jwcrypto requests
    python3 scripts/contract.py http://127.0.0.1:8080 [extra schemathesis options]

Start the server with `--sandbox` so that the digitization route is open too. Only loopback servers
may be targets (the run sends thousands of requests).
"""
import json, os, subprocess, sys, tempfile, time, uuid
from urllib.parse import urlparse

import jwt, requests
from jwcrypto import jwe, jwk
from openapi_spec_validator import validate

base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080"
extra = sys.argv[2:]
if urlparse(base).hostname not in ("127.0.0.1", "localhost", "::1"):
    sys.exit(f"contract: refusing to fuzz {base}: only loopback servers")

document = requests.get(f"{base}/openapi.json", timeout=10).json()
validate(document)
operations = sum(len(item) for item in document["paths"].values())
print(f"contract: /openapi.json is a valid OpenAPI {document['openapi']} document ({operations} operations)")

# One issuer with a consumer and a card, named as the document's examples name them, so that the
# examples phase reaches the success paths too.
issuer = "BANK00000A"
signing = jwk.JWK.generate(kty="EC", crv="P-256")
onboard = requests.put(f"{base}/admin/v1/issuers/{issuer}", json={
    "name": "Contract Bank",
    "assertionKeys": [{"kid": "sig-1", "jwk": json.loads(signing.export_public())}],
    "cardProducts": [
        {"cardProductId": "PRODUCT_VISA", "scheme": "VISA", "authorisationMode": "LIGHT",
         "binRange": {"from": "41111100", "to": "41111199"}},
    ],
})
assert onboard.status_code == 200, onboard.text
now = int(time.time())
assertion = jwt.encode({"iss": issuer, "sub": issuer, "iat": now, "exp": now + 600, "jti": str(uuid.uuid4())},
                       signing.export_to_pem(private_key=True, password=None), algorithm="ES256",
                       headers={"kid": "sig-1"})
granted = requests.post(f"{base}/authz/v1/oauth2/token", data={
    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
assert granted.status_code == 200, granted.text
token = granted.json()["access_token"]
bearer = {"Authorization": f"Bearer {token}"}

def luhn_complete(digits):
    """`digits` with the check digit that makes it pass the Luhn check."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = int(d) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return digits + str((10 - total % 10) % 10)


# A PAN of its own each run: a PAN the previous run deleted can never be registered again.
pan = luhn_complete("41111100" + str(uuid.uuid4().int)[:7])
recipient = jwk.JWK(**onboard.json()["encryptionKeys"][0])
sealed = jwe.JWE(json.dumps({"pan": pan, "exp": "1230"}).encode(),
                 protected=json.dumps({"alg": "ECDH-ES", "enc": "A256GCM", "kid": recipient["kid"]}))
sealed.add_recipient(recipient)
def usable(kind, name):
    """`name` (the document's example), or a fresh one on a server that ran this before and
    deleted it for good."""
    seen = requests.get(f"{base}/banking/v2/issuers/{issuer}/{kind}/{name}", headers=bearer)
    gone = seen.status_code == 200 and seen.json()["state"] in ("DELETED", "REPLACED")
    return f"{name}-{uuid.uuid4().hex[:8]}" if gone else name


card_id, consumer_id = usable("cards", "card-1"), usable("consumers", "consumer-1")
card = requests.put(f"{base}/banking/v2/issuers/{issuer}/cards/{card_id}", headers=bearer, json={
    "consumerId": consumer_id, "cardProductId": "PRODUCT_VISA", "encryptedData": sealed.serialize(compact=True)})
assert card.status_code == 204, card.text

with tempfile.TemporaryDirectory() as work:
    config = os.path.join(work, "schemathesis.toml")
    with open(config, "w") as f:
        # Every path names the issuer the token belongs to; other issuerIds would only ever meet
        # the bearer guard's 403.
        f.write('[parameters]\n"path.issuerId" = "BANK00000A"\n')
    command = [
        "schemathesis", "--config-file", config, "run", f"{base}/openapi.json",
        "--url", base,
        "--header", f"Authorization: Bearer {token}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_headers_conformance,response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", os.environ.get("CONTRACT_MAX_EXAMPLES", "25"),
        "--seed", os.environ.get("CONTRACT_SEED", "1"),
        "--generation-database", "none",
        "--workers", "1",  # several workers trip a CPython 3.11 ast race inside hypothesis
        "--no-color",
        "--report", "junit", "--report-dir", os.environ.get("CONTRACT_REPORT_DIR", os.path.join(work, "report")),
        *extra,
    ]
    print("contract:", " ".join(c if "Bearer" not in c else "Authorization: Bearer <token>" for c in command))
    sys.exit(subprocess.call(command))
