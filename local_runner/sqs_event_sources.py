"""The template's SQS queues in moto (named local-<LogicalId>), the bucket's S3 -> SQS notifications, and what
Lambda's SQS event source mapping does, which moto does not: deliver waiting messages to the consumer function."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from .iam import SQS_EVENT_SOURCE_ACTIONS, Check, allows
from .template_model import FunctionSpec, StackResolver


class QueueEventSources:
    def __init__(
        self, resolver: StackResolver, functions: dict[str, FunctionSpec], role_statements: Callable[[str], list[dict]]
    ):
        self.resolver = resolver
        self.functions = functions
        self.role_statements = role_statements
        self.sqs: Any = None

    def create(self, s3: Any) -> None:
        """The queues, the bucket's notifications to them, and the event source mappings."""
        import boto3

        self.sqs = boto3.client("sqs", region_name=self.resolver.region)
        for logical_id, resource in self.resolver.template.resources.items():
            if resource["Type"] == "AWS::SQS::Queue":
                url = self.sqs.create_queue(QueueName=self.resolver.queue_name(logical_id))["QueueUrl"]
                self.resolver.queue_urls[logical_id] = url
        for resource in self.resolver.template.resources.values():
            if resource["Type"] == "AWS::S3::Bucket":
                self._notify_queues(s3, resource)
        for spec in self.functions.values():
            for queue_id in spec.sqs_queues:
                self._check_event_source_role(spec.logical_id, queue_id)

    def _notify_queues(self, s3: Any, bucket: dict) -> None:
        notifications = self.resolver.resolve(bucket.get("Properties", {}).get("NotificationConfiguration", {}))
        queue_configs = [
            {
                "QueueArn": q["Queue"],
                "Events": [q["Event"]],
                "Filter": {"Key": {"FilterRules": q["Filter"]["S3Key"]["Rules"]}} if "Filter" in q else {},
            }
            for q in notifications.get("QueueConfigurations", [])
        ]
        if queue_configs:
            s3.put_bucket_notification_configuration(
                Bucket=self.resolver.bucket, NotificationConfiguration={"QueueConfigurations": queue_configs}
            )

    def _check_event_source_role(self, function: str, queue_id: str) -> None:
        """CreateEventSourceMapping fails unless the function's role may receive, delete and read the attributes of
        the queue's messages (Lambda Developer Guide, 'Using Lambda with Amazon SQS': execution role permissions)."""
        queue_arn = self.resolver.get_att(queue_id, "Arn")
        statements = self.role_statements(function)
        missing = [a for a in SQS_EVENT_SOURCE_ACTIONS if not allows(statements, Check(a, queue_arn))]
        if missing:
            raise PermissionError(
                f"the event source mapping of {function} on {queue_id} would fail: its role lacks {', '.join(missing)} "
                f"on {queue_arn}"
            )

    def queue_url(self, logical_id: str) -> str:
        return self.resolver.queue_urls[logical_id]

    def purge(self) -> None:
        """Drop waiting messages (received and deleted one by one: SQS allows one PurgeQueue a minute)."""
        for url in self.resolver.queue_urls.values():
            while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                ])

    def deliver(self) -> None:
        """Deliver waiting messages to their consumer function in batches, and delete those the function did not
        report as failed."""
        import boto3

        lam = boto3.client("lambda", region_name=self.resolver.region)
        for spec in self.functions.values():
            for queue_id in spec.sqs_queues:
                url = self.resolver.queue_urls[queue_id]
                while True:
                    messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                    if not messages:
                        break
                    event = {"Records": [self._record(m, self.resolver.get_att(queue_id, "Arn")) for m in messages]}
                    answer = json.loads(lam.invoke(FunctionName=spec.logical_id, Payload=json.dumps(event))["Payload"].read())
                    failed = {f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])} if isinstance(answer, dict) else set()
                    for message in messages:
                        if message["MessageId"] not in failed:
                            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    if failed:
                        break  # failed messages wait for their visibility timeout, as in AWS

    def _record(self, message: dict, queue_arn: str) -> dict:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": self.resolver.region,
        }
