"""Just enough of template.yaml for the local engine: functions, parameters, state machine substitutions, and the
template's values resolved with the names the local stack gives its resources."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
FUNCTIONS_DIR = PROJECT_ROOT / "functions"


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's, where PyYAML has it: 8x faster
    """Reads CloudFormation short-form tags (!Ref, !GetAtt, !Sub ...) as their long-form dicts."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str
    timeout: int
    environment: dict[str, Any]
    sqs_queues: tuple[str, ...] = ()  # logical ids of the queues this function consumes (SQS events)


class Template:
    def __init__(self, document: dict):
        self.document = document
        self.resources: dict[str, dict] = document["Resources"]

    @classmethod
    def load(cls, path: Path = TEMPLATE_PATH) -> "Template":
        return cls(load_template(path))

    def parameter_defaults(self) -> dict[str, str]:
        return {
            name: str(spec["Default"])
            for name, spec in self.document.get("Parameters", {}).items()
            if "Default" in spec
        }

    def functions(self) -> list[FunctionSpec]:
        globals_ = self.document.get("Globals", {}).get("Function", {})
        specs = []
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = resource.get("Properties", {})
            env = dict(globals_.get("Environment", {}).get("Variables", {}))
            env.update(props.get("Environment", {}).get("Variables", {}))
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    handler=props.get("Handler", globals_.get("Handler")),
                    timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
                    environment=env,
                    sqs_queues=self._queues_consumed_by(logical_id, props),
                )
            )
        return specs

    def _queues_consumed_by(self, function: str, props: dict) -> tuple[str, ...]:
        """Queues feeding the function: SAM SQS events, and AWS::Lambda::EventSourceMapping resources."""
        queues = [e["Properties"]["Queue"]["Fn::GetAtt"][0] for e in props.get("Events", {}).values() if e.get("Type") == "SQS"]
        for resource in self.resources.values():
            mapping = resource.get("Properties", {})
            if resource["Type"] == "AWS::Lambda::EventSourceMapping" and mapping.get("FunctionName") == {"Ref": function}:
                queues.append(mapping["EventSourceArn"]["Fn::GetAtt"][0])
        return tuple(queues)

    def state_machine(self) -> tuple[str, dict]:
        """(logical id, properties) of the one AWS::Serverless::StateMachine."""
        for logical_id, resource in self.resources.items():
            if resource["Type"] == "AWS::Serverless::StateMachine":
                return logical_id, resource["Properties"]
        raise LookupError("template.yaml has no AWS::Serverless::StateMachine")


def resolve(value: Any, ref: Callable[[str], str], get_att: Callable[[str, str], str]) -> Any:
    """Evaluate the intrinsics the local engine needs (Ref, GetAtt) in a template value."""
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return ref(arg)
        if key == "Fn::GetAtt":
            return get_att(arg[0], arg[1])
        if key == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: _sub_one(m.group(1), ref, get_att), arg)
    if isinstance(value, dict):
        return {k: resolve(v, ref, get_att) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ref, get_att) for v in value]
    return value


def _sub_one(name: str, ref: Callable[[str], str], get_att: Callable[[str, str], str]) -> str:
    if "." in name and not name.startswith("AWS::"):
        logical_id, attribute = name.split(".", 1)
        return str(get_att(logical_id, attribute))
    return str(ref(name))


def substitute_definition(text: str, substitutions: dict[str, str]) -> str:
    """What Step Functions' DefinitionSubstitutions do: replace each ${Name} with its value."""
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", str(value))
    return text


# Resource types whose Ref is the name given in their properties (CloudFormation Template Reference, each type's
# "Return values"): the property path to that name.
NAMED_BY_PROPERTY = {"AWS::Glue::Database": ("DatabaseInput", "Name"), "AWS::Athena::WorkGroup": ("Name",)}


def name_of(resource: dict) -> Any:
    """The (unrendered) name a resource's Ref returns, for the types in NAMED_BY_PROPERTY; None for the others."""
    path = NAMED_BY_PROPERTY.get(resource.get("Type", ""))
    if path is None:
        return None
    value: Any = resource.get("Properties", {})
    for step in path:
        value = value[step]
    return value


@dataclass
class StackResolver:
    """Ref, Fn::GetAtt and Fn::Sub in template values, answered with the names the local stack gave its resources
    (function ARNs and queue URLs are filled in as the engine creates them)."""

    template: Template
    parameters: dict[str, str]
    bucket: str
    region: str
    account: str
    stack_name: str = "local"
    function_arns: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)

    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.function_arns:
            return self.function_arns[name]
        if self._type(name) == "AWS::S3::Bucket":
            return self.bucket
        if name == "AWS::StackName":
            return self.stack_name
        if name in ("AWS::Region", "AWS::AccountId", "AWS::Partition"):
            return {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": "aws"}[name]
        if name in self.queue_urls:
            return self.queue_urls[name]
        named = name_of(self.template.resources.get(name, {}))
        if named is not None:
            return self.resolve(named)
        raise KeyError(f"the local engine cannot resolve Ref {name!r} (missing parameter?)")

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn" and self._type(logical_id) == "AWS::Serverless::Function":
            return self.function_arns[logical_id]
        if attribute == "Arn" and self._type(logical_id) == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.bucket}"
        if attribute == "Arn" and logical_id in self.queue_urls:
            return f"arn:aws:sqs:{self.region}:{self.account}:{self.queue_name(logical_id)}"
        raise KeyError(f"the local engine cannot resolve GetAtt {logical_id}.{attribute}")

    def resolve(self, value: Any) -> Any:
        return resolve(value, self.ref, self.get_att)

    def queue_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def _type(self, logical_id: str) -> str | None:
        return self.template.resources.get(logical_id, {}).get("Type")

    def handler_environment(self) -> dict[str, str]:
        """Every function's environment in one: the functions share this process's."""
        merged: dict[str, str] = {}
        for spec in self.template.functions():
            for name, value in self.resolve(spec.environment).items():
                if name in merged and merged[name] != str(value):
                    raise ValueError(f"functions disagree on {name}: the local engine shares one environment")
                merged[name] = str(value)
        return merged

    def state_machine_definition(self) -> str:
        """The ASL file with its DefinitionSubstitutions done, as Step Functions receives it."""
        _, props = self.template.state_machine()
        substitutions = self.resolve(props.get("DefinitionSubstitutions", {}))
        text = (PROJECT_ROOT / props["DefinitionUri"]).read_text(encoding="utf-8")
        definition = substitute_definition(text, substitutions)
        json.loads(definition)  # fail here, clearly, if a substitution left the JSON broken
        return definition
