"""Session credentials of another AWS account in a moto_server (AssumeRole into ACCOUNT):
prints [arn, access key id, secret, session token].
Usage: moto_role.py ENDPOINT_URL ACCOUNT"""
import json
import sys

import boto3

sts = boto3.client(
    "sts",
    endpoint_url=sys.argv[1],
    region_name="us-east-1",
    aws_access_key_id="AKIAADMIN0000000000",
    aws_secret_access_key="admin",
)
role = f"arn:aws:iam::{sys.argv[2]}:role/other"
c = sts.assume_role(RoleArn=role, RoleSessionName="s1")["Credentials"]
print(json.dumps([role, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]]))
