"""Deciding what `apply` changes: the spec's streams and catalog against what the mesh has. Pure.

`plan_changes` compares the desired state (the spec) with `Facts` (what each domain's JetStream holds, read
by `natsmesh.reconcile.apply`) and returns the changes: create, update, unchanged, or (for natsmesh-managed
streams the spec no longer names) would-delete, kept unless pruning. Changes JetStream cannot make in place are
`refused`, and a plan with any refusal applies nothing. Streams natsmesh did not create are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from natsmesh.model.contracts import change_problem
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import CATALOG_BUCKET, KIND_KEY, MANAGED_KEY, MESH_KEY, MOVED_KEY
from natsmesh.model.record import Record
from natsmesh.reconcile.catalog import (
    HISTORY,
    TIMESTAMPS,
    descriptors,
    same_content,
    same_contract,
    unreadable,
    visible_keys,
)
from natsmesh.render.streams import desired_consumers, desired_streams

Action = Literal["create", "update", "unchanged", "delete", "would-delete", "refused"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "delete", "would-delete", "refused")
CATALOG_STREAM = f"KV_{CATALOG_BUCKET}"
# rows of a plan that are not a stream or consumer: the catalog, who may do what, the hub's accounts, clusters
# joining or leaving, a move to another trust mode
NOT_STREAMS = frozenset({"catalog", "catalog-copy", "policy", "accounts", "cluster", "trust", "access"})
Config = dict[str, Any]  # a stream config as the JetStream API takes and reports it

COMPARED = (
    "subjects",
    "description",
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_consumers",
    "num_replicas",
    "storage",
    "metadata",
    "mirror",
    "sources",
)


@dataclass(frozen=True)
class Change(Record):
    JSON_OMIT = ("config", "recreate")

    action: Action
    domain: str
    kind: str  # product | mirror | source | consumer | catalog | contract | catalog-copy | policy
    name: str  # a stream; for a consumer `STREAM/CONSUMER`
    detail: str = ""
    config: dict[str, Any] | None = field(default=None, compare=False)
    recreate: bool = field(default=False, compare=False)  # a consumer deleted and made anew (an update can't)


@dataclass
class Plan:
    mesh: str
    prune: bool
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    facts: Facts | None = field(default=None, repr=False, compare=False)  # what it was planned against

    def paused(self) -> dict[tuple[str, str, str], bool]:
        """(domain, stream, consumer) -> whether that natsmesh consumer was paused when planned."""
        held = self.facts.consumers if self.facts is not None else {}
        return {
            (d, s, c): bool(cfg.get("pause_until"))
            for d, streams in held.items()
            for s, consumers in streams.items()
            for c, cfg in consumers.items()
        }

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def refused(self) -> list[Change]:
        return [c for c in self.changes if c.action == "refused"]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action in ("create", "update", "delete")]

    def summary(self) -> dict[str, int]:
        return {a: self.count(a) for a in ACTIONS}

    def to_json(self) -> dict[str, Any]:
        return {
            "mesh": self.mesh,
            "prune": self.prune,
            "applied": self.applied,
            "summary": self.summary(),
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass(frozen=True)
class Facts:
    """What a plan compares the spec with, as read from the running mesh."""

    streams: dict[str, dict[str, Config]]  # domain -> stream name -> its config
    catalog: dict[str, dict[str, Any]]  # the hub's catalog: key -> descriptor
    copies: dict[
        str, dict[str, dict[str, Any]] | None
    ]  # leaf domain -> its read copy of the catalog (None: unreadable)
    consumers: dict[str, dict[str, dict[str, Config]]] = field(default_factory=dict)  # domain -> stream -> name


# ---------------------------------------------------------------------------------------------------------------
# Comparing configs


def _source_view(src: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if not src:
        return None
    transforms = tuple((t.get("src"), t.get("dest")) for t in src.get("subject_transforms") or [])
    consumer = src.get("consumer") or {}
    return (
        src.get("name"),
        (src.get("external") or {}).get("api"),
        src.get("filter_subject") or "",
        transforms,
        consumer.get("name"),
        consumer.get("deliver_subject"),
    )


def _view(cfg: Config, key: str) -> Any:
    v = cfg.get(key)
    if key == "subjects":
        return sorted(v or [])
    if key == "metadata":
        return {k: x for k, x in (v or {}).items() if k.startswith("natsmesh.")}
    if key == "mirror":
        return _source_view(v)
    if key == "sources":
        return sorted((_source_view(s) for s in v or []), key=repr)
    if key == "description":
        return v or ""
    if key in ("max_bytes", "max_msgs", "max_consumers"):
        return -1 if v in (None, 0) else v
    if key == "max_age":
        return int(v or 0)
    return v


def _shown_value(value: Any) -> str:
    """A config value as a plan prints it: lists as their items, nothing as `none`, long text cut short."""
    if value is None or value == [] or value == {} or value == "":
        return "none"
    if isinstance(value, list):
        return ", ".join(_shown_value(v) for v in value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown_value(v)}" for k, v in sorted(value.items())) + "}"
    text = f"'{value}'" if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:55] + "...'"


def _changed(key: str, old: Any, new: Any) -> list[str]:
    """How field KEY changes, as `field: old -> new` (a mapping's changed entries one by one, `key.entry: ...`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            f"{key}.{k}: {_shown_value(old.get(k))} -> {_shown_value(new.get(k))}"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        ]
    return [f"{key}: {_shown_value(old)} -> {_shown_value(new)}"]


def diff(desired: Config, actual: Config) -> list[str]:
    """Fields that differ, as `field: actual -> desired` (field names and values, never whole mappings)."""
    out = []
    for key in COMPARED:
        if key not in desired and key not in ("mirror", "sources", "subjects"):
            continue
        a, d = _view(actual, key), _view(desired, key)
        if a != d:
            out += _changed(key, a, d)
    return out


def refusal(domain: str, name: str, desired: Config, actual: Config) -> str | None:
    """Why JetStream cannot turn ACTUAL into DESIRED in place, with what to do instead; None if it can."""
    where = f"{domain}/{name}"
    fix = (
        f"give it a new name in the spec (a new stream), or remove it from the spec and run "
        f"`natsmesh apply --prune` to delete {where} first"
    )
    if MANAGED_KEY not in (actual.get("metadata") or {}):
        return f"{where} exists but was not created by natsmesh; natsmesh leaves it alone: rename the spec's stream"
    if bool(desired.get("mirror")) != bool(actual.get("mirror")):
        kinds = ("a mirror", "not a mirror")
        now, want = kinds[0 if actual.get("mirror") else 1], kinds[0 if desired.get("mirror") else 1]
        return f"{where} is {now} and the spec wants {want}; JetStream cannot change that in place: {fix}"
    if desired.get("mirror") and _source_view(desired["mirror"]) != _source_view(actual["mirror"]):
        return f"{where} mirrors {actual['mirror'].get('name')!r}; a mirror's origin cannot change in place: {fix}"
    if (desired.get("storage") or "file") != (actual.get("storage") or "file"):
        return (
            f"{where} uses {actual.get('storage')} storage and the spec wants {desired.get('storage')}; "
            f"JetStream cannot change storage in place: {fix}"
        )
    return None


# ---------------------------------------------------------------------------------------------------------------
# Planning


def _kind(cfg: Config) -> str:
    return str((cfg.get("metadata") or {}).get(KIND_KEY) or ("mirror" if cfg.get("mirror") else "product"))


def depths(mesh: Mesh) -> dict[str, int]:
    """How many consumptions deep each stream sits (products 0), so upstreams are created first."""
    by_ref = {c.ref: c for c in mesh.consumptions}
    memo: dict[str, int] = {}

    def depth(ref: str) -> int:
        if ref not in by_ref:
            return 0
        if ref not in memo:
            memo[ref] = 1 + max(depth(s.ref) for s in by_ref[ref].sources)
        return memo[ref]

    return {c.ref: depth(c.ref) for c in mesh.consumptions}


def _stream_change(domain: str, name: str, want: Config, have: Config | None) -> Change:
    kind = str(want["metadata"][KIND_KEY])
    if have is None:
        return Change("create", domain, kind, name, "", want)
    if (why := refusal(domain, name, want, have)) is not None:
        return Change("refused", domain, kind, name, why, want)
    if changed := diff(want, have):
        return Change("update", domain, kind, name, "; ".join(changed), want)
    return Change("unchanged", domain, kind, name)


def plan_streams(mesh: Mesh, actual: dict[str, dict[str, Config]], prune: bool) -> list[Change]:
    """The spec's streams against ACTUAL (domain -> stream -> config), upstreams first; then the managed streams
    of this mesh that the spec no longer names (deleted only if PRUNE)."""
    desired = desired_streams(mesh)
    depth = depths(mesh)
    order = sorted(
        ((d, n) for d, streams in desired.items() for n in streams), key=lambda dn: depth.get("/".join(dn), 0)
    )
    changes = [_stream_change(d, n, desired[d][n], actual.get(d, {}).get(n)) for d, n in order]
    lives = {
        (c.owner, name): c.name
        for c in mesh.domains
        for name, have in actual.get(c.name, {}).items()
        if _kind(have) == "product"
    }
    changes = [_placement_problem(mesh, ch, lives) or ch for ch in changes]
    for domain in (c.name for c in mesh.clusters):
        for name, have in sorted(actual.get(domain, {}).items()):
            meta = have.get("metadata") or {}
            if meta.get(MANAGED_KEY) != "true" or meta.get(MESH_KEY) != mesh.name or name in desired.get(domain, {}):
                continue
            action: Action = "delete" if prune else "would-delete"
            note = "no longer in the spec" + ("" if prune else "; kept (use --prune to delete it and its data)")
            changes.append(Change(action, domain, _kind(have), name, note))
    return changes


def _placement_problem(mesh: Mesh, ch: Change, lives: dict[tuple[str, str], str]) -> Change | None:
    """A refusal for a product to be made on the cluster the spec names while it lives on another of its
    domain's clusters (`natsmesh move`): making it again would split its data in two. LIVES: (owning domain,
    stream) -> the cluster holding it as a product."""
    if ch.action != "create" or ch.kind != "product":
        return None
    owner = mesh.domain(ch.domain).owner
    there = lives.get((owner, ch.name))
    if there is None or there == ch.domain:
        return None
    ref = f"{owner}/{ch.name}"
    return Change(
        "refused",
        ch.domain,
        "product",
        ch.name,
        f"{ref} lives on cluster {there} (moved there); the spec puts it on {ch.domain}: set `cluster: "
        f"{there}` for it in the spec, or move it back (`natsmesh move {ref} --to {ch.domain}`)",
    )


CONSUMER_COMPARED = ("deliver_subject", "filter_subject", "description")


def _plain(value: Any) -> Any:
    """An enum member as the JSON value it stands for (nats.py's configs hold enums)."""
    return value.value if isinstance(value, Enum) else value


CONSUMER_FIXED = ("ack_policy", "deliver_policy", "flow_control")  # no update changes these: made anew


def _consumer_change(owner: str, stream: str, name: str, want: Config, have: Config | None, fresh: bool) -> Change:
    """A share's consumer: made, kept, updated, or made anew (for a new copy, so it starts from the first message:
    a copy reading an old consumer would start at that consumer's ack floor and miss the rest for good)."""
    ref = f"{stream}/{name}"
    if have is None:
        return Change("create", owner, "consumer", ref, "", want)
    if (moved := (have.get("metadata") or {}).get(MOVED_KEY)) is not None:  # made by a move: from the next message
        start = {"deliver_policy": "by_start_sequence", "opt_start_seq": int(moved)}
        want = want | start | {"metadata": (want.get("metadata") or {}) | {MOVED_KEY: moved}}
    if fresh:
        return Change(
            "update", owner, "consumer", ref, "made anew: the new copy reads from the first message", want, True
        )
    if any(_plain(have.get(k)) != want.get(k) for k in CONSUMER_FIXED):
        return Change("update", owner, "consumer", ref, "made anew: its delivery settings had changed", want, True)
    changed = [
        c for k in CONSUMER_COMPARED if have.get(k) != want.get(k) for c in _changed(k, have.get(k), want.get(k))
    ]
    if changed or _view(have, "metadata") != _view(want, "metadata"):
        return Change("update", owner, "consumer", ref, "; ".join(changed) or "metadata", want)
    return Change("unchanged", owner, "consumer", ref)


def plan_consumers(mesh: Mesh, facts: Facts, stream_changes: list[Change], prune: bool) -> list[Change]:
    """Every share's consumer in its owner's domain (`natsmesh.render.streams.desired_consumers`); then the
    natsmesh consumers of this mesh no share needs any more (deleted only if PRUNE)."""
    desired = desired_consumers(mesh)
    fresh = {(c.domain, c.name) for c in stream_changes if c.action == "create" and c.kind in ("mirror", "source")}
    copy_of = {(s.owner, s.stream, s.consumer): (s.taker, s.copy) for s in mesh.shares}
    changes = []
    for owner, streams in desired.items():
        for stream, consumers in streams.items():
            for name, want in consumers.items():
                have = facts.consumers.get(owner, {}).get(stream, {}).get(name)
                changes.append(
                    _consumer_change(owner, stream, name, want, have, copy_of[(owner, stream, name)] in fresh)
                )
    for domain, streams in facts.consumers.items():
        for stream, consumers in sorted(streams.items()):
            for name, have in sorted(consumers.items()):
                meta = have.get("metadata") or {}
                if meta.get(MESH_KEY) != mesh.name or name in desired.get(domain, {}).get(stream, {}):
                    continue
                action: Action = "delete" if prune else "would-delete"
                note = "its copy is no longer in the spec" + ("" if prune else "; kept (use --prune to delete it)")
                changes.append(Change(action, domain, "consumer", f"{stream}/{name}", note))
    return changes


def _catalog_detail(want: dict[str, Any], have: dict[str, Any]) -> str:
    old, new = have.get("contract"), want.get("contract")
    if same_contract(old, new):
        fields = sorted(k for k in set(want) | set(have) if k not in TIMESTAMPS and want.get(k) != have.get(k))
        return f"{', '.join(f for f in fields if f not in ('contract', HISTORY)) or 'descriptor'} changed"
    if old is None:
        return f"contract {new['version']} added"  # type: ignore[index]
    if new is None:
        return f"contract {old.get('version')} removed (kept in its history)"
    return f"contract {old.get('version')} -> {new['version']} ({old.get('compatibility', 'backward')}-compatible)"


def plan_catalog(mesh: Mesh, facts: Facts, prune: bool) -> list[Change]:
    """The hub's catalog against the spec's descriptors, then in every leaf cluster a read copy of the entries it
    may read (`visible_keys`), so its clients read them locally (and while cut off from the hub): domains do not
    share the hub's JetStream."""
    hub = mesh.hub.name
    changes = []
    if CATALOG_STREAM not in facts.streams.get(hub, {}):
        changes.append(Change("create", hub, "catalog", CATALOG_BUCKET, "KV bucket"))
    wanted = descriptors(mesh)
    for key, desc in wanted.items():
        have = facts.catalog.get(key)
        if have is None:
            changes.append(Change("create", hub, "catalog", key, "", desc))
        elif (why := change_problem(desc["ref"], have.get("contract"), desc.get("contract"))) is not None:
            changes.append(Change("refused", hub, "contract", key, why, desc))
        elif not same_content(desc, have):
            changes.append(Change("update", hub, "catalog", key, _catalog_detail(desc, have), desc))
        else:
            changes.append(Change("unchanged", hub, "catalog", key))
    for key in sorted(set(facts.catalog) - set(wanted)):
        action: Action = "delete" if prune else "would-delete"
        changes.append(Change(action, hub, "catalog", key, "product no longer in the spec"))
    pending = {c.name for c in changes if c.action in ("create", "update", "delete")}
    views = visible_keys(mesh)
    for leaf in mesh.domains:
        visible = views[leaf.name]
        if CATALOG_STREAM not in facts.streams.get(leaf.name, {}):
            copy: Change = Change(
                "create",
                leaf.name,
                "catalog-copy",
                CATALOG_BUCKET,
                f"read copy of what it may read ({len(visible)} {'entry' if len(visible) == 1 else 'entries'})",
            )
        elif pending & visible or facts.copies.get(leaf.name) != {
            k: v for k, v in facts.catalog.items() if k in visible
        }:
            copy = Change("update", leaf.name, "catalog-copy", CATALOG_BUCKET, _copy_detail(facts, leaf.name, visible))
        else:
            copy = Change("unchanged", leaf.name, "catalog-copy", CATALOG_BUCKET)
        changes.append(copy)
    return changes


def _copy_detail(facts: Facts, leaf: str, visible: set[str]) -> str:
    """Why a leaf's read copy is written: what it lacks, and what in it is not the platform's (rewritten)."""
    local = facts.copies.get(leaf)
    if local is None:
        return "read copy of what it may read (it could not be read: written anew)"
    foreign = sorted(k for k in local if k not in visible)
    bad = [k for k in unreadable(local) if k in visible]
    drift = sorted(k for k, v in local.items() if k in visible and k in facts.catalog and v != facts.catalog[k])
    notes = (
        [f"{len(bad)} unreadable entr{'y' if len(bad) == 1 else 'ies'} rewritten ({', '.join(bad[:3])})"] if bad else []
    )
    changed = [k for k in drift if k not in bad]
    if changed:
        notes.append(f"{len(changed)} entr{'y' if len(changed) == 1 else 'ies'} differing from the catalog rewritten")
    if foreign:
        notes.append(f"{len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} it may not hold removed")
    return "; ".join(["read copy of what it may read", *notes])


def plan_changes(mesh: Mesh, facts: Facts, prune: bool = False) -> Plan:
    """Every change that makes the mesh match the spec, given FACTS; changes nothing."""
    streams = plan_streams(mesh, facts.streams, prune)
    consumers = plan_consumers(mesh, facts, streams, prune)
    return Plan(mesh.name, prune, streams + consumers + plan_catalog(mesh, facts, prune))
