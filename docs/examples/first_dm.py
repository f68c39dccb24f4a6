"""Sign in to BrightChat and send a first direct message.

    pip install eciespy coincurve requests
    python3 docs/examples/first_dm.py http://127.0.0.1:8080
"""
import base64
import sys

import requests
from coincurve import PrivateKey
from ecies import decrypt

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"


def register_and_sign_in(name):
    key = PrivateKey()  # keep key.secret safe: it is the member's identity
    public_hex = key.public_key.format(compressed=True).hex()
    member = requests.post(f"{BASE}/api/members",
                           json={"displayName": name, "publicKey": public_hex}).json()["data"]
    challenge = requests.post(f"{BASE}/api/auth/challenge",
                              json={"memberId": member["id"]}).json()["data"]["challenge"]
    # ECDSA over SHA-256 of the 32 challenge bytes (coincurve hashes with SHA-256), DER.
    signature = key.sign(bytes.fromhex(challenge)).hex()
    token = requests.post(f"{BASE}/api/auth/login",
                          json={"memberId": member["id"], "challenge": challenge,
                                "signature": signature}).json()["data"]["token"]
    return member["id"], key, {"Authorization": f"Bearer {token}"}


ada_id, ada_key, ada = register_and_sign_in("Ada")
bob_id, bob_key, bob = register_and_sign_in("Bob")

sent = requests.post(f"{BASE}/api/conversations", headers=ada,
                     json={"recipientId": bob_id, "content": "Hey, are you free for a call?"}).json()
conversation = sent["data"]["conversationId"]

page = requests.get(f"{BASE}/api/conversations/{conversation}/messages", headers=bob).json()["data"]
for message in page["items"]:
    text = decrypt(bob_key.secret, base64.b64decode(message["encryptedContent"])).decode()
    print(f"{message['senderId']}: {text}")
