"""Verifies one webhook call with the Standard Webhooks reference library (PyPI: standardwebhooks),
as a receiver would. Usage: verify_webhook.py <secret> <call.json>, where call.json holds
{"headers": {name: value}, "body": "<the body, as sent>"}. Prints "verified" and exits 0, or
prints the library's reason to stderr and exits 1."""

import json
import sys

from standardwebhooks.webhooks import Webhook

secret, call_path = sys.argv[1], sys.argv[2]
with open(call_path, encoding="utf-8") as f:
    call = json.load(f)
try:
    Webhook(secret).verify(call["body"].encode("utf-8"), call["headers"])
except Exception as e:  # the library's WebhookVerificationError, or a malformed secret
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print("verified")
