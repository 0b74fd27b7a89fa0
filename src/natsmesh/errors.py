"""Every error a user can cause. Each says what is wrong and what to do; the CLI prints it without a traceback.

The whole hierarchy (bugs still raise Python's own exceptions)::

    NatsmeshError
    ├── SpecError               a spec that does not validate: file, path, line, what was expected
    ├── ServerBinaryError       nats-server missing, not running, too old
    ├── PreflightError          a port in use, an unwritable data dir
    ├── AlreadyRunningError     a second `up` of a running mesh
    ├── WrongMeshError          a spec names a data dir that belongs to another spec's mesh
    ├── NotRunningError         no running mesh (or part of it) where one is needed
    ├── NotReadyError           the mesh did not become ready in time
    ├── UnknownNameError        a name the mesh does not have
    │   ├── UnknownNodeError        a node or cluster
    │   ├── UnknownDomainError      a domain
    │   └── UnknownProductError     a product or stream (or a subject outside a product's)
    ├── PolicyDeniedError       the mesh policy does not let an identity do this; nothing was sent
    ├── NotHeldError            a party's folder holds no key for this (it needs another party's or the platform's)
    ├── NoStreamError           nothing stored a publish: the product's stream does not exist (yet)
    ├── PublishError            one or more publishes were not acknowledged
    ├── StreamListError         a domain's JetStream did not list its streams completely
    ├── PlanRefusedError        `apply` holds changes JetStream cannot make in place; nothing applied
    ├── MoveRefusedError        a product cannot move safely where asked; says why, nothing changed
    ├── MoveError               a move failed at a step: rolled back, or (past the switch) where it stands
    ├── NotDeployedError        servers on their own hosts need configs the platform has not handed out
    ├── ApplyError              a change `apply` made was refused by the domain's JetStream
    ├── ConfigRejectedError     nats-server refuses a config the spec renders; nothing was written or reloaded
    ├── ContractSchemaError     a contract's schema natsmesh will not compile (outside references, too big, ...)
    ├── NoProxiesError          a partition of a mesh started without fault proxies
    ├── FaultProxyError         the fault proxy cannot be reached, refused a request, or cannot listen
    ├── WouldOverwriteError     a file exists that the command was not told to overwrite
    └── UserRefusedError        a user of a domain's own that cannot be issued as asked; nothing issued
"""

from __future__ import annotations


class NatsmeshError(Exception):
    """Base of every error caused by input or environment rather than by a bug."""


class SpecError(NatsmeshError):
    """A mesh spec that does not validate. Holds one line per problem: file, path, line, what was expected."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        head = f"invalid mesh spec {source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


class ServerBinaryError(NatsmeshError):
    """The nats-server binary is missing, does not run, or is too old."""


class PreflightError(NatsmeshError):
    """Something that would stop the mesh from starting: a port in use, an unwritable data dir."""


class AlreadyRunningError(NatsmeshError):
    """A second `up` on a mesh whose supervisor is already running."""

    def __init__(self, mesh: str, pid: object, data_dir: object, new: list[str] | None = None) -> None:
        added = (
            f"; it runs without {', '.join(new)}, which the spec now names: `natsmesh down` and `natsmesh up` again "
            "start them (every store is kept)"
            if new
            else "; use `natsmesh status`, or `natsmesh down` first"
        )
        super().__init__(f"mesh {mesh!r} is already up (supervisor pid {pid}, data dir {data_dir}){added}")


class WrongMeshError(NatsmeshError):
    """A command's spec names a data dir (secrets, stores, a running supervisor) that belongs to another spec's
    mesh: nothing is done (`natsmesh.local.registry`)."""


class NotRunningError(NatsmeshError):
    """A command that needs a running mesh found none."""


class NotReadyError(NatsmeshError):
    """The mesh did not become ready in time; names the conditions still unmet."""


class UnknownNameError(NatsmeshError):
    """A name that the mesh does not have."""


class UnknownNodeError(UnknownNameError):
    """A node or cluster name that is not in the mesh."""


class UnknownDomainError(UnknownNameError):
    """A domain name that is not in the mesh."""


class UnknownProductError(UnknownNameError):
    """A `DOMAIN/NAME` that is neither a product nor a consumption stream of the spec, or a subject that is not
    one of a product's."""


class PolicyDeniedError(NatsmeshError):
    """The mesh policy does not let this identity do this; raised before anything is sent."""

    def __init__(self, identity: str, action: str, target: str, why: str = "") -> None:
        self.identity, self.action, self.target = identity, action, target
        super().__init__(f"denied by mesh policy: {identity} may not {action} {target}" + (f" ({why})" if why else ""))


class NotHeldError(NatsmeshError):
    """Acting from one party's folder (`--bundle`): what was asked needs keys the folder does not hold."""


class NoStreamError(NatsmeshError):
    """Nothing stored a publish: the product's stream does not exist (declared but not applied?)."""


class PayloadLimitError(NatsmeshError):
    """A message larger than its domain's payload limit (`limits.payload`): its servers would close the
    connection."""

    def __init__(self, domain: str, size: int, limit: int) -> None:
        super().__init__(f"a {size}-byte message is over {domain}'s payload limit of {limit} bytes (limits.payload)")


class ContractViolationError(NatsmeshError):
    """A message that does not satisfy its product's contract: refused before anything was sent."""

    def __init__(self, ref: str, version: str, problem: str, index: int | None = None) -> None:
        self.ref, self.version, self.problem, self.index = ref, version, problem, index
        which = "a message" if index is None else f"message {index + 1}"
        super().__init__(f"{which} does not satisfy {ref}'s contract {version}: {problem}; nothing was sent")


class PublishError(NatsmeshError):
    """One or more publishes were not acknowledged by JetStream."""

    def __init__(self, failures: list[tuple[int, BaseException]], total: int) -> None:
        self.failures = failures
        first = failures[0][1]
        super().__init__(
            f"{len(failures)} of {total} messages were not acknowledged (first: message {failures[0][0]}: "
            f"{type(first).__name__}: {first})"
        )


class StreamListError(NatsmeshError):
    """The domain's JetStream refused to list its streams, or a stream it named did not answer."""


class PlanRefusedError(NatsmeshError):
    """The plan holds changes JetStream cannot make in place; nothing was applied. `plan` is that plan."""

    def __init__(self, message: str, plan: object = None) -> None:
        self.plan = plan
        super().__init__(message)


class MoveRefusedError(NatsmeshError):
    """`natsmesh move` cannot move this product there safely; says why. Nothing was changed."""


class MoveError(NatsmeshError):
    """A move failed at a step: before the switch it was rolled back (the product as it was), after it the
    product lives on its new cluster and the message says what is left to do."""


class ApplyError(NatsmeshError):
    """A change `apply` sent was refused by the domain's JetStream; says which and why."""


class NoProxiesError(NatsmeshError):
    """A partition was asked of a mesh started without fault proxies."""


class FaultProxyError(NatsmeshError):
    """The fault proxy cannot be reached, refused a request, or cannot listen."""


class WouldOverwriteError(NatsmeshError):
    """A command would overwrite a file it was not told to overwrite (`--force`)."""


class ConfigRejectedError(NatsmeshError):
    """nats-server (`-t`) refuses server configs the spec renders: nothing was written, no node reloaded."""

    def __init__(self, refused: dict[str, str]) -> None:
        self.refused = refused
        lines = "\n".join(f"  - {rel}: {why}" for rel, why in sorted(refused.items()))
        super().__init__(
            f"nats-server refuses {len(refused)} of the server configs this spec renders; nothing was written and "
            f"no node reloaded (the running mesh is as it was):\n{lines}\n"
            "fix the spec where it names what the message points at (and tell us: validation should have caught it)"
        )


class ContractSchemaError(NatsmeshError):
    """A contract's schema natsmesh will not compile: not a JSON Schema, a reference outside its document, too big.
    Raised wherever the schema comes from (a spec, a folder's mesh.json, the catalog); nothing is retrieved."""


class NotDeployedError(NatsmeshError):
    """A mesh on hosts of its own needs server configs that differ from the ones last rendered for its hosts."""


class AccessRefusedError(NatsmeshError):
    """An access request or answer that would be refused (`natsmesh.model.access`): who may not do what, and why.
    Nothing was posted."""


class UserRefusedError(NatsmeshError):
    """A user of a domain's own that cannot be issued as asked (`natsmesh.model.users`): why, and what instead.
    Nothing was issued."""
