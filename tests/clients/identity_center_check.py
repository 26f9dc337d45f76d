"""Drives the loopback Identity Center (identity_center.py) with boto3's own sso-oidc and
sso clients: proof that it speaks the protocol botocore's models describe.

Usage: python3 identity_center_check.py URL   (prints "ok" and exits 0 when every step held)
"""

import base64
import hashlib
import json
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request

import boto3
import botocore.exceptions

URL = sys.argv[1]
session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="eu-west-1")
oidc = session.client("sso-oidc", endpoint_url=URL)
sso = session.client("sso", endpoint_url=URL)
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def control(path, body=None):
    req = urllib.request.Request(URL + path, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"{}")


def expect_error(want, fn, **kw):
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == want, "expected %s, got %s" % (want, got)
        return e
    raise AssertionError("expected %s, call succeeded" % want)


before = control("/_test/counters")
control("/_test/auto_approve", {"on": False})

# Device code: pending until approved, then tokens; a wrong client secret is refused.
reg = oidc.register_client(clientName="check", clientType="public", scopes=["sso:account:access"])
start = oidc.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                                        startUrl="https://acme.awsapps.com/start")
assert start["userCode"] and start["verificationUriComplete"].endswith(start["userCode"])
err = expect_error("AuthorizationPendingException", oidc.create_token, clientId=reg["clientId"],
                   clientSecret=reg["clientSecret"], grantType=DEVICE, deviceCode=start["deviceCode"])
assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
# Modelled members of the error shape are parsed by botocore.
assert err.response.get("error") == "authorization_pending", err.response
expect_error("InvalidClientException", oidc.create_token, clientId=reg["clientId"],
             clientSecret="wrong", grantType=DEVICE, deviceCode=start["deviceCode"])
control("/_test/approve", {"userCode": start["userCode"]})
tok = oidc.create_token(clientId=reg["clientId"], clientSecret=reg["clientSecret"], grantType=DEVICE,
                        deviceCode=start["deviceCode"])
assert tok["accessToken"] and tok["refreshToken"] and tok["expiresIn"] > 0

# Refresh: a new pair; the old refresh token is spent.
ref = oidc.create_token(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                        grantType="refresh_token", refreshToken=tok["refreshToken"])
assert ref["accessToken"] != tok["accessToken"]
expect_error("InvalidGrantException", oidc.create_token, clientId=reg["clientId"],
             clientSecret=reg["clientSecret"], grantType="refresh_token", refreshToken=tok["refreshToken"])

# PKCE authorization code: the authorize page redirects with code and state; a wrong
# verifier is refused, the right one gets tokens, a code is good once.
redirect = "http://127.0.0.1:9/oauth/callback"
preg = oidc.register_client(clientName="check-pkce", clientType="public", scopes=["sso:account:access"],
                            grantTypes=["authorization_code", "refresh_token"], redirectUris=[redirect],
                            issuerUrl="https://acme.awsapps.com/start")
verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
control("/_test/auto_approve", {"on": True})
query = urllib.parse.urlencode({"response_type": "code", "client_id": preg["clientId"], "redirect_uri": redirect,
                                "scopes": "sso:account:access", "state": "st4te", "code_challenge": challenge,
                                "code_challenge_method": "S256"})


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


try:
    urllib.request.build_opener(NoRedirect).open(URL + "/authorize?" + query)
    raise AssertionError("authorize did not redirect")
except urllib.error.HTTPError as e:
    assert e.code == 302, e.code
    location = e.headers["Location"]
assert location.startswith(redirect + "?")
params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
assert params["state"] == "st4te"
expect_error("InvalidGrantException", oidc.create_token, clientId=preg["clientId"], clientSecret=preg["clientSecret"],
             grantType="authorization_code", code=params["code"], redirectUri=redirect, codeVerifier="wrong")
ptok = oidc.create_token(clientId=preg["clientId"], clientSecret=preg["clientSecret"], grantType="authorization_code",
                         code=params["code"], redirectUri=redirect, codeVerifier=verifier)
assert ptok["accessToken"] and ptok["refreshToken"]
expect_error("InvalidGrantException", oidc.create_token, clientId=preg["clientId"], clientSecret=preg["clientSecret"],
             grantType="authorization_code", code=params["code"], redirectUri=redirect, codeVerifier=verifier)

# The portal, with botocore's paginators.
access = ptok["accessToken"]
accounts = [a for page in sso.get_paginator("list_accounts").paginate(accessToken=access, maxResults=2)
            for a in page["accountList"]]
assert [a["accountId"] for a in accounts] == ["111111111111", "222222222222", "333333333333"], accounts
roles = [r["roleName"] for page in sso.get_paginator("list_account_roles").paginate(
    accessToken=access, accountId="111111111111", maxResults=1) for r in page["roleList"]]
assert roles == ["AdministratorAccess", "ReadOnly"], roles
creds = sso.get_role_credentials(accessToken=access, accountId="111111111111", roleName="ReadOnly")
rc = creds["roleCredentials"]
assert rc["accessKeyId"].startswith("ASIA") and rc["sessionToken"] and rc["expiration"] > 0
expect_error("UnauthorizedException", sso.get_role_credentials, accessToken="nope", accountId="111111111111",
             roleName="ReadOnly")
expect_error("ForbiddenException", sso.get_role_credentials, accessToken=access, accountId="111111111111",
             roleName="NotMine")

# Many accounts, pages capped below what the client asks (as the real service may), and
# roles per account: botocore's paginators follow nextToken to the end.
control("/_test/accounts", {"generate": 250, "pageCap": 7,
                            "accountRoles": {"100000000003": ["OnlyThis"]}})
many = [a for page in sso.get_paginator("list_accounts").paginate(accessToken=access, maxResults=100)
        for a in page["accountList"]]
assert len(many) == 250 and len({a["accountId"] for a in many}) == 250, len(many)
assert many[3] == {"accountId": "100000000003", "accountName": "acct-0003",
                   "emailAddress": "a3@example.com"}, many[3]
roles = [r["roleName"] for page in sso.get_paginator("list_account_roles").paginate(
    accessToken=access, accountId="100000000003") for r in page["roleList"]]
assert roles == ["OnlyThis"], roles
expect_error("ResourceNotFoundException", sso.list_account_roles, accessToken=access, accountId="999999999999")
expect_error("ForbiddenException", sso.get_role_credentials, accessToken=access, accountId="100000000003",
             roleName="ReadOnly")

# Logout ends that token; ending the session refuses refresh.
sso.logout(accessToken=access)
expect_error("UnauthorizedException", sso.list_accounts, accessToken=access)
control("/_test/end_session", {})
expect_error("InvalidGrantException", oidc.create_token, clientId=preg["clientId"], clientSecret=preg["clientSecret"],
             grantType="refresh_token", refreshToken=ptok["refreshToken"])

after = control("/_test/counters")
delta = {k: v - before.get(k, 0) for k, v in after.items()}
assert delta["Logout"] == 1 and delta["RegisterClient"] == 2 and delta["ListAccounts"] == 3 + 36, delta
print("ok")
