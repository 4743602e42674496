"""`make integration STACK=<name>`: the integration tests against a deployed stack, or one line saying why not."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    stack = argv[0].strip() if argv else ""
    if not stack:
        print("integration: skipped: no stack given (make integration STACK=<your deployed stack name>)")
        return 0
    import boto3

    if boto3.Session().get_credentials() is None:
        print(f"integration: skipped: no AWS credentials found for stack {stack!r} (set AWS_PROFILE or the AWS_* variables)")
        return 0
    import pytest

    os.environ["INTEGRATION_STACK"] = stack
    here = os.path.dirname(os.path.abspath(__file__))
    return pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", here])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
