"""A loopback IAM Identity Center (sso-oidc + sso portal) for the tests, written from
botocore's service models (data/sso-oidc and data/sso, restJson1).

Usage: python3 identity_center.py [--auto-approve]
Prints "listening http://127.0.0.1:PORT" on stdout once it accepts connections.

sso-oidc: POST /client/register, POST /device_authorization, POST /token (device_code,
authorization_code with PKCE S256, refresh_token), GET /authorize (redirects to the
client's redirect_uri with code and state once approved).
portal: GET /assignment/accounts, GET /assignment/roles, GET /federation/credentials,
POST /logout; bearer in x-amz-sso_bearer_token.
Test controls: POST /_test/approve {"userCode"} (or {"all": true} for authorize
requests), POST /_test/end_session, POST /_test/lifetimes {"accessToken", "refreshToken"
(bool), "registration", "role"}, POST /_test/accounts {"accounts": [...], "roles": [...],
"accountRoles": {accountId: [...]}, "generate": N, "pageCap": N} (what the portal grants,
and the largest page it returns), POST /_test/moto {"url"} (role credentials become real
ones of that moto_server: AssumeRole of arn:aws:iam::ACCOUNT:role/AWSReservedSSO_ROLE_<hex>
with session name "renewal-N", N counting from 1, so STS GetCallerIdentity tells each
issue apart), GET /_test/counters, GET /_test/pending.
"""

import base64
import hashlib
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

LOCK = threading.Lock()
STATE = {
    "auto_approve": "--auto-approve" in sys.argv,
    "lifetimes": {"accessToken": 3600, "refreshToken": True, "registration": 90 * 86400, "role": 3600},
    "clients": {},  # clientId -> {secret, expires, grantTypes, redirectUris}
    "devices": {},  # deviceCode -> {clientId, userCode, approved, expires}
    "codes": {},  # code -> {clientId, redirectUri, challenge, used}
    "pending_authorize": [],  # authorize requests waiting for /_test/approve
    "access": {},  # accessToken -> {expires}
    "refresh": {},  # refreshToken -> clientId
    "counters": {},
    "accounts": [
        {"accountId": "111111111111", "accountName": "acme", "emailAddress": "a@example.com"},
        {"accountId": "222222222222", "accountName": "acme-dev", "emailAddress": "d@example.com"},
        {"accountId": "333333333333", "accountName": "sandbox", "emailAddress": "s@example.com"},
    ],
    "roles": ["AdministratorAccess", "ReadOnly"],
    "account_roles": {},  # accountId -> roles, else "roles"
    "page_cap": 100,  # the model's MaxResultType max
    "moto": None,  # a boto3 STS client of a moto_server, once POST /_test/moto
    "issued": 0,  # role credentials issued through moto
}


def moto_role_credentials(account_id, role):
    """Role credentials moto knows, as the portal's AWSReservedSSO role of the account."""
    STATE["issued"] += 1
    arn = "arn:aws:iam::%s:role/AWSReservedSSO_%s_0123456789abcdef" % (account_id, role)
    c = STATE["moto"].assume_role(RoleArn=arn, RoleSessionName="renewal-%d" % STATE["issued"])
    c = c["Credentials"]
    return c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]


def roles_of(account_id):
    return STATE["account_roles"].get(account_id, STATE["roles"])


def count(name):
    STATE["counters"][name] = STATE["counters"].get(name, 0) + 1


def issue_tokens(client_id, with_refresh):
    access = "aoa" + secrets.token_urlsafe(24)
    life = STATE["lifetimes"]["accessToken"]
    STATE["access"][access] = {"expires": time.time() + life}
    body = {"accessToken": access, "tokenType": "Bearer", "expiresIn": life}
    if with_refresh and STATE["lifetimes"]["refreshToken"]:
        refresh = "aor" + secrets.token_urlsafe(24)
        STATE["refresh"][refresh] = client_id
        body["refreshToken"] = refresh
    return body


def redirect_registered(uri, registered):
    """Exact match, or a loopback URI registered without a port (RFC 8252 7.3)."""
    if uri in registered:
        return True
    parts = urllib.parse.urlsplit(uri)
    if parts.hostname != "127.0.0.1":
        return False
    bare = urllib.parse.urlunsplit((parts.scheme, "127.0.0.1", parts.path, "", ""))
    return bare in registered


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- plumbing -------------------------------------------------------------------
    def reply(self, status, body=None, headers=()):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def oidc_error(self, status, kind, error, description):
        # sso-oidc errors carry `error` and `error_description` members; botocore and the
        # Rust SDK read the type from x-amzn-errortype.
        self.reply(status, {"error": error, "error_description": description},
                   [("x-amzn-errortype", kind)])

    def sso_error(self, status, kind, message):
        self.reply(status, {"message": message}, [("x-amzn-errortype", kind)])

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def bearer(self):
        token = self.headers.get("x-amz-sso_bearer_token")
        info = STATE["access"].get(token) if token else None
        if info is None or info["expires"] < time.time():
            self.sso_error(401, "UnauthorizedException", "Session token not found or invalid")
            return None
        return token

    # -- routes ---------------------------------------------------------------------
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        with LOCK:
            if url.path == "/authorize":
                return self.authorize(q)
            if url.path == "/_test/counters":
                return self.reply(200, STATE["counters"])
            if url.path == "/_test/pending":
                return self.reply(200, {"authorize": len(STATE["pending_authorize"]),
                                        "devices": [d["userCode"] for d in STATE["devices"].values()
                                                    if not d["approved"]]})
            if url.path == "/assignment/accounts":
                count("ListAccounts")
                if self.bearer() is None:
                    return
                return self.paged(STATE["accounts"], "accountList", q)
            if url.path == "/assignment/roles":
                count("ListAccountRoles")
                if self.bearer() is None:
                    return
                acct = q.get("account_id")
                if acct not in {a["accountId"] for a in STATE["accounts"]}:
                    return self.sso_error(404, "ResourceNotFoundException", "account not found")
                roles = [{"roleName": r, "accountId": acct} for r in roles_of(acct)]
                return self.paged(roles, "roleList", q)
            if url.path == "/federation/credentials":
                count("GetRoleCredentials")
                if self.bearer() is None:
                    return
                if q.get("role_name") not in roles_of(q.get("account_id")):
                    return self.sso_error(403, "ForbiddenException", "no access to this role")
                expires_ms = int((time.time() + STATE["lifetimes"]["role"]) * 1000)
                if STATE["moto"] is not None:
                    key, secret, token = moto_role_credentials(q["account_id"], q["role_name"])
                else:
                    key = "ASIA" + secrets.token_hex(8).upper()
                    secret, token = secrets.token_urlsafe(30), "IQo" + secrets.token_urlsafe(60)
                return self.reply(200, {"roleCredentials": {
                    "accessKeyId": key,
                    "secretAccessKey": secret,
                    "sessionToken": token,
                    "expiration": expires_ms,
                }})
        self.reply(404, {"message": "no route " + url.path})

    def paged(self, items, key, q):
        size = int(q.get("max_result") or 2)
        if not 1 <= size <= 100:  # MaxResultType: min 1, max 100
            return self.sso_error(400, "InvalidRequestException", "max_result out of range")
        size = min(size, STATE["page_cap"])
        count(key + ".page")
        start = int(q.get("next_token") or 0)
        page = items[start:start + size]
        body = {key: page}
        if start + size < len(items):
            body["nextToken"] = str(start + size)
        self.reply(200, body)

    def authorize(self, q):
        count("Authorize")
        client = STATE["clients"].get(q.get("client_id"))
        if client is None or q.get("response_type") != "code":
            return self.reply(400, {"message": "unknown client or response_type"})
        if not redirect_registered(q.get("redirect_uri") or "", client["redirectUris"]):
            return self.reply(400, {"message": "redirect_uri not registered"})
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self.reply(400, {"message": "PKCE S256 required"})
        if not STATE["auto_approve"]:
            STATE["pending_authorize"].append(q)
            return self.reply(403, {"message": "not approved (POST /_test/approve)"})
        self.redirect_with_code(q)

    def redirect_with_code(self, q):
        code = secrets.token_urlsafe(24)
        STATE["codes"][code] = {"clientId": q["client_id"], "redirectUri": q["redirect_uri"],
                                "challenge": q["code_challenge"], "used": False}
        location = q["redirect_uri"] + "?" + urllib.parse.urlencode(
            {"code": code, "state": q.get("state", "")})
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        body = self.body()
        with LOCK:
            if body is None:
                return self.oidc_error(400, "InvalidRequestException", "invalid_request", "not JSON")
            if path.startswith("/_test/"):
                return self.control(path, body)
            if path == "/client/register":
                return self.register(body)
            if path == "/device_authorization":
                return self.device_authorization(body)
            if path == "/token":
                return self.token(body)
            if path == "/logout":
                count("Logout")
                token = self.bearer()
                if token is None:
                    return
                del STATE["access"][token]
                return self.reply(200)
        self.reply(404, {"message": "no route " + path})

    def control(self, path, body):
        if path == "/_test/approve":
            for d in STATE["devices"].values():
                if body.get("all") or d["userCode"] == body.get("userCode"):
                    d["approved"] = True
            return self.reply(200, {})
        if path == "/_test/auto_approve":
            STATE["auto_approve"] = bool(body.get("on"))
            return self.reply(200, {})
        if path == "/_test/end_session":
            STATE["access"].clear()
            STATE["refresh"].clear()
            return self.reply(200, {})
        if path == "/_test/accounts":
            if "generate" in body:
                STATE["accounts"] = [{"accountId": "%012d" % (100000000000 + i),
                                      "accountName": "acct-%04d" % i,
                                      "emailAddress": "a%d@example.com" % i}
                                     for i in range(int(body["generate"]))]
            if "accounts" in body:
                STATE["accounts"] = body["accounts"]
            if "roles" in body:
                STATE["roles"] = body["roles"]
            if "accountRoles" in body:
                STATE["account_roles"] = body["accountRoles"]
            if "pageCap" in body:
                STATE["page_cap"] = int(body["pageCap"])
            return self.reply(200, {"accounts": len(STATE["accounts"])})
        if path == "/_test/moto":
            import boto3  # only when asked: the server starts without it
            STATE["moto"] = boto3.client(
                "sts", endpoint_url=body["url"], region_name="us-east-1",
                aws_access_key_id="AKIAADMIN0000000000", aws_secret_access_key="admin")
            return self.reply(200, {})
        if path == "/_test/lifetimes":
            STATE["lifetimes"].update(body)
            return self.reply(200, STATE["lifetimes"])
        self.reply(404, {"message": "no control " + path})

    def register(self, body):
        count("RegisterClient")
        if not body.get("clientName") or not body.get("clientType"):
            return self.oidc_error(400, "InvalidRequestException", "invalid_request",
                                   "clientName and clientType are required")
        grants = body.get("grantTypes") or [DEVICE_GRANT, "refresh_token"]
        if "authorization_code" in grants and not body.get("redirectUris"):
            return self.oidc_error(400, "InvalidRedirectUriException", "invalid_redirect_uri",
                                   "authorization_code needs redirectUris")
        if "authorization_code" in grants and (not body.get("issuerUrl")
                                               or "sso:account:access" not in (body.get("scopes") or [])):
            # What the real service needs to issue refresh tokens for a portal's sign-in.
            return self.oidc_error(400, "InvalidRequestException", "invalid_request",
                                   "authorization_code needs issuerUrl and the sso:account:access scope")
        client_id = "cid" + secrets.token_urlsafe(12)
        secret = "csec" + secrets.token_urlsafe(32)
        now = int(time.time())
        expires = now + int(STATE["lifetimes"]["registration"])
        STATE["clients"][client_id] = {"secret": secret, "expires": expires, "grantTypes": grants,
                                       "redirectUris": body.get("redirectUris") or [],
                                       "scopes": body.get("scopes") or []}
        self.reply(200, {"clientId": client_id, "clientSecret": secret,
                         "clientIdIssuedAt": now, "clientSecretExpiresAt": expires})

    def client(self, body):
        c = STATE["clients"].get(body.get("clientId"))
        if c is None or c["secret"] != body.get("clientSecret"):
            self.oidc_error(401, "InvalidClientException", "invalid_client", "unknown client")
            return None
        if c["expires"] < time.time():
            self.oidc_error(400, "ExpiredTokenException", "expired_token", "registration expired")
            return None
        return c

    def device_authorization(self, body):
        count("StartDeviceAuthorization")
        if self.client(body) is None:
            return
        device = secrets.token_urlsafe(24)
        user = secrets.token_hex(2).upper() + "-" + secrets.token_hex(2).upper()
        STATE["devices"][device] = {"clientId": body["clientId"], "userCode": user,
                                    "approved": STATE["auto_approve"], "expires": time.time() + 600}
        base = "http://%s:%d" % self.server.server_address[:2]
        self.reply(200, {"deviceCode": device, "userCode": user,
                         "verificationUri": base + "/device",
                         "verificationUriComplete": base + "/device?user_code=" + user,
                         "expiresIn": 600, "interval": 1})

    def token(self, body):
        count("CreateToken")
        c = self.client(body)
        if c is None:
            return
        grant = body.get("grantType")
        if grant not in c["grantTypes"]:
            return self.oidc_error(400, "UnauthorizedClientException", "unauthorized_client",
                                   "grant type not registered: %s" % grant)
        if grant == DEVICE_GRANT:
            d = STATE["devices"].get(body.get("deviceCode"))
            if d is None or d["clientId"] != body["clientId"]:
                return self.oidc_error(400, "InvalidGrantException", "invalid_grant", "unknown device code")
            if d["expires"] < time.time():
                return self.oidc_error(400, "ExpiredTokenException", "expired_token", "device code expired")
            if not d["approved"]:
                return self.oidc_error(400, "AuthorizationPendingException", "authorization_pending",
                                       "authorization pending")
            del STATE["devices"][body["deviceCode"]]
            count("CreateToken.device_code")
            return self.reply(200, issue_tokens(body["clientId"], True))
        if grant == "authorization_code":
            code = STATE["codes"].get(body.get("code"))
            if code is None or code["used"] or code["clientId"] != body["clientId"]:
                return self.oidc_error(400, "InvalidGrantException", "invalid_grant", "unknown code")
            if code["redirectUri"] != body.get("redirectUri"):
                return self.oidc_error(400, "InvalidGrantException", "invalid_grant", "redirectUri differs")
            verifier = body.get("codeVerifier") or ""
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            if digest.decode() != code["challenge"]:
                return self.oidc_error(400, "InvalidGrantException", "invalid_grant", "PKCE verifier does not match")
            code["used"] = True
            count("CreateToken.authorization_code")
            return self.reply(200, issue_tokens(body["clientId"], True))
        if grant == "refresh_token":
            owner = STATE["refresh"].get(body.get("refreshToken"))
            if owner != body["clientId"]:
                return self.oidc_error(400, "InvalidGrantException", "invalid_grant", "refresh token refused")
            del STATE["refresh"][body["refreshToken"]]
            count("CreateToken.refresh_token")
            return self.reply(200, issue_tokens(body["clientId"], True))
        self.oidc_error(400, "UnsupportedGrantTypeException", "unsupported_grant_type", str(grant))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("listening http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
