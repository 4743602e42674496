"""template.yaml as CloudFormation sees it: transformed by the SAM translator, with intrinsics evaluated.

The local engine renders each function's IAM role from here (local_runner/iam.py enforces it at call time); the
template tests read the same rendering.

`sam deploy` uploads the code and the ASL file and replaces CodeUri/DefinitionUri with S3 URIs before the
transform; `transformed()` does the same with placeholder URIs, offline. `Renderer` evaluates the intrinsic
functions IAM policies use (Ref, GetAtt, Sub, Select, Split, Join, If) for one set of parameter values.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from unittest import mock

from .iam import function_roles, role_statements
from .template_model import load_template, name_of

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "bls-mirror"
BUCKET = "bls-mirror-mirrorbucket-1a2b3c"


class _NoManagedPolicies:
    """The translator asks this for managed policy ARNs by name; the template names none."""

    def load(self) -> dict[str, str]:
        return {}


@lru_cache(maxsize=None)
def _transformed(parameter_items: tuple[tuple[str, str], ...], document_json: str) -> dict:
    """The translator's output, kept on disk between processes (it costs a third of a second with its import),
    under a key made of everything it depends on: the translator's version, the parameters and the template."""
    from importlib.metadata import version

    key = hashlib.sha256(json.dumps([version("aws-sam-translator"), parameter_items, document_json]).encode())
    cached = _cache_dir() / f"sam-transform-{key.hexdigest()}.json"
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    result = _translate(parameter_items, document_json)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(result), encoding="utf-8")
        os.replace(partial, cached)
    except OSError:
        pass  # no cache: the next start translates again
    return result


def _cache_dir() -> Path:
    """$BLS_MIRROR_CACHE_DIR, else $XDG_CACHE_HOME/bls-mirror, else ~/.cache/bls-mirror."""
    if os.environ.get("BLS_MIRROR_CACHE_DIR"):
        return Path(os.environ["BLS_MIRROR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bls-mirror"


def _translate(parameter_items: tuple[tuple[str, str], ...], document_json: str) -> dict:
    from samtranslator.translator.transform import transform

    # The translator times itself into a metrics object that nothing here publishes; when the garbage collector
    # drops one, it warns "There are unpublished metrics" on stderr (logging's last resort), in the middle of the
    # runner's output. The engine has no use for those metrics.
    logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)

    template = json.loads(document_json)
    template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://artifacts/functions.zip"
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = "s3://artifacts/pipeline.asl.json"
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"].pop("CodeUri", None)
    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": REGION}):
        return transform(template, dict(parameter_items), _NoManagedPolicies())


def transformed(parameters: dict[str, str] | None = None, document: dict | None = None) -> dict:
    """The CloudFormation template `sam deploy` would create from template.yaml (or `document`), as a fresh copy:
    callers may change it."""
    values = {"ContactEmail": "data-team@example.com", **(parameters or {})}
    source = json.dumps(document if document is not None else load_template(), sort_keys=True)
    return copy.deepcopy(_transformed(tuple(sorted(values.items())), source))


def rendered_roles(
    document: dict, parameters: dict[str, str], bucket: str, stack: str, region: str = REGION, account: str = ACCOUNT,
) -> dict[str, tuple[str, list[dict]]]:
    """Function (and state machine) logical id -> (role logical id, its policy statements), as `sam deploy` would
    create them from `document` with these parameters and names."""
    cfn = transformed(parameters, document)
    statements = role_statements(cfn, Renderer(cfn, parameters, bucket=bucket, stack=stack, region=region, account=account))
    roles = {function: (role, statements[role]) for function, role in function_roles(cfn).items()}
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::StepFunctions::StateMachine":
            role = resource["Properties"]["RoleArn"]["Fn::GetAtt"][0]
            roles[logical_id] = (role, statements[role])
    return roles


class Renderer:
    """Evaluates intrinsic functions for given parameter values, like CloudFormation at deploy time."""

    def __init__(
        self, template: dict, parameters: dict[str, str] | None = None, bucket: str = BUCKET, stack: str = STACK,
        region: str = REGION, account: str = ACCOUNT,
    ):
        defaults = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
        self.parameters = {**defaults, "ContactEmail": "data-team@example.com", **(parameters or {})}
        self.resources = template["Resources"]
        self.bucket = bucket
        self.stack, self.region, self.account = stack, region, account
        self.conditions = {name: self.render(expr) for name, expr in template.get("Conditions", {}).items()}

    def ref(self, name: str) -> str:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": "aws",
                  "AWS::StackName": self.stack, "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if self.resources.get(name, {}).get("Type") == "AWS::S3::Bucket":
            return self.bucket
        named = name_of(self.resources.get(name, {}))
        if named is not None:
            return self.render(named)
        if name in self.resources:
            return f"{self.stack}-{name}"
        raise KeyError(f"cannot resolve Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource_type = self.resources[logical_id]["Type"]
        if resource_type == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{self.bucket}"
        if resource_type == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{self.region}:{self.account}:{self.stack}-{logical_id}"
        service = resource_type.split("::")[1].lower()
        return f"arn:aws:{service}:{self.region}:{self.account}:{logical_id}.{attribute}"

    def render(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.render(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                return self.render(arg[1])[int(self.render(arg[0]))]
            if key == "Fn::Split":
                return self.render(arg[1]).split(arg[0])
            if key == "Fn::Join":
                return arg[0].join(self.render(arg[1]))
            if key == "Fn::If":
                return self.render(arg[1] if self.conditions[arg[0]] else arg[2])
            if key == "Fn::Equals":
                return self.render(arg[0]) == self.render(arg[1])
            if key == "Fn::Not":
                return not self.render(arg[0])
            if key == "Condition":
                return self.conditions[arg]
        return {k: v for k, v in ((k, self.render(v)) for k, v in value.items()) if v is not _NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self.render(v) for k, v in arg[1].items()})

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", one, text)


_NO_VALUE = object()
