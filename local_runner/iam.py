"""What IAM checks before AWS serves a call, which moto does not: the permission model of the S3 operations the
product calls, and the evaluation of a role's policy statements against it.

S3_RULES is the one table of that model: each S3 operation, the checks S3 makes for it (action, resource,
condition keys), and the AWS documentation each rule comes from; EVENTS_RULES is the same for EventBridge. The local engine applies it to every S3 call a
handler makes (local_runner/s3_enforcement.py); tests/test_iam.py asserts on the same table. An operation missing
from the table is refused by the engine, so a new call cannot slip past the model.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

# Where each rule is written down (all pages of docs.aws.amazon.com, read 2026-11).
ACTIONS_PAGE = "Amazon S3 User Guide, 'Required permissions for Amazon S3 API operations'"
CONDITIONAL_WRITES = (
    "Amazon S3 User Guide, 'How to prevent object overwrites with conditional writes': a write with If-Match needs "
    "s3:PutObject and s3:GetObject; If-None-Match needs s3:PutObject"
)
CONDITIONAL_DELETES = (
    "Amazon S3 User Guide, 'How to perform conditional deletes': a delete with an ETag (If-Match, or ETag per key in "
    "DeleteObjects) needs s3:DeleteObject and s3:GetObject"
)
MISSING_KEY = (
    "Amazon S3 API Reference, GetObject and HeadObject, 'Permissions': a key that does not exist answers 404 only "
    "to a caller with s3:ListBucket on the bucket, 403 Access Denied otherwise"
)
COPY_SOURCE = "Amazon S3 API Reference, CopyObject / UploadPartCopy, 'Permissions': s3:GetObject on the source, s3:PutObject on the target"
LIST_PREFIX = "Service Authorization Reference, Amazon S3: s3:ListBucket is evaluated with the condition key s3:prefix"
MULTIPART = "Amazon S3 User Guide, 'Multipart upload API and permissions'"
SSE_KMS = (
    "Amazon S3 User Guide, 'Using server-side encryption with AWS KMS keys (SSE-KMS)': an upload encrypted with a KMS "
    "key needs kms:GenerateDataKey on the key (the bucket's default, SSE-S3, needs no KMS permission)"
)


@dataclass(frozen=True)
class Check:
    """One IAM authorization S3 makes for a request."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)  # condition keys of the request, e.g. s3:prefix


@dataclass(frozen=True)
class Rule:
    checks: Callable[[dict], list[Check]]
    source: str


def _bucket(params: dict) -> str:
    return f"arn:aws:s3:::{params['Bucket']}"


def _object(params: dict, key: str | None = None) -> str:
    return f"{_bucket(params)}/{params['Key'] if key is None else key}"


def _copy_source(params: dict) -> Check:
    source = params["CopySource"]
    if isinstance(source, dict):
        arn, version = f"arn:aws:s3:::{source['Bucket']}/{source['Key']}", source.get("VersionId")
    else:
        path, _, query = source.lstrip("/").partition("?versionId=")
        arn, version = f"arn:aws:s3:::{path}", query or None
    return Check("s3:GetObjectVersion" if version else "s3:GetObject", arn)


def _read(params: dict) -> list[Check]:
    return [Check("s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject", _object(params))]


def _write(params: dict) -> list[Check]:
    checks = [Check("s3:PutObject", _object(params))]
    if params.get("IfMatch"):
        checks.append(Check("s3:GetObject", _object(params)))
    if params.get("Tagging"):
        checks.append(Check("s3:PutObjectTagging", _object(params)))
    if params.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or params.get("SSEKMSKeyId"):
        checks.append(Check("kms:GenerateDataKey", params.get("SSEKMSKeyId") or "*"))
    return checks


def _copy(params: dict) -> list[Check]:
    return [*_write(params), _copy_source(params)]


def _delete(params: dict) -> list[Check]:
    checks = [Check("s3:DeleteObjectVersion" if params.get("VersionId") else "s3:DeleteObject", _object(params))]
    if params.get("IfMatch"):
        checks.append(Check("s3:GetObject", _object(params)))
    return checks


def delete_objects_checks(params: dict, item: dict) -> list[Check]:
    """The checks for one key of a DeleteObjects request: S3 authorizes every key on its own and reports a denied
    key in the answer's Errors, deleting the others."""
    arn = _object(params, item["Key"])
    checks = [Check("s3:DeleteObjectVersion" if item.get("VersionId") else "s3:DeleteObject", arn)]
    if item.get("ETag"):
        checks.append(Check("s3:GetObject", arn))
    return checks


def _list(params: dict) -> list[Check]:
    return [Check("s3:ListBucket", _bucket(params), {"s3:prefix": params.get("Prefix", "")})]


S3_RULES: dict[str, Rule] = {
    "GetObject": Rule(_read, f"{ACTIONS_PAGE}; {MISSING_KEY}"),
    "HeadObject": Rule(_read, f"{ACTIONS_PAGE}; {MISSING_KEY}"),
    "PutObject": Rule(_write, f"{ACTIONS_PAGE}; {CONDITIONAL_WRITES}; {SSE_KMS}"),
    "CopyObject": Rule(_copy, f"{COPY_SOURCE}; {CONDITIONAL_WRITES}; {SSE_KMS}"),
    "CreateMultipartUpload": Rule(_write, f"{MULTIPART}; {SSE_KMS}"),
    "UploadPart": Rule(lambda p: [Check("s3:PutObject", _object(p))], MULTIPART),
    "UploadPartCopy": Rule(lambda p: [Check("s3:PutObject", _object(p)), _copy_source(p)], f"{MULTIPART}; {COPY_SOURCE}"),
    "CompleteMultipartUpload": Rule(_write, f"{MULTIPART}; {CONDITIONAL_WRITES}"),
    "AbortMultipartUpload": Rule(lambda p: [Check("s3:AbortMultipartUpload", _object(p))], MULTIPART),
    "ListParts": Rule(lambda p: [Check("s3:ListMultipartUploadParts", _object(p))], MULTIPART),
    "DeleteObject": Rule(_delete, f"{ACTIONS_PAGE}; {CONDITIONAL_DELETES}"),
    # Per key, see delete_objects_checks; the request as a whole needs nothing more.
    "DeleteObjects": Rule(lambda p: [], f"{ACTIONS_PAGE}; {CONDITIONAL_DELETES}"),
    "ListObjectsV2": Rule(_list, f"{ACTIONS_PAGE}; {LIST_PREFIX}"),
    "ListObjects": Rule(_list, f"{ACTIONS_PAGE}; {LIST_PREFIX}"),
}

# EventBridge, the one call the functions make there (the 'mirror changed' event).
PUT_EVENTS = (
    "Service Authorization Reference, Amazon EventBridge: events:PutEvents on the resource type event-bus "
    "(arn:aws:events:<region>:<account>:event-bus/<name>; no EventBusName: the default bus), authorized per entry, "
    "with the condition keys events:source and events:detail-type"
)
PUT_EVENTS_SIZE = (
    "Amazon EventBridge User Guide, 'Calculating Amazon EventBridge PutEvents event entry size': Time 14 bytes if "
    "given, Source, DetailType, Detail and each Resources entry their UTF-8 bytes; the total must be under 256 KB; "
    "EventBridge API Reference, PutEvents: at most 10 entries"
)
MAX_PUT_EVENTS_BYTES = 256 * 1024
MAX_PUT_EVENTS_ENTRIES = 10


def _put_events(params: dict, region: str, account: str) -> list[Check]:
    checks = []
    for entry in params.get("Entries", []):
        bus = entry.get("EventBusName") or "default"
        arn = bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}"
        checks.append(Check("events:PutEvents", arn,
                            {"events:source": entry.get("Source", ""), "events:detail-type": entry.get("DetailType", "")}))
    return checks


def put_events_entry_size(entry: dict) -> int:
    """PUT_EVENTS_SIZE's calculation for one entry."""
    size = 14 if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len((entry.get(name) or "").encode())
    return size + sum(len(r.encode()) for r in entry.get("Resources") or [])


# EventBridge operation -> the checks IAM makes, given (params, region, account); an operation missing here is refused.
EVENTS_RULES: dict[str, Rule] = {
    "PutEvents": Rule(_put_events, f"{PUT_EVENTS}; {PUT_EVENTS_SIZE}"),
}


# Glue Data Catalog, the calls the catalog step makes (catalog tables over the mirror).
GLUE_ANCESTORS = (
    "Athena User Guide, 'Configure access to databases and tables in the AWS Glue Data Catalog': for any non-delete "
    "action on a table, permission on the table, its database and the catalog; on a database, on it and the catalog; "
    "AWS Glue Developer Guide, 'Specifying AWS Glue resource ARNs' (catalog, database/<db>, table/<db>/<table>)"
)


GLUE_DELETES = (
    "Athena User Guide, 'Configure access to databases and tables in the AWS Glue Data Catalog': a delete action needs "
    "permission on the resource, its ancestors and its descendants; a table has no descendants, so deleting one needs "
    "the action on the table, its database and the catalog. The Data Catalog's resources are catalog, database, table "
    "and function: an Athena view is a table there (TableType VIRTUAL_VIEW), and DeleteTable drops it too"
)


def glue_arns(region: str, account: str, database: str, table: str | None = None) -> list[str]:
    """The Data Catalog resources a call on `table` (or, without one, on `database`) is authorized on."""
    base = f"arn:aws:glue:{region}:{account}"
    arns = [f"{base}:catalog", f"{base}:database/{database}"]
    return arns + [f"{base}:table/{database}/{table}"] if table is not None else arns


def _glue_on_table(action: str, table_name: Callable[[dict], str]) -> Callable[[dict, str, str], list[Check]]:
    def checks(params: dict, region: str, account: str) -> list[Check]:
        arns = glue_arns(region, params.get("CatalogId") or account, params["DatabaseName"], table_name(params))
        return [Check(action, arn) for arn in arns]

    return checks


def _glue_on_database(action: str) -> Callable[[dict, str, str], list[Check]]:
    def checks(params: dict, region: str, account: str) -> list[Check]:
        return [Check(action, arn) for arn in glue_arns(region, params.get("CatalogId") or account, params["Name"])]

    return checks


GLUE_RULES: dict[str, Rule] = {
    "GetDatabase": Rule(_glue_on_database("glue:GetDatabase"), GLUE_ANCESTORS),
    "GetTable": Rule(_glue_on_table("glue:GetTable", lambda p: p["Name"]), GLUE_ANCESTORS),
    # GetTables reads every table of the database: authorized on table/<db>/*.
    "GetTables": Rule(_glue_on_table("glue:GetTables", lambda p: "*"), GLUE_ANCESTORS),
    "CreateTable": Rule(_glue_on_table("glue:CreateTable", lambda p: p["TableInput"]["Name"]), GLUE_ANCESTORS),
    "UpdateTable": Rule(_glue_on_table("glue:UpdateTable", lambda p: p["TableInput"]["Name"]), GLUE_ANCESTORS),
    "DeleteTable": Rule(_glue_on_table("glue:DeleteTable", lambda p: p["Name"]), f"{GLUE_DELETES}; {GLUE_ANCESTORS}"),
}

# Athena: the catalog step's DDL queries (the views) and the named queries, all in the stack's workgroup.
ATHENA_WORKGROUP = (
    "Service Authorization Reference, Amazon Athena: StartQueryExecution, GetQueryExecution, GetQueryResults, "
    "CreateNamedQuery, UpdateNamedQuery, DeleteNamedQuery, ListNamedQueries and GetNamedQuery act on the resource "
    "type workgroup "
    "(arn:aws:athena:<region>:<account>:workgroup/<name>; a call without WorkGroup uses 'primary')"
)
NAMED_QUERY_DATABASE = (
    "Athena API Reference, UpdateNamedQuery: its request has NamedQueryId, Name, Description and QueryString, no "
    "Database; a named query moves to another database by DeleteNamedQuery (NamedQueryId only) and CreateNamedQuery"
)
ATHENA_CALLER_RIGHTS = (
    "Athena User Guide, 'Identity and access management in Athena': a query runs with the caller's permissions on "
    "the Glue Data Catalog objects it reads or changes and on the S3 locations of its data and its results"
)
# The rights on a workgroup's query result location, for every query: the set the AWS-published policies grant
# there. AWS Managed Policy Reference, AmazonAthenaFullAccess
# (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonAthenaFullAccess.html), statement
# BaseQueryResultsPermissions: s3:GetBucketLocation, s3:GetObject, s3:ListBucket, s3:ListBucketMultipartUploads,
# s3:ListMultipartUploadParts, s3:AbortMultipartUpload, s3:CreateBucket and s3:PutObject on the result buckets; AWS
# Knowledge Center, "How do I resolve the 'Unable to verify/create output bucket' error in Amazon Athena?"
# (https://repost.aws/knowledge-center/athena-output-bucket-error): the same actions on arn:aws:s3:::<bucket> and
# arn:aws:s3:::<bucket>/*, "remove the s3:CreateBucket permission" for an existing bucket. So: the bucket-level
# actions on the bucket ARN, the object-level ones on the objects under the result location. With less, Athena can
# fail a query with "Unable to verify/create output bucket", which names no missing right.
QUERY_RESULTS = (
    "AWS Managed Policy Reference, AmazonAthenaFullAccess, Sid BaseQueryResultsPermissions; AWS Knowledge Center, "
    "'athena-output-bucket-error': the rights on the workgroup's query result location"
)
QUERY_RESULT_BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads")
QUERY_RESULT_OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload")
GET_QUERY_RESULTS = (
    "Athena API Reference, GetQueryResults: the caller also needs s3:GetObject on the query's result location"
)
GLUE_DELETES = (
    "Athena User Guide, 'Configure access to databases and tables in the AWS Glue Data Catalog': for delete actions "
    "in Athena (DROP), the policy must include the Glue action (glue:DeleteTable) on the table, its database and the "
    "catalog"
)
# What Athena reads of a table's data with the caller's rights: its LOCATION listed, each symlink manifest read, each
# manifest target's folder listed and the target read. AWS documents the rights on the data's S3 locations
# (ATHENA_CALLER_RIGHTS), not the requests; these are the requests of Trino's Hive connector (Athena engine version
# 3), BackgroundHiveSplitLoader: listStatus of the symlink folder, each manifest opened, the targets' parent folder
# listed when they share one.
TABLE_DATA_READS = "Trino's Hive connector, BackgroundHiveSplitLoader (symlink tables); Athena User Guide as ATHENA_CALLER_RIGHTS"


def query_result_checks(location: str, key: str) -> list[Check]:
    """QUERY_RESULTS for a query whose result file is s3://<bucket>/<key> under location (s3://<bucket>/<prefix>)."""
    bucket = location.removeprefix("s3://").partition("/")[0]
    return ([Check(action, f"arn:aws:s3:::{bucket}") for action in QUERY_RESULT_BUCKET_ACTIONS]
            + [Check(action, f"arn:aws:s3:::{bucket}/{key}") for action in QUERY_RESULT_OBJECT_ACTIONS])


def athena_workgroup_arn(region: str, account: str, workgroup: str | None) -> str:
    return f"arn:aws:athena:{region}:{account}:workgroup/{workgroup or 'primary'}"


def _on_workgroup(action: str) -> Callable[[dict, str, str], list[Check]]:
    def checks(params: dict, region: str, account: str) -> list[Check]:
        return [Check(action, athena_workgroup_arn(region, account, params.get("WorkGroup")))]

    return checks


ATHENA_RULES: dict[str, Rule] = {
    # What the query does with the caller's rights (the Glue objects it reads or changes, the S3 data it reads, its
    # result location) is checked by the engine as Athena would (local_runner/service_clients.py query_caller_checks),
    # since only the query text and the catalog tell it. Calls that name
    # a query or a named query by id are authorized on its workgroup, which the engine looks up as "WorkGroup".
    "StartQueryExecution": Rule(_on_workgroup("athena:StartQueryExecution"), f"{ATHENA_WORKGROUP}; {ATHENA_CALLER_RIGHTS}"),
    "GetQueryExecution": Rule(_on_workgroup("athena:GetQueryExecution"), ATHENA_WORKGROUP),
    # ... and s3:GetObject on the result file, which the engine adds (local_runner/service_clients.py).
    "GetQueryResults": Rule(_on_workgroup("athena:GetQueryResults"), f"{ATHENA_WORKGROUP}; {GET_QUERY_RESULTS}"),
    "ListNamedQueries": Rule(_on_workgroup("athena:ListNamedQueries"), ATHENA_WORKGROUP),
    "GetNamedQuery": Rule(_on_workgroup("athena:GetNamedQuery"), ATHENA_WORKGROUP),
    "CreateNamedQuery": Rule(_on_workgroup("athena:CreateNamedQuery"), ATHENA_WORKGROUP),
    "UpdateNamedQuery": Rule(_on_workgroup("athena:UpdateNamedQuery"), ATHENA_WORKGROUP),
    # Names only the NamedQueryId: authorized on that named query's workgroup, which the engine must look up as it
    # does for GetNamedQuery (local_runner/service_clients.py _workgroup_of); moto 5.2.5 has no DeleteNamedQuery.
    "DeleteNamedQuery": Rule(_on_workgroup("athena:DeleteNamedQuery"), f"{ATHENA_WORKGROUP}; {NAMED_QUERY_DATABASE}"),
}

# Service -> its operations' rules, for the services whose clients the engine checks besides S3's.
SERVICE_RULES: dict[str, dict[str, Rule]] = {"events": EVENTS_RULES, "glue": GLUE_RULES, "athena": ATHENA_RULES}


def service_checks(service: str, operation: str, params: dict, region: str, account: str) -> list[Check]:
    """The checks IAM makes for a call to EventBridge, Glue or Athena. An operation missing from its table is
    refused, so a new call cannot slip past the model."""
    rule = SERVICE_RULES[service].get(operation)
    if rule is None:
        raise UnknownOperation(
            f"{service} {operation} has no IAM rule in local_runner/iam.py; add one (with the AWS documentation it "
            "comes from) and grant it in template.yaml"
        )
    return rule.checks(params, region, account)


def events_checks(operation: str, params: dict, region: str, account: str) -> list[Check]:
    return service_checks("events", operation, params, region, account)


# What Lambda's SQS event source mapping does with the function's execution role (Lambda Developer Guide, 'Using
# Lambda with Amazon SQS', execution role permissions).
SQS_EVENT_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


class UnknownOperation(LookupError):
    """An S3 operation that S3_RULES does not model: add its rule (with its source) before calling it."""


def s3_checks(operation: str, params: dict) -> list[Check]:
    rule = S3_RULES.get(operation)
    if rule is None:
        raise UnknownOperation(
            f"S3 {operation} has no IAM rule in local_runner/iam.py S3_RULES; add one (with the AWS documentation it "
            "comes from) and grant it in template.yaml"
        )
    return rule.checks(params)


def can_tell_missing_keys(statements: Iterable[dict], bucket: str) -> bool:
    """Whether S3 answers 404 (not 403) to this role for a key that does not exist (MISSING_KEY). Strictly: only an
    s3:ListBucket without conditions counts (the documentation names no condition key for this check)."""
    return allows(statements, Check("s3:ListBucket", f"arn:aws:s3:::{bucket}"))


# -- policy evaluation -----------------------------------------------------------------------------------------------
# IAM's evaluation logic for one identity policy set (IAM User Guide, 'Policy evaluation logic'): an explicit Deny
# wins, else an Allow that matches action, resource and conditions, else an implicit deny.

_CONDITION_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda value, pattern: value == pattern,
    "StringLike": lambda value, pattern: fnmatch.fnmatchcase(value, pattern),
}


def allows(statements: Iterable[dict], check: Check) -> bool:
    allowed = False
    for statement in statements:
        if not _matches(statement, check):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _matches(statement: dict, check: Check) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise ValueError(f"the local IAM model does not evaluate {unsupported}: {statement}")
    if not any(fnmatch.fnmatchcase(check.action.lower(), a.lower()) for a in _as_list(statement.get("Action", []))):
        return False
    if not any(fnmatch.fnmatchcase(check.resource, r) for r in _as_list(statement.get("Resource", []))):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        test = _CONDITION_OPERATORS.get(operator)
        if test is None:
            raise ValueError(f"the local IAM model does not evaluate the condition operator {operator}: {statement}")
        for key, patterns in keys.items():
            value = check.context.get(key)
            # A condition on a key the request does not carry does not match (no ...IfExists operators here).
            if value is None or not any(test(value, p) for p in _as_list(patterns)):
                return False
    return True


def role_statements(template: dict, renderer: Any) -> dict[str, list[dict]]:
    """Role logical id -> every statement of its inline policies, intrinsics evaluated (template: transformed)."""
    found: dict[str, list[dict]] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        statements = found.setdefault(logical_id, [])
        for policy in renderer.render(resource["Properties"].get("Policies", [])):
            statements.extend(_as_list(policy["PolicyDocument"]["Statement"]))
    return found


def function_roles(template: dict) -> dict[str, str]:
    """Function logical id (as in template.yaml) -> logical id of its execution role, in the transformed template."""
    roles = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            role = resource["Properties"]["Role"]
            roles[logical_id] = role["Fn::GetAtt"][0] if isinstance(role["Fn::GetAtt"], list) else role["Fn::GetAtt"].split(".")[0]
    return roles
