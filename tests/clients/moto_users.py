"""Creates IAM users in a moto_server and prints [[arn, access key id, secret], ...].
Usage: moto_users.py ENDPOINT_URL NAME..."""
import json
import sys

import boto3

iam = boto3.client(
    "iam",
    endpoint_url=sys.argv[1],
    region_name="us-east-1",
    aws_access_key_id="AKIAADMIN0000000000",
    aws_secret_access_key="admin",
)
out = []
for name in sys.argv[2:]:
    user = iam.create_user(UserName=name)["User"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    out.append([user["Arn"], key["AccessKeyId"], key["SecretAccessKey"]])
print(json.dumps(out))
