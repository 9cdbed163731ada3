"""An independent RFC 9052 COSE_Sign1 peer, built on pycose, for the interoperability
tests of kakanai-protocol. It shares no code with Kakanai.

    cose_peer.py sign   --alg -19|-8 --seed HEX --kid HEX --aad HEX --payload HEX
    cose_peer.py verify --public-key HEX --aad HEX --message HEX

`sign` prints the tagged COSE_Sign1 in hex; `verify` prints "valid" (exit 0) or
"invalid: REASON" (exit 1).
"""
import argparse
import sys

from pycose.algorithms import CoseAlgorithm, EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519 as Ed25519Curve
from pycose.messages import CoseMessage, Sign1Message


# pycose 1.1 knows only the polymorphic EdDSA (-8). RFC 9864's fully specified
# Ed25519 (-19) is the same signature scheme under another identifier.
@CoseAlgorithm.register_attribute()
class Ed25519(EdDSA):
    identifier = -19
    fullname = "Ed25519"


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--alg", type=int, choices=[-19, -8], required=True)
    s.add_argument("--seed", required=True)
    s.add_argument("--kid", required=True)
    s.add_argument("--aad", default="")
    s.add_argument("--payload", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--public-key", required=True)
    v.add_argument("--aad", default="")
    v.add_argument("--message", required=True)
    a = p.parse_args()

    if a.cmd == "sign":
        key = OKPKey(crv=Ed25519Curve, d=bytes.fromhex(a.seed))
        alg = Ed25519 if a.alg == -19 else EdDSA
        msg = Sign1Message(
            phdr={Algorithm: alg, KID: bytes.fromhex(a.kid)},
            payload=bytes.fromhex(a.payload),
            external_aad=bytes.fromhex(a.aad),
        )
        msg.key = key
        print(msg.encode(tag=True).hex())
        return 0

    try:
        msg = CoseMessage.decode(bytes.fromhex(a.message))
        msg.key = OKPKey(crv=Ed25519Curve, x=bytes.fromhex(a.public_key))
        msg.external_aad = bytes.fromhex(a.aad)
        ok = msg.verify_signature()
    except Exception as e:  # any failure to parse or verify is "invalid"
        print(f"invalid: {type(e).__name__}: {e}")
        return 1
    print("valid" if ok else "invalid: signature")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
