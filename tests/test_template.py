"""Static checks of template.yaml, the ASL behind each state machine's DefinitionUri, and samconfig.toml.

cfn-lint and `sam validate --lint` check the template, but neither opens the ASL file: the tests below check it
(placeholders, JSON, transitions, reachability, the Lambda functions it invokes) against the template.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent

from local_runner.template_model import load_template  # noqa: E402

TEMPLATE_FILE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
TEMPLATE = load_template(TEMPLATE_FILE)
RESOURCES: dict[str, dict] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict] = TEMPLATE.get("Parameters", {})
FUNCTION_GLOBALS: dict[str, Any] = TEMPLATE.get("Globals", {}).get("Function", {})

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
TERMINAL_TYPES = {"Succeed", "Fail", "Choice"}
DUMMY_ACCOUNT = "123456789012"


def _of_type(resource_type: str) -> dict[str, dict]:
    return {lid: r for lid, r in RESOURCES.items() if r.get("Type") == resource_type}


FUNCTIONS = _of_type("AWS::Serverless::Function")
STATE_MACHINES = {
    lid: r.get("Properties", {})
    for lid, r in _of_type("AWS::Serverless::StateMachine").items()
    if isinstance(r.get("Properties", {}).get("DefinitionUri"), str)
}


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    tool = BIN / args[0]
    assert tool.exists(), f"{tool} not found: install requirements-dev.txt into the venv that runs pytest"
    environment = {**os.environ, **env}
    environment.pop("AWS_PROFILE", None)  # both tools work offline; a missing profile must not break them
    return subprocess.run(
        [str(tool), *args[1:]], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


# --- the template itself --------------------------------------------------------------------------------------


@pytest.mark.tools
def test_cfn_lint_passes_including_its_informational_checks() -> None:
    result = _run(["cfn-lint", "--include-checks", "I", "--", "template.yaml"])
    assert result.returncode == 0, f"cfn-lint template.yaml failed:\n{result.stdout}\n{result.stderr}"


def _checkov() -> Path:
    """checkov pins an old boto3, so `make test` installs it into its own virtualenv (.venv-checkov)."""
    tool = Path(os.environ.get("CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
    if not tool.exists():
        pytest.skip(f"checkov is not installed at {tool}: `make test` installs it (requirements-checkov.txt)")
    return tool


@pytest.mark.tools
def test_checkov_fails_no_check_and_every_skipped_check_says_why() -> None:
    result = subprocess.run(
        [str(_checkov()), "--file", "template.yaml", "--framework", "cloudformation", "--skip-download",
         "--output", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr}"
    report = json.loads(result.stdout)
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report.get("results", {}).get("failed_checks", [])]
    assert not failed and report["summary"]["parsing_errors"] == 0, "checkov failed checks:\n" + "\n".join(failed)
    assert report["summary"]["passed"] > 0 and report["results"]["skipped_checks"]
    unexplained = [
        f"{c['check_id']} {c['resource']}" for c in report["results"].get("skipped_checks", [])
        if len((c.get("check_result", {}).get("suppress_comment") or "").strip()) < 20
    ]
    assert not unexplained, f"skipped without a reason in template.yaml: {unexplained}"


@pytest.mark.tools
def test_sam_validate_lint_passes() -> None:
    result = _run(
        ["sam", "validate", "--lint", "--template-file", "template.yaml"],
        AWS_DEFAULT_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
    )
    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}\n{result.stderr}"


def test_template_has_a_state_machine_with_a_definition_file() -> None:
    assert STATE_MACHINES, "template.yaml has no AWS::Serverless::StateMachine with a DefinitionUri file"


# --- the ASL files -------------------------------------------------------------------------------------------


def _asl_path(props: dict) -> Path:
    return ROOT / props["DefinitionUri"]


def _asl_text(props: dict) -> str:
    path = _asl_path(props)
    assert path.is_file(), f"DefinitionUri {props['DefinitionUri']} does not exist"
    return path.read_text(encoding="utf-8")


def _substitutions(props: dict) -> dict[str, Any]:
    return props.get("DefinitionSubstitutions") or {}


# A String parameter whose AllowedPattern admits only digits (a whole number, see test_whole_number_parameters...).
_DIGITS_ONLY_PATTERN = re.compile(r"^\^[\d\[\]\-|(){},?]+\$$")


def _is_whole_number_parameter(spec: dict) -> bool:
    return spec.get("Type") == "String" and bool(_DIGITS_ONLY_PATTERN.match(spec.get("AllowedPattern", "")))


def _is_numeric(value: Any) -> bool:
    """A substitution whose value is a number: a literal, or !Ref to a Number or whole-number parameter."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, dict) and set(value) == {"Ref"}:
        spec = PARAMETERS.get(value["Ref"], {})
        return spec.get("Type") == "Number" or _is_whole_number_parameter(spec)
    return False


FRACTIONAL_PARAMETERS = {"SourceRequestsPerSecond", "PopulationRequestsPerSecond"}  # 0.5 request/s is a rate
WHOLE_NUMBER_BOUNDS = {
    "CopyConcurrency": (1, 40), "RangeStreams": (1, 8), "RetryIntervalSeconds": (1, 3600), "RetryMaxAttempts": (0, 20),
    "RetryMaxDelaySeconds": (1, 3600), "MaxPrunePercent": (1, 100), "NoncurrentVersionRetentionDays": (1, 3650),
    "QueryBytesScannedCutoff": (10_000_000, 10**18 - 1),  # Athena's minimum; a long's 18 digits at most
}


def test_no_parameter_is_a_number_that_would_accept_a_fraction() -> None:
    """A Type: Number parameter accepts 2.5, and the deploy then fails where an integer is needed (MaxConcurrency,
    retry settings, lifecycle days): whole numbers are Strings with a digits-only AllowedPattern."""
    numbers = {n for n, spec in PARAMETERS.items() if spec.get("Type") == "Number" and "AllowedValues" not in spec}
    assert numbers == FRACTIONAL_PARAMETERS, f"Number parameters that are not meant to be fractional: {numbers - FRACTIONAL_PARAMETERS}"
    assert {n for n, spec in PARAMETERS.items() if _is_whole_number_parameter(spec)} == set(WHOLE_NUMBER_BOUNDS)


@pytest.mark.parametrize("name", sorted(WHOLE_NUMBER_BOUNDS))
def test_whole_number_parameters_accept_exactly_their_range(name: str) -> None:
    low, high = WHOLE_NUMBER_BOUNDS[name]
    pattern = re.compile(PARAMETERS[name]["AllowedPattern"])
    accepted = [str(n) for n in range(0, 4000) if pattern.match(str(n))]
    assert accepted == [str(n) for n in range(low, min(high, 3999) + 1)]
    assert pattern.match(str(low)) and pattern.match(str(high))
    assert not pattern.match(str(low - 1)) and not pattern.match(str(high + 1))
    assert pattern.match(str(PARAMETERS[name]["Default"]))
    for bad in ("2.5", "-1", "", " 4", "4 ", "04", "1e2", "0x10"):
        assert not pattern.match(bad), f"{name} accepts {bad!r}"


def _get_att_target(value: Any) -> tuple[str, str] | None:
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if isinstance(target, list) and len(target) == 2:
            return target[0], target[1]
    return None


def _dummy(name: str, value: Any) -> str:
    if _is_numeric(value):
        return "7"
    return f"arn:aws:lambda:us-east-1:{DUMMY_ACCOUNT}:function:dummy-{name}"


def _definition(props: dict) -> dict:
    subs = _substitutions(props)
    text = _asl_text(props)
    for name, value in subs.items():
        text = text.replace("${" + name + "}", _dummy(name, value))
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        pytest.fail(f"{props['DefinitionUri']} is not JSON after substitution ({error}): cannot check it further")


def _blocks(node: dict, where: str) -> Iterator[tuple[str, dict]]:
    """Every {StartAt, States} block: the top level, Map ItemProcessor/Iterator and Parallel branches."""
    yield where, node
    for name, state in (node.get("States") or {}).items():
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                yield from _blocks(state[key], f"{where}/{name}/{key}")
        for index, branch in enumerate(state.get("Branches") or []):
            yield from _blocks(branch, f"{where}/{name}/Branches[{index}]")


def _all_blocks(props: dict) -> list[tuple[str, dict]]:
    return list(_blocks(_definition(props), props["DefinitionUri"]))


def _all_states(props: dict) -> Iterator[tuple[str, str, dict]]:
    for where, block in _all_blocks(props):
        for name, state in (block.get("States") or {}).items():
            yield where, name, state


def _targets(state: dict) -> list[tuple[str, str]]:
    """(field, target) of every transition out of a state."""
    found = []
    if "Next" in state:
        found.append(("Next", state["Next"]))
    if "Default" in state:
        found.append(("Default", state["Default"]))
    for index, rule in enumerate(state.get("Choices") or []):
        found.append((f"Choices[{index}].Next", rule.get("Next")))
    for index, catcher in enumerate(state.get("Catch") or []):
        found.append((f"Catch[{index}].Next", catcher.get("Next")))
    return found


sm_params = pytest.mark.parametrize("props", list(STATE_MACHINES.values()), ids=list(STATE_MACHINES))


@sm_params
def test_every_placeholder_is_a_definition_substitution(props: dict) -> None:
    used = set(PLACEHOLDER.findall(_asl_text(props)))
    missing = sorted(used - set(_substitutions(props)))
    assert not missing, (
        f"{props['DefinitionUri']} uses placeholder(s) {', '.join('${' + m + '}' for m in missing)} "
        "that are not keys of DefinitionSubstitutions in template.yaml"
    )


@sm_params
def test_every_definition_substitution_is_used(props: dict) -> None:
    used = set(PLACEHOLDER.findall(_asl_text(props)))
    unused = sorted(set(_substitutions(props)) - used)
    assert not unused, f"DefinitionSubstitutions {', '.join(unused)} never appear in {props['DefinitionUri']}"


def _placeholder_occurrences(text: str) -> Iterator[tuple[str, bool, int]]:
    """(name, inside a JSON string?, line number) of every ${...} in the raw ASL text."""
    in_string = escaped = False
    line = 1
    for index, char in enumerate(text):
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        if char == "$" and text.startswith("${", index):
            match = PLACEHOLDER.match(text, index)
            if match:
                yield match.group(1), in_string, line


@sm_params
def test_numeric_placeholders_are_unquoted_and_others_quoted(props: dict) -> None:
    subs = _substitutions(props)
    problems = []
    for name, quoted, line in _placeholder_occurrences(_asl_text(props)):
        if name not in subs:
            continue  # reported by test_every_placeholder_is_a_definition_substitution
        if _is_numeric(subs[name]) and quoted:
            problems.append(f"line {line}: ${{{name}}} is a Number but quoted (Step Functions would get a string)")
        if not _is_numeric(subs[name]) and not quoted:
            problems.append(f"line {line}: ${{{name}}} is not a Number but unquoted (the result is not JSON)")
    assert not problems, f"{props['DefinitionUri']}: " + "; ".join(problems)


@sm_params
def test_definition_is_json_after_substitution(props: dict) -> None:
    subs = _substitutions(props)
    text = _asl_text(props)
    for name, value in subs.items():
        text = text.replace("${" + name + "}", _dummy(name, value))
    try:
        definition = json.loads(text)
    except json.JSONDecodeError as error:
        line = text.splitlines()[error.lineno - 1] if error.lineno <= len(text.splitlines()) else ""
        pytest.fail(f"{props['DefinitionUri']} is not JSON after substitution: {error}\n  line: {line.strip()}")
    assert isinstance(definition, dict) and "States" in definition, f"{props['DefinitionUri']} has no States"


@sm_params
def test_start_at_exists(props: dict) -> None:
    problems = [
        f"{where}: StartAt {block.get('StartAt')!r} is not a state"
        for where, block in _all_blocks(props)
        if block.get("StartAt") not in (block.get("States") or {})
    ]
    assert not problems, "; ".join(problems)


@sm_params
def test_every_transition_target_exists(props: dict) -> None:
    problems = []
    for where, block in _all_blocks(props):
        states = block.get("States") or {}
        for name, state in states.items():
            for field, target in _targets(state):
                if target not in states:
                    problems.append(f"{where}/{name}: {field} {target!r} is not a state in the same States block")
    assert not problems, "; ".join(problems)


@sm_params
def test_non_terminal_states_have_next(props: dict) -> None:
    problems = []
    for where, name, state in _all_states(props):
        kind = state.get("Type")
        if kind == "Choice":
            if not state.get("Choices"):
                problems.append(f"{where}/{name}: Choice state without Choices")
            if "Next" in state or "End" in state:
                problems.append(f"{where}/{name}: a Choice state may not have Next or End")
            continue
        if kind in TERMINAL_TYPES:
            if "Next" in state:
                problems.append(f"{where}/{name}: a {kind} state may not have Next")
            continue
        if state.get("End") is True and "Next" in state:
            problems.append(f"{where}/{name}: has both End and Next")
        elif state.get("End") is not True and "Next" not in state:
            problems.append(f"{where}/{name}: {kind} state has neither Next nor End: true")
    assert not problems, "; ".join(problems)


@sm_params
def test_no_unreachable_states(props: dict) -> None:
    problems = []
    for where, block in _all_blocks(props):
        states = block.get("States") or {}
        seen, todo = set(), [block.get("StartAt")]
        while todo:
            name = todo.pop()
            if name in seen or name not in states:
                continue
            seen.add(name)
            todo.extend(target for _, target in _targets(states[name]))
        problems += [f"{where}/{name}: unreachable from StartAt" for name in states if name not in seen]
    assert not problems, "; ".join(problems)


def _task_resource_placeholders(props: dict) -> set[str]:
    """Substitutions used as a whole Task Resource ("Resource": "${X}"): each must be a Lambda function ARN."""
    subs = _substitutions(props)

    def numbers_only(match: re.Match) -> str:  # string placeholders stay as written: "${X}"
        return "0" if _is_numeric(subs.get(match.group(1))) else match.group(0)

    try:
        raw = json.loads(PLACEHOLDER.sub(numbers_only, _asl_text(props)))
    except json.JSONDecodeError as error:
        pytest.fail(f"{props['DefinitionUri']} is not JSON after substitution ({error}): cannot check it further")
    names = set()
    for _, block in _blocks(raw, ""):
        for state in (block.get("States") or {}).values():
            match = PLACEHOLDER.fullmatch(str(state.get("Resource", ""))) if state.get("Type") == "Task" else None
            if match:
                names.add(match.group(1))
    return names


def _function_substitutions(props: dict) -> dict[str, Any]:
    """Substitutions that name a Lambda function: keys ending in FunctionArn, and any used as a Task Resource."""
    subs = _substitutions(props)
    names = {name for name in subs if name.endswith("FunctionArn")} | _task_resource_placeholders(props)
    return {name: subs.get(name) for name in sorted(names)}


@sm_params
def test_function_arn_substitutions_are_functions_of_the_template(props: dict) -> None:
    problems = []
    for name, value in _function_substitutions(props).items():
        target = _get_att_target(value)
        if target is None or target[1] != "Arn":
            problems.append(f"{name}: expected !GetAtt <Function>.Arn, found {value!r}")
        elif target[0] not in FUNCTIONS:
            problems.append(f"{name}: !GetAtt {target[0]}.Arn is not an AWS::Serverless::Function of template.yaml")
    assert not problems, "; ".join(problems)


@sm_params
def test_state_machine_may_invoke_its_functions(props: dict) -> None:
    allowed = set()
    for policy in props.get("Policies") or []:
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy:
            ref = policy["LambdaInvokePolicy"].get("FunctionName")
            if isinstance(ref, dict) and "Ref" in ref:
                allowed.add(ref["Ref"])
    missing = []
    for name, value in _function_substitutions(props).items():
        target = _get_att_target(value)
        if target and target[0] in FUNCTIONS and target[0] not in allowed:
            missing.append(f"{name} ({target[0]})")
    assert not missing, f"the state machine has no LambdaInvokePolicy for {', '.join(missing)}"


# --- the functions -------------------------------------------------------------------------------------------


def _code_dir(props: dict) -> Path:
    code_uri = props.get("CodeUri", FUNCTION_GLOBALS.get("CodeUri"))
    assert isinstance(code_uri, str), f"CodeUri {code_uri!r} is not a local folder"
    return ROOT / code_uri


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_handler_is_importable_and_callable(logical_id: str) -> None:
    props = FUNCTIONS[logical_id].get("Properties", {})
    handler = props.get("Handler", FUNCTION_GLOBALS.get("Handler"))
    assert handler and "." in handler, f"{logical_id}: Handler {handler!r} is not <module>.<function>"
    code_dir = _code_dir(props)
    assert code_dir.is_dir(), f"{logical_id}: CodeUri folder {code_dir} does not exist"
    module_name, function_name = handler.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        pytest.fail(f"{logical_id}: Handler {handler}: cannot import {module_name} from {code_dir}: {error}")
    assert Path(module.__file__).resolve().is_relative_to(code_dir.resolve()), (
        f"{logical_id}: {module_name} was imported from {module.__file__}, not from its CodeUri {code_dir}")
    function = getattr(module, function_name, None)
    assert callable(function), f"{logical_id}: Handler {handler}: {module_name} has no callable {function_name!r}"


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_function_runtime_is_python313(logical_id: str) -> None:
    props = FUNCTIONS[logical_id].get("Properties", {})
    runtime = props.get("Runtime", FUNCTION_GLOBALS.get("Runtime"))
    assert runtime == "python3.13", f"{logical_id}: Runtime {runtime!r} (python3.11 is deprecated on Lambda)"


# --- samconfig.toml ------------------------------------------------------------------------------------------


def test_samconfig_defaults() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    assert str(config.get("version")) == "0.1", "samconfig.toml: version must be 0.1"
    default = config.get("default", {})
    assert default.get("global", {}).get("parameters", {}).get("stack_name"), "samconfig.toml: no stack_name"
    deploy = default.get("deploy", {}).get("parameters", {})
    assert "CAPABILITY_IAM" in str(deploy.get("capabilities")), "samconfig.toml: deploy needs CAPABILITY_IAM"


def test_contact_email_is_asked_for_not_defaulted() -> None:
    """`sam deploy --guided` must ask each user for their own e-mail: no default, none stored in samconfig."""
    assert "Default" not in PARAMETERS.get("ContactEmail", {}), "template.yaml: ContactEmail must have no Default"
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    for env_name, commands in config.items():
        if not isinstance(commands, dict):
            continue
        for command, section in commands.items():
            overrides = str((section or {}).get("parameters", {}).get("parameter_overrides", ""))
            assert "ContactEmail" not in overrides and "@" not in overrides, (
                f"samconfig.toml [{env_name}.{command}.parameters] stores a ContactEmail; let --guided ask for it"
            )


def test_the_functions_environment_is_what_the_settings_loader_reads_and_parameter_defaults_are_the_settings():
    """One source for each default: a template parameter's Default, as its variable reaches the loader, gives the
    Settings field's own default; and every variable the template sets is one the loader reads."""
    from bls_pipeline.config import ENVIRONMENT, Settings, load_settings

    variables = FUNCTION_GLOBALS["Environment"]["Variables"]
    assert set(variables) - {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"} <= set(ENVIRONMENT)
    compared = []
    for variable, value in variables.items():
        default = PARAMETERS.get(value.get("Ref"), {}).get("Default") if isinstance(value, dict) else None
        if variable not in ENVIRONMENT or default is None:
            continue
        field = ENVIRONMENT[variable][0]
        loaded = load_settings({"MIRROR_BUCKET": "b", "CONTACT_EMAIL": "ops@example.com", variable: str(default)})
        assert getattr(loaded, field) == getattr(Settings(), field), f"{value['Ref']} Default {default!r}"
        compared.append(variable)
    assert {"SOURCE_TREE_URL", "SURVEYS", "MIRROR_ROOT", "POPULATION_URL", "MAX_PRUNE_PERCENT", "RANGE_STREAMS"} <= set(compared)


# --- the ASL's error names are the code's exceptions ------------------------------------------------------------

PACKAGE_DIR = ROOT / "functions" / "bls_pipeline"
BUILT_IN_ERROR = re.compile(r"^(States|Lambda|Sandbox)\.")  # Step Functions', the Lambda service's and runtime's
EXTERNAL_EXCEPTIONS = {"ClientError": "botocore.exceptions"}  # an AWS call's error, raised by boto3 itself
OWN_VERDICTS = {"CopyFailed"}  # a Fail state's error that names the state machine's own conclusion, not an exception


def _error_names(state: dict) -> Iterator[str]:
    for field in ("Retry", "Catch"):
        for rule in state.get(field) or []:
            yield from rule.get("ErrorEquals") or []
    if state.get("Type") == "Fail" and "Error" in state:
        yield state["Error"]


def _exception_classes_and_raises() -> tuple[set[str], set[str]]:
    """Exception classes defined in bls_pipeline (by their bases, transitively), and names raised as `raise Name(...)`
    or `raise Name` anywhere in it."""
    import ast
    import builtins

    bases: dict[str, set[str]] = {}
    raised: set[str] = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(target, ast.Name):
                    raised.add(target.id)

    def is_exception(name: str, seen: frozenset = frozenset()) -> bool:
        if name not in bases:  # a class from outside the package: a built-in exception?
            return isinstance(getattr(builtins, name, None), type) and issubclass(getattr(builtins, name), BaseException)
        return any(is_exception(base, seen | {name}) for base in bases[name] - seen)

    return {name for name in bases if is_exception(name)}, raised


@sm_params
def test_every_error_the_definition_names_is_an_exception_the_code_defines_and_raises(props: dict) -> None:
    """A Retry, Catch or Fail that names a custom error matches only while a class of that name exists and is raised:
    renaming the class would otherwise silently turn a retry or a catch off."""
    classes, raised = _exception_classes_and_raises()
    states = [state for _, _, state in _all_states(props)]
    named = {name for state in states for name in _error_names(state) if not BUILT_IN_ERROR.match(name)}
    for name, module in EXTERNAL_EXCEPTIONS.items():
        assert issubclass(getattr(importlib.import_module(module), name), Exception), f"{module}.{name}"
    caught = {name for state in states for name in _error_names({**state, "Type": None})}
    assert not OWN_VERDICTS & caught, "a Retry or Catch names an error that only a Fail state gives"
    named -= set(EXTERNAL_EXCEPTIONS) | OWN_VERDICTS
    assert len(named) >= 5, f"the definition names only {sorted(named)}: the check below would prove little"
    assert sorted(named - classes) == [], "named in the ASL but not an exception class in functions/bls_pipeline"
    assert sorted(named - raised) == [], "an exception class the ASL names, but nothing raises it"


def test_the_sam_transform_is_cached_on_disk_under_a_key_of_everything_it_depends_on(tmp_path, monkeypatch) -> None:
    from local_runner import cloudformation

    monkeypatch.setenv("BLS_MIRROR_CACHE_DIR", str(tmp_path))
    cloudformation._transformed.cache_clear()
    first = cloudformation.transformed({"CopyConcurrency": "3"})
    [cached] = tmp_path.glob("sam-transform-*.json")
    cloudformation._transformed.cache_clear()
    assert cloudformation.transformed({"CopyConcurrency": "3"}) == first  # read back from disk

    cached.write_text("{not json")
    cloudformation._transformed.cache_clear()
    assert cloudformation.transformed({"CopyConcurrency": "3"}) == first  # a damaged entry is translated again
    cloudformation._transformed.cache_clear()
    other = cloudformation.transformed({"CopyConcurrency": "5"})
    assert len(list(tmp_path.glob("sam-transform-*.json"))) == 2 and other["Resources"].keys() == first["Resources"].keys()
    cloudformation._transformed.cache_clear()
