"""A long-running boto3 client: the default credential chain (container credentials, a
profile's credential_process, ...), one client for the whole run, GetCallerIdentity every
EVERY_MS (default 1000) milliseconds, printing "<unix millis> <ARN>" or
"<unix millis> error: <message>" per call."""
import os
import sys
import time

import boto3

every = int(os.environ.get("EVERY_MS", "1000")) / 1000
client = None
while True:
    now = int(time.time() * 1000)
    try:
        # botocore loads credentials when the client is made: a refusal shows there.
        client = client or boto3.client("sts")
        print(now, client.get_caller_identity()["Arn"], flush=True)
    except Exception as err:  # every failure is data for the test
        print(now, "error:", str(err).replace("\n", " "), flush=True)
    time.sleep(every)
