"""A sans-IO Raft consensus core (etcd-raft's design, in Python).

The driver feeds `RawNode` ticks and messages and handles each `Ready` as `raft.ready`
describes: persist, send, apply, advance. Nothing in this package does I/O, reads a clock,
or draws randomness except through the injected `Rng`.
"""

from quorumdb.raft.config import Config, PlantedBug
from quorumdb.raft.core import Rng
from quorumdb.raft.errors import (
    CompactedError,
    ConfigError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    SnapshotTemporarilyUnavailableError,
    StepLocalMessageError,
    StepPeerNotFoundError,
    StorageError,
    UnavailableError,
)
from quorumdb.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)
from quorumdb.raft.raw_node import RawNode, Status, encode_conf_change
from quorumdb.raft.read_only import ReadOnlyOption
from quorumdb.raft.ready import (
    Advance,
    Apply,
    Effect,
    Persist,
    Ready,
    Send,
    StorageAppend,
    StorageApply,
    effects,
)
from quorumdb.raft.storage import MemoryStorage, Storage

__all__ = [
    "NONE",
    "Advance",
    "Apply",
    "CompactedError",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Config",
    "ConfigError",
    "Effect",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NotLeaderError",
    "Persist",
    "PlantedBug",
    "ProposalDroppedError",
    "RaftError",
    "RawNode",
    "ReadOnlyOption",
    "ReadState",
    "Ready",
    "Rng",
    "Send",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotTemporarilyUnavailableError",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMessageError",
    "StepPeerNotFoundError",
    "Storage",
    "StorageAppend",
    "StorageApply",
    "StorageError",
    "UnavailableError",
    "effects",
    "encode_conf_change",
]
