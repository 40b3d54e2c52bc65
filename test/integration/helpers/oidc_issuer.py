"""A stand-in for an external OIDC issuer (a Kubernetes API server's service
account issuer, a cloud's workload identity provider), for workload_test.sh.

  oidc_issuer.py pki DIR                     CA and an HTTPS certificate for 127.0.0.1
  oidc_issuer.py key DIR KID rsa|ec|rsa1024  a signing key DIR/KID.pem
  oidc_issuer.py publish DIR KID...          DIR/jwks.json with those keys (a rotation
                                             is publishing another set)
  oidc_issuer.py serve DIR PORT ISSUER       HTTPS: /.well-known/openid-configuration
                                             and /keys (DIR/jwks.json, read per request);
                                             prints one line per request
  oidc_issuer.py token DIR KID ISS SUB AUD EXP_IN [--nbf-in S] [--alg none|hs256]
                                             a signed token on stdout

Signatures come from the openssl command line; no Python crypto package needed.
"""
import base64
import http.server
import json
import os
import ssl
import subprocess
import sys
import time


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def cmd_pki(d):
    os.makedirs(d, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt", "-days", "2",
            "-subj", "/CN=Test Issuer CA")
    with open(f"{d}/san.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.csr", "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", f"{d}/tls.csr", "-CA", f"{d}/ca.crt", "-CAkey",
            f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/tls.crt", "-days", "2",
            "-extfile", f"{d}/san.ext")


def cmd_key(d, kid, kind):
    path = f"{d}/{kid}.pem"
    if kind == "ec":
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path)
    else:
        openssl("genrsa", "-out", path, "1024" if kind == "rsa1024" else "2048")


def jwk(d, kid):
    path = f"{d}/{kid}.pem"
    text = open(path).read()
    if "EC PRIVATE KEY" in text:
        der = openssl("ec", "-in", path, "-pubout", "-outform", "DER")
        point = der[-64:]
        return {"kty": "EC", "kid": kid, "crv": "P-256", "use": "sig",
                "x": b64(point[:32]), "y": b64(point[32:])}
    modulus = openssl("rsa", "-in", path, "-noout", "-modulus").decode().strip().split("=")[1]
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(bytes.fromhex(modulus)), "e": b64(b"\x01\x00\x01")}


def cmd_publish(d, kids):
    tmp = f"{d}/jwks.json.tmp"
    with open(tmp, "w") as f:
        json.dump({"keys": [jwk(d, k) for k in kids]}, f)
    os.replace(tmp, f"{d}/jwks.json")


def der_to_raw(sig):
    """ECDSA DER (SEQUENCE of two INTEGERs) to the 64-byte r||s JOSE form."""
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        out += sig[i + 2:i + 2 + n].lstrip(b"\x00").rjust(32, b"\x00")
        i += 2 + n
    return out


def cmd_token(d, kid, iss, sub, aud, exp_in, extra):
    now = int(time.time())
    claims = {"iss": iss, "sub": sub, "aud": [aud], "iat": now, "exp": now + int(exp_in)}
    alg = None
    if "--nbf-in" in extra:
        claims["nbf"] = now + int(extra[extra.index("--nbf-in") + 1])
    if "--alg" in extra:
        alg = extra[extra.index("--alg") + 1]
    path = f"{d}/{kid}.pem"
    ec = "EC PRIVATE KEY" in open(path).read()
    if alg == "none":
        header = {"alg": "none", "kid": kid}
    elif alg == "hs256":
        header = {"alg": "HS256", "kid": kid}
    else:
        header = {"alg": "ES256" if ec else "RS256", "kid": kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if alg == "none":
        sig = b""
    elif alg == "hs256":
        # The confusion attack: HMAC keyed with the issuer's public key.
        public_pem = openssl("pkey", "-in", path, "-pubout")
        sig = openssl("dgst", "-sha256", "-mac", "HMAC", "-macopt", "key:" + public_pem.decode(),
                      "-binary", data=signing_input.encode())
    else:
        sig = openssl("dgst", "-sha256", "-sign", path, data=signing_input.encode())
        if ec:
            sig = der_to_raw(sig)
    print(f"{signing_input}.{b64(sig)}")


def cmd_serve(d, port, issuer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/.well-known/openid-configuration":
                body = json.dumps({"issuer": issuer, "jwks_uri": issuer + "/keys"}).encode()
            elif self.path == "/keys":
                body = open(f"{d}/jwks.json", "rb").read()
            else:
                self.send_response(404)
                self.end_headers()
                return
            print(f"GET {self.path}", flush=True)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{d}/tls.crt", f"{d}/tls.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def main(argv):
    cmd, rest = argv[1], argv[2:]
    if cmd == "pki":
        cmd_pki(*rest)
    elif cmd == "key":
        cmd_key(*rest)
    elif cmd == "publish":
        cmd_publish(rest[0], rest[1:])
    elif cmd == "serve":
        cmd_serve(*rest)
    elif cmd == "token":
        cmd_token(*rest[:6], rest[6:])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
