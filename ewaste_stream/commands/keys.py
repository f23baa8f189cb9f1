"""ewaste-stream keys --out DIR --name NAME: make a CURVE key pair for the decision socket."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

HELP = "generate a CURVE key pair (NAME.key public, NAME.key_secret secret) for the decision socket"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the keys into")
    p.add_argument("--name", required=True, help="key name, e.g. server or plc-bridge-1")
    p.add_argument("--force", action="store_true", help="overwrite existing keys of that name")


def run(args: argparse.Namespace) -> int:
    import zmq
    import zmq.auth

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        print(f"error: --name {args.name!r}: use letters, digits, '_', '.', '-'", file=sys.stderr)
        return 2
    if not zmq.has("curve"):
        print("error: this libzmq was built without CURVE support", file=sys.stderr)
        return 1
    public = args.out / f"{args.name}.key"
    secret = args.out / f"{args.name}.key_secret"
    if not args.force and (public.exists() or secret.exists()):
        print(f"error: {public} or {secret} exists; pick another --name or pass --force", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(str(args.out), args.name)
    os.chmod(secret, 0o600)
    print(f"public key: {public}  (share it: servers list client keys in publish.curve_allowed_clients;\n"
          f"            clients pass the server's with listen --curve-server-public)\n"
          f"secret key: {secret}  (keep it private, mode 600)")
    return 0
