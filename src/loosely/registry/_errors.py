"""The registry's errors, each with the HTTP status and ``error_code`` Confluent Schema Registry answers with.

Clients branch on ``error_code`` (confluent-kafka raises ``SchemaRegistryError(http_status, error_code, message)``),
so the codes and the wording of the messages follow Confluent's REST API reference:

=====  ======  =================================================================================================
HTTP   code    meaning
=====  ======  =================================================================================================
404    40401   subject not found
404    40402   version not found
404    40403   schema (id) not found
404    40404   subject soft-deleted (a second soft delete)
404    40405   subject not soft-deleted before a permanent delete
404    40406   version soft-deleted (a second soft delete)
404    40407   version not soft-deleted before a permanent delete
404    40408   subject has no subject-level compatibility
404    40409   subject has no subject-level mode
409    409     incompatible schema
413    413     request body over the limit (loosely's; Confluent's front end answers 413 too)
415    415     unsupported Content-Type
422    42201   invalid schema (unparseable, unknown type, unresolved reference)
422    42202   invalid version
422    42203   invalid compatibility level
422    42204   invalid mode
422    42205   operation not permitted (read-only mode, import without an empty registry)
422    42206   the version is referenced by another schema and cannot be deleted
500    50001   the log could not be written or read back
500    50002   a write was not read back in time
500    50003   the leader could not be reached to forward a change to it
500    50004   no leader is elected (a change while the registries elect one, or none may lead)
=====  ======  =================================================================================================
"""

from __future__ import annotations

__all__ = ["RegistryError"]


class RegistryError(Exception):
    """An answer the client gets as ``{"error_code": code, "message": message}`` with HTTP status ``http_status``."""

    def __init__(self, http_status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code
        self.message = message
        self.retriable = False  # a change that may be tried again once an election names a leader

    def body(self) -> dict[str, object]:
        return {"error_code": self.error_code, "message": self.message}


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found(schema_id: int | None = None) -> RegistryError:
    return RegistryError(404, 40403, "Schema not found" if schema_id is None else f"Schema {schema_id} not found")


def invalid_schema(detail: str) -> RegistryError:
    return RegistryError(422, 42201, f"Invalid schema: {detail}")


def invalid_version(version: str) -> RegistryError:
    return RegistryError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"',
    )


def not_permitted(message: str) -> RegistryError:
    return RegistryError(422, 42205, message)
