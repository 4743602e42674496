"""The deployer's two IAM policies for one stack: `python -m deploy.deployer_policies <stack name> [<CatalogDatabase>]`.

deploy/deployer-policy.json and deploy/deployer-policy-sql.json are written for the defaults: a stack named
`bls-mirror` (samconfig.toml) whose CatalogDatabase is `bls_mirror` (template.yaml). Every resource they scope is
named after one of the two (`bls-mirror-*` for the stack's resources, `database/bls_mirror` and its tables and
functions for the Glue catalog), so another stack's policies are the same documents with those two names replaced:
that is all `render` does, and what the README's "Deploy as a restricted user" runs.

IAM limits a customer managed policy to 6,144 characters, white space not counted (IAM User Guide, "IAM and AWS STS
quotas"). A longer stack name lengthens the first document at each of its mentions of the stack: when it would be
over the limit, its last statements move to the second document, which has room (the deployer attaches both, so where a
statement is does not change what is allowed). A name that cannot fit in either is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from deploy.preflight import problems as stack_name_problems
from local_runner.template_model import load_template

HERE = Path(__file__).resolve().parent
POLICY_FILES = (HERE / "deployer-policy.json", HERE / "deployer-policy-sql.json")
DEFAULT_STACK = "bls-mirror"
DEFAULT_DATABASE = "bls_mirror"
MAX_POLICY_CHARACTERS = 6144  # IAM User Guide, "IAM and AWS STS quotas": customer managed policy size
_DEFAULT_NAMES = re.compile(f"{re.escape(DEFAULT_STACK)}|{re.escape(DEFAULT_DATABASE)}")


class PolicyError(ValueError):
    """A stack or database name the deployer policies cannot be rendered for."""


def policy_size(document: dict) -> int:
    """The characters IAM counts: the document without white space outside its strings."""
    return len(json.dumps(document, separators=(",", ":")))


def default_documents() -> list[dict]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in POLICY_FILES]


def render(stack: str = DEFAULT_STACK, database: str = DEFAULT_DATABASE) -> list[dict]:
    """The two policy documents for a stack named `stack` whose CatalogDatabase is `database`."""
    found = name_problems(stack, database)
    if found:
        raise PolicyError("; ".join(found))
    names = {DEFAULT_STACK: stack, DEFAULT_DATABASE: database}
    first, second = (_replace(document, names) for document in default_documents())
    while policy_size(first) > MAX_POLICY_CHARACTERS and len(first["Statement"]) > 1:
        second["Statement"].insert(0, first["Statement"].pop())
    for document in (first, second):
        if policy_size(document) > MAX_POLICY_CHARACTERS:
            raise PolicyError(f"the deployer policies for stack {stack!r} and database {database!r} are over IAM's "
                              f"{MAX_POLICY_CHARACTERS}-character limit for a managed policy: use shorter names")
    return [first, second]


def name_problems(stack: str, database: str) -> list[str]:
    found = stack_name_problems(stack)
    if stack != stack.lower():
        # S3 bucket names are made from the stack name, lowercased: the policy's arn:aws:s3:::<stack>-* must match.
        found.append(f"stack name {stack!r} must be lowercase (the stack's bucket names are made from it)")
    parameter = load_template()["Parameters"]["CatalogDatabase"]
    if not re.fullmatch(parameter["AllowedPattern"], database):
        found.append(f"CatalogDatabase {database!r}: {parameter['ConstraintDescription']}")
    return found


def _replace(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _DEFAULT_NAMES.sub(lambda match: names[match.group(0)], value)
    if isinstance(value, list):
        return [_replace(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, names) for k, v in value.items()}
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.deployer_policies", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="the stack name you deploy with (sam deploy --stack-name)")
    parser.add_argument("database", nargs="?", default=DEFAULT_DATABASE,
                        help=f"the stack's CatalogDatabase parameter (default {DEFAULT_DATABASE})")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder to write the two files to (default: .)")
    args = parser.parse_args(argv)
    try:
        documents = render(args.stack, args.database)
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path, document in zip(POLICY_FILES, documents):
        target = args.out / f"{args.stack}-{path.name}"
        target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"{target} ({policy_size(document)} of {MAX_POLICY_CHARACTERS} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
