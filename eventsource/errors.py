"""The whole error tree of eventsource.

Every exception the framework raises on purpose derives from :class:`EventSourceError`.
Third-party exceptions are wrapped (``raise ... from exc``) so callers catch one tree.
``retriable`` says whether trying the same operation again can succeed (it mirrors
``KafkaError.retriable()`` where Kafka is the cause)::

    EventSourceError
    ├── ConfigurationError              bad settings, bad import path, invalid identifier
    │   ├── InvalidIdentifierError      a table / projection / topic name that is not allowed
    │   ├── TopicNotFoundError          a topic named by the user or a projection does not exist
    │   ├── DatabaseNotFoundError       a read-only command pointed at a database that is not there
    │   ├── TopicRetentionError         an events topic that can lose records (retention,
    │   │                               compaction): the store refuses to start on it
    │   ├── AuthenticationError         the brokers refused the login (SASL) or the TLS
    │   │                               handshake; names mechanism and broker, never a secret
    │   ├── AuthorizationError          the principal lacks an ACL: names the resource and
    │   │                               the operation (nothing was written)
    │   └── DuplicateInstanceError      two consumers share a group.instance.id: the broker
    │                                   fenced this one; names the id and the group
    ├── DomainError                     aggregate misuse (no I/O involved)
    │   ├── MissingHandlerError         an event type without an @apply handler
    │   ├── AggregateNotFoundError      load of an aggregate that has no events
    │   └── ApplyError                  an @apply handler raised (append: nothing written;
    │                                   catch-up: names aggregate, version and offset)
    ├── SchemaError                     schema generation / catalog / compatibility problems
    │   ├── UnsupportedTypeError        a model field that cannot be mapped to Avro
    │   ├── SchemaDriftError            a model no longer matches its latest .avsc file
    │   └── IncompatibleSchemaError     a new version breaks the configured compatibility
    ├── EncodeError                     an event or its metadata cannot be put on the wire
    ├── DecodeError                     a record's payload cannot become an Event
    │   ├── BadMagicError               neither single-object (C3 01) nor Confluent (00) framing
    │   ├── UnknownSchemaError          fingerprint / schema id not in the catalog
    │   ├── SchemaResolutionError       writer schema cannot be resolved into the current model
    │   │                               (also an IncompatibleSchemaError)
    │   ├── CorruptPayloadError         truncated or corrupt Avro body
    │   ├── PayloadValidationError      decoded datum violates the current pydantic model
    │   └── UpcastError                 an upcaster raised or returned data that does not fit
    ├── StoreError                      event store failures
    │   ├── ConcurrencyError            expected version did not match (nothing was written)
    │   ├── NotOwnerError               this process does not own the aggregate's partition
    │   ├── FencedError                 a newer writer took over; this writer is a zombie
    │   ├── UncertainCommitError        commit outcome could not be determined
    │   ├── EventTooLargeError          an event over the topic's max.message.bytes (nothing
    │   │                               written; never retriable)
    │   ├── VersionSequenceError        a gap or duplicate in an aggregate's versions on the
    │   │                               topic (names topic, partition, offset, versions)
    │   └── StoreUnavailableError       broker unreachable / writer not ready (retriable)
    │       ├── BrokerUnreachableError  no broker answered at the bootstrap address in time
    │       ├── NotEnoughReplicasError  fewer in-sync replicas than min.insync.replicas
    │       └── OverloadedError         the owner's append queue is full (nothing written)
    ├── ProjectionError                 read side failures
    │   ├── HandlerError                a projection handler raised (after retries)
    │   ├── ProjectionStoppedError      policy "stop" halted the runner at a poison record
    │   ├── DeadLetterError             dead letter not made durable; batch not committed
    │   └── WaitTimeoutError            read-your-writes wait did not reach the positions
    └── BrokerError                     local broker launcher / admin failures
        ├── MissingToolError            java or mvn not found
        ├── PortInUseError              the broker port is taken by another process
        └── BrokerStartError            the broker did not come up (message has log tail)

Messages say what happened, to what (topic, partition, offset, aggregate id, version),
and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AggregateNotFoundError",
    "ApplyError",
    "AuthenticationError",
    "AuthorizationError",
    "BadMagicError",
    "BrokerError",
    "BrokerStartError",
    "BrokerUnreachableError",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptPayloadError",
    "DatabaseNotFoundError",
    "DeadLetterError",
    "DecodeError",
    "DomainError",
    "DuplicateInstanceError",
    "EncodeError",
    "EventSourceError",
    "EventTooLargeError",
    "FencedError",
    "HandlerError",
    "IncompatibleSchemaError",
    "InvalidIdentifierError",
    "MissingHandlerError",
    "MissingToolError",
    "NotEnoughReplicasError",
    "NotOwnerError",
    "OverloadedError",
    "PayloadValidationError",
    "PortInUseError",
    "ProjectionError",
    "ProjectionStoppedError",
    "SchemaDriftError",
    "SchemaError",
    "SchemaResolutionError",
    "StoreError",
    "StoreUnavailableError",
    "TopicNotFoundError",
    "TopicRetentionError",
    "UncertainCommitError",
    "UnknownSchemaError",
    "UnsupportedTypeError",
    "UpcastError",
    "VersionSequenceError",
    "WaitTimeoutError",
]


class EventSourceError(Exception):
    """Root of every error eventsource raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigurationError(EventSourceError):
    """Settings, import paths or names that cannot work; fix the configuration."""


class InvalidIdentifierError(ConfigurationError):
    """A table, projection or topic name that is not a safe identifier."""


class TopicNotFoundError(ConfigurationError):
    """A topic that was named (on the command line, or as a projection's topic) is missing."""


class DatabaseNotFoundError(ConfigurationError):
    """A read-only command was pointed at a read-model database that does not exist.

    Read-only commands never create anything; the message names the path."""


class TopicRetentionError(ConfigurationError):
    """An events topic whose settings let Kafka delete or compact events.

    Versions are rebuilt from the topic: a lost record makes every later version check of
    its aggregate wrong. Fix the topic (``retention.ms=-1``, ``retention.bytes=-1``,
    ``cleanup.policy=delete``) or opt out explicitly (``allow_lossy_events_topics``).
    """


class AuthenticationError(ConfigurationError):
    """The brokers refused this client's login (SASL) or its TLS handshake failed.

    The message names the mechanism, the user and the broker, never the password. Trying
    again with the same credentials cannot succeed.
    """


class AuthorizationError(ConfigurationError):
    """The authenticated principal lacks an ACL for what it tried; nothing was changed.

    ``resource_type`` (``topic``, ``group``, ``transactional id``, ``cluster``),
    ``resource`` (its name) and ``operation`` (``WRITE``, ``READ``, ``DESCRIBE``, ...) say
    which ACL is missing.
    """

    def __init__(self, message: str, *, resource_type: str, resource: str, operation: str) -> None:
        super().__init__(message, retriable=False)
        self.resource_type = resource_type
        self.resource = resource
        self.operation = operation


class DuplicateInstanceError(ConfigurationError):
    """Another consumer joined the group with this one's ``group.instance.id`` and the
    broker fenced this one: two replicas run with the same instance id.

    ``instance_id`` and ``group_id`` name them; give each replica its own instance id.
    """

    def __init__(self, message: str, *, instance_id: str, group_id: str) -> None:
        super().__init__(message, retriable=False)
        self.instance_id = instance_id
        self.group_id = group_id


class DomainError(EventSourceError):
    """Misuse of an aggregate or event, found without any I/O."""


class MissingHandlerError(DomainError):
    """An aggregate received an event type it has no ``@apply`` handler for."""


class AggregateNotFoundError(DomainError):
    """An aggregate id that has no events in the store."""


class ApplyError(DomainError):
    """An ``@apply`` handler raised while folding an event.

    On append the events are refused before any commit (nothing was written); during
    catch-up the partition is not served, and the message names the aggregate, the version
    and the offset of the event.
    """


class SchemaError(EventSourceError):
    """Schema generation, catalog or compatibility problem."""


class UnsupportedTypeError(SchemaError):
    """A model field whose Python type has no Avro mapping."""


class SchemaDriftError(SchemaError):
    """A model no longer matches its latest released schema file."""


class IncompatibleSchemaError(SchemaError):
    """A new schema version breaks the configured compatibility mode."""


class EncodeError(EventSourceError):
    """A valid event (or its metadata) holds a value its Avro schema or headers cannot carry."""


class DecodeError(EventSourceError):
    """A record's payload could not be turned into an event.

    ``topic``, ``partition`` and ``offset`` are set when the payload came from Kafka.
    """

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.detail = message
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(self._render())

    def _render(self) -> str:
        if self.topic is None:
            return self.detail
        return f"{self.detail} (at {self.topic}[{self.partition}]@{self.offset})"

    def at(self, topic: str, partition: int, offset: int) -> DecodeError:
        """Return the same error located at a Kafka position."""
        located = type(self)(self.detail, topic=topic, partition=partition, offset=offset)
        located.__cause__ = self.__cause__
        return located


class BadMagicError(DecodeError):
    """The payload starts with neither the single-object nor the Confluent marker."""


class UnknownSchemaError(DecodeError):
    """The payload's schema fingerprint or registry id is not known to the catalog."""


class SchemaResolutionError(DecodeError, IncompatibleSchemaError):
    """The payload's writer schema is known but the current model cannot read it."""


class CorruptPayloadError(DecodeError):
    """The Avro body is truncated or corrupt."""


class PayloadValidationError(DecodeError):
    """The decoded datum does not satisfy the current pydantic model."""


class UpcastError(DecodeError):
    """An upcaster raised, or returned data that does not fit the version it produces."""


class StoreError(EventSourceError):
    """Event store failure."""


class ConcurrencyError(StoreError):
    """The aggregate's version is not the expected one; nothing was written."""

    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"aggregate {aggregate_id!r} is at version {actual}, expected {expected}; "
            "nothing was written: reload the aggregate and retry the command"
        )


class NotOwnerError(StoreError):
    """This process does not own the aggregate's partition; send the command to the owner."""

    retriable = True


class FencedError(StoreError):
    """A newer writer for the same partition exists; this writer must stop."""


class UncertainCommitError(StoreError):
    """The commit outcome could not be established; reload before retrying."""


class EventTooLargeError(StoreError):
    """An event too large for its topic's ``max.message.bytes`` (or the producer's
    ``message.max.bytes``); refused before it was queued, nothing was written."""


class VersionSequenceError(StoreError):
    """An aggregate's versions on the events topic are not 1, 2, 3, ...: a record was lost
    (retention, compaction) or written twice by something other than its single owner."""


class StoreUnavailableError(StoreError):
    """The store cannot serve right now (broker down, still catching up)."""

    retriable = True


class BrokerUnreachableError(StoreUnavailableError):
    """No broker answered at the bootstrap address within the connect timeout.

    The message names the address and how to point elsewhere (``-b`` /
    ``EVENTSOURCE_BOOTSTRAP_SERVERS``).
    """


class NotEnoughReplicasError(StoreUnavailableError):
    """The cluster has fewer in-sync replicas of a partition than ``min.insync.replicas``.

    Nothing was written; appends succeed again once enough brokers are back.
    """


class OverloadedError(StoreUnavailableError):
    """The owner's queue of routed appends is full; nothing was written: retry later."""


class ProjectionError(EventSourceError):
    """Read side failure."""


class HandlerError(ProjectionError):
    """A projection handler raised, after its retries."""


class ProjectionStoppedError(ProjectionError):
    """The ``stop`` policy halted the runner at a poison record."""


class DeadLetterError(ProjectionError):
    """A dead letter was not acknowledged by the broker; the batch was not committed."""


class WaitTimeoutError(ProjectionError):
    """A projection did not reach the awaited positions in time."""

    retriable = True


class BrokerError(EventSourceError):
    """Local broker launcher or admin failure."""


class MissingToolError(BrokerError):
    """A required program (java, mvn) is not installed."""


class PortInUseError(BrokerError):
    """The broker's port is taken by another process."""


class BrokerStartError(BrokerError):
    """The broker did not come up; the message carries the log tail."""
