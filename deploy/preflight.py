"""Refuse a stack name that would fail the deploy half-way: `python -m deploy.preflight <stack name>`.

Some resources are named after the stack (`!Sub "${AWS::StackName}-..."`) and AWS limits those names; a name that
is too long fails only when CloudFormation reaches that resource, after others were created. This reads every such
name in template.yaml and checks the stack name against its limit, and against CloudFormation's own rule for
stack names. `make deploy` runs it before `sam deploy --guided`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Iterator

from local_runner.template_model import load_template

# (resource type, where the name is) -> (longest name AWS accepts, where that limit is documented)
NAME_LIMITS = {
    ("AWS::Serverless::StateMachine", "Name"): (80, "Step Functions API Reference, CreateStateMachine: name"),
    ("AWS::Serverless::StateMachine", "Events.*.Name"): (64, "EventBridge Scheduler API Reference, CreateSchedule: Name"),
    ("AWS::Logs::LogGroup", "LogGroupName"): (512, "CloudWatch Logs API Reference, CreateLogGroup: logGroupName"),
}
# CloudFormation User Guide, "Stack name": starts with a letter, letters, digits and hyphens, at most 128.
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")


@dataclass(frozen=True)
class StackNamedResource:
    resource: str
    where: str
    template: str  # the !Sub text, with ${AWS::StackName} in it
    limit: int
    source: str

    @property
    def longest_stack_name(self) -> int:
        return self.limit - (len(self.template) - len("${AWS::StackName}"))


def stack_named_resources(document: dict | None = None) -> Iterator[StackNamedResource]:
    for logical_id, resource in (document or load_template())["Resources"].items():
        properties = resource.get("Properties", {})
        candidates = [("Name", properties.get("Name")), ("LogGroupName", properties.get("LogGroupName"))]
        candidates += [(f"Events.{name}.Name", event.get("Properties", {}).get("Name"))
                       for name, event in properties.get("Events", {}).items()]
        for where, value in candidates:
            text = value.get("Fn::Sub") if isinstance(value, dict) else None
            if not isinstance(text, str) or "${AWS::StackName}" not in text:
                continue
            key = (resource["Type"], "Events.*.Name" if where.startswith("Events.") else where)
            if key not in NAME_LIMITS:
                raise LookupError(f"{logical_id}.{where} is named after the stack but deploy/preflight.py knows no limit for it")
            limit, source = NAME_LIMITS[key]
            yield StackNamedResource(logical_id, where, text, limit, source)


def problems(stack_name: str, document: dict | None = None) -> list[str]:
    found = []
    if not STACK_NAME.match(stack_name):
        found.append(f"stack name {stack_name!r} must start with a letter and hold only letters, digits and hyphens "
                     "(at most 128 characters)")
    for named in stack_named_resources(document):
        if len(stack_name) > named.longest_stack_name:
            found.append(
                f"stack name {stack_name!r} has {len(stack_name)} characters; {named.resource}.{named.where} "
                f"({named.template!r}) would be longer than {named.limit} ({named.source}): use at most "
                f"{named.longest_stack_name} characters"
            )
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deploy.preflight <stack name>", file=sys.stderr)
        return 2
    found = problems(argv[0])
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    if not found:
        print(f"stack name {argv[0]!r}: ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
