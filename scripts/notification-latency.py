#!/usr/bin/env python3
"""How long a notification takes from the acknowledgement of a card registration to its arrival at
the issuer: onboards an issuer whose callback is a stub issuer started here (on 127.0.0.1:18999),
registers 200 cards one after another, and prints latency percentiles. The server must be running:

    cargo run --release -- serve --listen 127.0.0.1:18998 &
    pip install pyjwt jwcrypto requests && python3 scripts/notification-latency.py http://127.0.0.1:18998
"""
import http.server, json, sys, threading, time
import jwt, requests
from jwcrypto import jwe, jwk

base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:18998"
issuer = "LATENCY" + str(int(time.time()) % 1000).zfill(3)
arrivals = {}


class Issuer(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/token"):
            out = json.dumps({"access_token": "t", "token_type": "Bearer", "expires_in": 900}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        now = time.time()
        for op in json.loads(body).get("operations", []):
            arrivals.setdefault(op["cardId"], now)
        self.send_response(204)
        self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 18999), Issuer)
threading.Thread(target=server.serve_forever, daemon=True).start()

signing = jwk.JWK.generate(kty="EC", crv="P-256")
r = requests.put(f"{base}/admin/v1/issuers/{issuer}", json={
    "name": "Latency", "assertionKeys": [{"kid": "k", "jwk": json.loads(signing.export_public())}],
    "cardProducts": [{"cardProductId": "V", "scheme": "VISA", "authorisationMode": "NONE"}],
    "callback": {"baseUrl": "http://127.0.0.1:18999", "clientId": "c", "clientSecret": "s", "maxBatchSize": 50}})
assert r.status_code == 200, r.text
key_json = r.json()["encryptionKeys"][0]
key, kid = jwk.JWK(**key_json), key_json["kid"]
now = int(time.time())
assertion = jwt.encode({"iss": issuer, "sub": issuer, "exp": now + 600},
                       signing.export_to_pem(private_key=True, password=None), algorithm="ES256", headers={"kid": "k"})
token = requests.post(f"{base}/authz/v1/oauth2/token", data={
    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}).json()["access_token"]
session = requests.Session()
session.headers["Authorization"] = f"Bearer {token}"


def luhn(body):
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


acknowledged = {}
for n in range(200):
    data = jwe.JWE(json.dumps({"pan": luhn(f"4{n:014}"), "exp": "1230"}).encode(),
                   protected=json.dumps({"alg": "ECDH-ES", "enc": "A256GCM", "kid": kid}))
    data.add_recipient(key)
    r = session.put(f"{base}/banking/v2/issuers/{issuer}/cards/c-{n}", json={
        "consumerId": "x", "cardProductId": "V", "encryptedData": data.serialize(compact=True)})
    assert r.status_code == 204, r.text
    acknowledged[f"c-{n}"] = time.time()
    time.sleep(0.02)
time.sleep(1.5)
ms = sorted((arrivals[c] - acknowledged[c]) * 1000 for c in acknowledged if c in arrivals)
pick = lambda q: ms[min(len(ms) - 1, int(len(ms) * q))]
print(f"delivered {len(ms)}/{len(acknowledged)}; acknowledgement -> issuer, ms: "
      f"p50 {pick(0.5):.1f}  p90 {pick(0.9):.1f}  p99 {pick(0.99):.1f}  max {ms[-1]:.1f}")
