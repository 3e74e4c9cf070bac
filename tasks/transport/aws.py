"""What SQS answers and allows, as the transport's concerns need it: error codes and limits."""

from __future__ import annotations

from botocore.exceptions import ClientError

#: SQS's own bounds of MessageRetentionPeriod, in seconds.
RETENTION_RANGE = (60, 1_209_600)
#: Error codes of an SQS queue that does not exist (query and JSON protocols).
MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: Most messages a batch request of SQS takes.
SQS_BATCH = 10
#: Errors of a receipt handle no longer valid: nothing left to delete (as kombu's basic_ack).
STALE_RECEIPT = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue"})


def error_code(error: ClientError) -> str:
    """The AWS error code of a botocore ClientError ("" when there is none)."""
    return str(error.response.get("Error", {}).get("Code", ""))
