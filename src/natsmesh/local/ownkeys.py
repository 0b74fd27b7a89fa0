"""A domain's own account keys (operator mode): made and kept by the domain, never by the platform.

A team that does not want the platform to hold its account's seeds makes them with `natsmesh keys init`, keeps
the file (owner-readable only) in its own folder or wherever it keeps secrets, and gives the platform only the
public keys (`account_key:` in the spec, as `init` prints them). The hub's operator signs the account with those
keys named; the domain signs its own leaf-link user with its signing key (`natsmesh keys link`), and the
platform, holding no seed of that account, can sign in as none of its users and grant no copy of its products.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natsmesh.errors import PreflightError
from natsmesh.local.files import write_private
from natsmesh.local.layout import MeshDirs
from natsmesh.local.secrets import new_nkey
from natsmesh.model import jwt
from natsmesh.model.identities import NKey
from natsmesh.model.mesh import Mesh
from natsmesh.render.trust import LINK_CREDS, link_creds

KEYS_FILE_MAX = 64 * 1024  # a keys file is a few hundred bytes; anything larger is not one


@dataclass(frozen=True)
class OwnKeys:
    """DOMAIN's account key and signing key, seeds included (only the domain holds this)."""

    domain: str
    account: NKey
    signing: NKey

    def spec(self) -> dict[str, Any]:
        """What the platform's spec says of these keys (their public halves only)."""
        return {"account_key": {"account": self.account.public, "signing": self.signing.public}}


def make_keys(domain: str, path: Path) -> OwnKeys:
    """New account keys for DOMAIN, written to PATH (0600); refuses to replace a file there."""
    if path.exists():
        raise PreflightError(
            f"{path} exists: natsmesh never replaces a keys file (the account's users and grants "
            "were signed with it); choose another path"
        )
    keys = OwnKeys(domain, new_nkey("account"), new_nkey("account"))
    doc = {
        "domain": domain,
        "account": {"public": keys.account.public, "seed": keys.account.seed},
        "signing": {"public": keys.signing.public, "seed": keys.signing.seed},
    }
    try:
        write_private(path, json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise PreflightError(f"cannot write {path}: {exc.strerror}") from None
    return keys


def read_keys(path: Path) -> OwnKeys:
    """The keys file at PATH (`make_keys`); a clear error if it is not one."""
    try:
        if path.stat().st_size > KEYS_FILE_MAX:
            raise PreflightError(f"{path} is not a natsmesh keys file (larger than {KEYS_FILE_MAX} bytes)")
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise PreflightError(f"cannot read keys file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError):
        raise PreflightError(f"{path} is not a natsmesh keys file (not JSON)") from None
    try:
        keys = OwnKeys(
            str(doc["domain"]),
            NKey(str(doc["account"]["public"]), str(doc["account"]["seed"])),
            NKey(str(doc["signing"]["public"]), str(doc["signing"]["seed"])),
        )
        for key in (keys.account, keys.signing):
            if jwt.public_key(key.seed) != key.public:
                raise ValueError("a seed does not match its public key")
    except (KeyError, TypeError, ValueError) as exc:
        raise PreflightError(f"{path} is not a natsmesh keys file: {exc}") from None
    return keys


def write_link(keys: OwnKeys, folder: Path, expected: tuple[str, str] | None = None) -> str:
    """A new leaf-link user for KEYS' domain, signed by its signing key, as FOLDER's `link.creds` (its leaf nodes
    read it on their next attempt). EXPECTED: the (account, signing) public keys the spec names, checked first.
    Returns the link user's public key."""
    if expected is not None and expected != (keys.account.public, keys.signing.public):
        raise PreflightError(
            f"these keys are not the ones the spec names for {keys.domain} (account_key: account {expected[0]}, "
            f"signing {expected[1]}); the hub would refuse a link they sign"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise PreflightError(f"cannot make the domain's folder {folder}: {exc.strerror}") from None
    link = new_nkey()
    write_private(
        folder / LINK_CREDS, link_creds(keys.domain, keys.account.public, keys.signing.seed, link, int(time.time()))
    )
    return link.public


def missing_links(mesh: Mesh) -> list[str]:
    """The clusters of MESH whose team brought its own account key and whose folder holds no `link.creds` it
    signed yet (their leaf nodes could not link)."""
    return [
        c.name
        for c in mesh.domains
        if mesh.own_keys_of(c.name) and not (MeshDirs.of(mesh).cluster(c) / LINK_CREDS).is_file()
    ]
