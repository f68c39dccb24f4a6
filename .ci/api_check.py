#!/usr/bin/env python3
"""API checks for .ci/run, run inside the cached venv (openapi-python-client, coincurve).

  api_check.py client DOC.json
      Generates a Python client from the OpenAPI document with openapi-python-client and
      checks it covers every route: each (method, path) has an operationId, no operationId
      repeats, and the generated package has a module for each. Exits 1 otherwise.

  api_check.py member BASE_URL CONFIG.toml
      Registers a member on a running server, signs in (ECDSA challenge, as clients do),
      gives it a group, a channel and a direct conversation with a message each, and writes
      a schemathesis config: the bearer token as a header, the real ids for path parameters.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations(doc):
    """Every (method, path, operationId) in the document."""
    for path, item in sorted(doc.get("paths", {}).items()):
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method].get("operationId")


def check_client(doc_path):
    from openapi_python_client.strings import snake_case

    with open(doc_path, encoding="utf-8") as f:
        doc = json.load(f)
    problems = []
    seen = {}
    ops = list(operations(doc))
    for method, path, op_id in ops:
        if not op_id:
            problems.append(f"{method} {path}: no operationId")
        elif op_id in seen:
            problems.append(f"{method} {path}: operationId {op_id!r} repeats {seen[op_id]}")
        else:
            seen[op_id] = f"{method} {path}"

    with tempfile.TemporaryDirectory(prefix="brightchat-client-") as out:
        return generate_and_compare(doc_path, ops, problems, os.path.join(out, "client"))


def generate_and_compare(doc_path, ops, problems, package):
    from openapi_python_client.strings import snake_case

    generator = os.path.join(os.path.dirname(sys.executable), "openapi-python-client")
    run = subprocess.run(
        [generator, "generate", "--path", doc_path, "--meta", "none",
         "--output-path", package, "--overwrite"],
        capture_output=True, text=True, check=False,
    )
    if run.returncode != 0:
        print(run.stdout, run.stderr, sep="\n", file=sys.stderr)
        print("openapi-python-client failed", file=sys.stderr)
        return 1
    modules = set()
    for root, _dirs, files in os.walk(os.path.join(package, "api")):
        modules.update(name[:-3] for name in files if name.endswith(".py"))
    for method, path, op_id in ops:
        if op_id and snake_case(op_id) not in modules:
            problems.append(f"{method} {path}: no module {snake_case(op_id)!r} in the client")
    # The generator's warnings name what it had to skip or could not type.
    warnings = [line for line in (run.stdout + run.stderr).splitlines() if "WARNING" in line
                or "skipped" in line.lower()]
    for problem in problems:
        print("client:", problem, file=sys.stderr)
    if problems:
        print("\n".join(warnings), run.stdout, sep="\n", file=sys.stderr)
        return 1
    print(f"client: {len(ops)} operations, each with its module in the generated client")
    return 0


def call(base, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["data"]


def make_member(base, config_path):
    import coincurve

    def register(name):
        key = coincurve.PrivateKey()
        public = key.public_key.format(compressed=True).hex()
        member = call(base, "POST", "/api/members", {"displayName": name, "publicKey": public})
        return key, member["id"]

    def sign_in(key, member_id):
        challenge = call(base, "POST", "/api/auth/challenge", {"memberId": member_id})["challenge"]
        # ECDSA over SHA-256 of the challenge bytes, DER-encoded (coincurve's default).
        signature = key.sign(bytes.fromhex(challenge), hasher=lambda m: hashlib.sha256(m).digest())
        login = {"memberId": member_id, "challenge": challenge, "signature": signature.hex()}
        return call(base, "POST", "/api/auth/login", login)["token"]

    key, member_id = register("schemathesis")
    _, friend = register("friend")
    token = sign_in(key, member_id)
    group = call(base, "POST", "/api/groups", {"name": "fuzz group", "memberIds": [friend]}, token)
    group_message = call(base, "POST", f"/api/groups/{group['id']}/messages",
                         {"content": "hello"}, token)
    channel = call(base, "POST", "/api/channels",
                   {"name": "fuzz", "visibility": "public", "historyVisible": True}, token)
    channel_message = call(base, "POST", f"/api/channels/{channel['id']}/messages",
                           {"content": "hello"}, token)
    dm = call(base, "POST", "/api/conversations", {"recipientId": friend, "content": "hi"}, token)
    ids = {
        "groupId": [group["id"]],
        "channelId": [channel["id"]],
        "messageId": [group_message["id"], channel_message["id"], dm["id"]],
        "memberId": [member_id, friend],
        "id": [friend],
        "conversationId": [dm["conversationId"]],
    }
    # schemathesis.toml: the token as a header, and the real ids offered for the path
    # parameters most of the time (random and malformed ones the rest).
    lines = ["[headers]", f'Authorization = "Bearer {token}"', ""]
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for name in ids:
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.7 }}')
    with open(config_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "client":
        return check_client(argv[2])
    if len(argv) == 4 and argv[1] == "member":
        return make_member(argv[2].rstrip("/"), argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
