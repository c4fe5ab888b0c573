#!/usr/bin/env python3
"""`make infra-check`: the deployment templates checked offline, against themselves and
against the code.

No terraform binary can be installed here, so the Terraform stack is parsed with
python-hcl2 and every reference between resources, data sources, variables, locals and
outputs is resolved by hand; an unused variable is an error too (a setting that does
nothing). Both stacks are then compared with the code's contract, read from the sources:

  - environment variables: only names in squash_lambda::config::ENV_VARS, and the ones a
    deployment needs (DEPLOYED) on every function;
  - routes: exactly squash_lambda::operation::ROUTES, none of them unauthenticated;
  - binaries: the [[bin]] names of functions/*/Cargo.toml, built for arm64 on
    provided.al2023 with handler bootstrap;
  - worker names: SQUASH_WORKER_FUNCTION with {i} = 0..W-1 is each worker's name.

The SAM template's worker slots must be Worker0..WorkerN-1, each WorkerN created under
condition HasWorkerN, with WorkerCount allowing exactly 0..N.

Both stacks must also deploy with W = 0 and W = 8 ("on paper"): the SAM template's
conditions are evaluated for every combination of WorkerCount (0, 8), Endpoints and
Authorization, and every Ref, GetAtt and ${X} of a resource that exists must name one that
exists too, and every IAM statement must have a Resource; in Terraform a policy statement
whose resources come from worker_count may only sit in a document counted by worker_count
(IAM rejects an empty Resource as MalformedPolicyDocument), and a counted resource is never
read without an index. And: function names fit Lambda's 64 characters at the longest name
prefix allowed; the worker invoke timeout is shorter than the function timeout for every
timeout allowed; the coordinator's default memory holds a 1M x 128 index; the coordinator
has an AWS_IAM function URL, and neither stack offers an unauthenticated endpoint.

`--self-test` breaks copies of the templates in known ways and fails unless the check
catches each one. `--tools DIR` also runs cfn-lint, `sam validate --lint` and checkov
(zero failed checks) from the virtual environments under DIR, on the real templates and
on a broken copy that must fail.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import hcl2
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOYED = ["SQUASH_INDEX_ROOT", "SQUASH_WORKERS", "SQUASH_BRANCHING", "SQUASH_DEPTH", "SQUASH_WORKER_FUNCTION"]
# Lambda's limit on a function name.
MAX_FUNCTION_NAME = 64
# Bytes of a 1M x 128 index with five attributes (synth-1m: 630 MiB), with headroom: the
# coordinator's default memory must give a segment cache at least this large.
INDEX_1M_128_BYTES = 700 << 20


def cache_budget(memory_mb: int) -> int:
    """squash_lambda::config::cache_budget: 60 % of the memory less 64 MiB."""
    return max(memory_mb * (1 << 20) // 10 * 6 - (64 << 20), 32 << 20)


def check_memory(where: str, name: str, memory_mb, problems: Problems) -> None:
    try:
        mb = int(float(str(memory_mb)))
    except ValueError:
        problems.add(where, f"{name} has no numeric default")
        return
    if cache_budget(mb) < INDEX_1M_128_BYTES:
        problems.add(where, f"{name} defaults to {mb} MB: its cache ({cache_budget(mb) >> 20} MiB) cannot hold a 1M x 128 index ({INDEX_1M_128_BYTES >> 20} MiB) when the coordinator searches alone")


class Problems(list):
    def add(self, where: str, what: str) -> None:
        self.append(f"{where}: {what}")


# ---------------------------------------------------------------------------------------
# The code's side of the contract, read from the Rust sources.


def rust_strings(path: Path, const: str) -> list[str]:
    text = path.read_text()
    m = re.search(rf"pub const {const}: &\[&str\] = &\[(.*?)\];", text, re.S)
    if not m:
        raise SystemExit(f"{path}: no `pub const {const}: &[&str]` found")
    return re.findall(r'"([^"]*)"', m.group(1))


def contract(root: Path) -> dict:
    bins = {}
    for manifest in sorted((root / "functions").glob("*/Cargo.toml")):
        for b in tomllib.loads(manifest.read_text()).get("bin", []):
            bins[b["name"]] = manifest.parent
    return {
        "env": set(rust_strings(root / "functions/squash-lambda/src/config.rs", "ENV_VARS")),
        "routes": set(rust_strings(root / "functions/squash-lambda/src/operation.rs", "ROUTES")),
        "bins": bins,
    }


# ---------------------------------------------------------------------------------------
# Terraform


def unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == '"' else s


def strings(node) -> list[str]:
    """Every string (expressions included) in a parsed HCL tree, comments excluded."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() if k != "__comments__" for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def blocks(parsed: dict, kind: str):
    """(type, name, body) of every `resource`/`data` block."""
    for entry in parsed.get(kind, []):
        for rtype, named in entry.items():
            for name, body in named.items():
                yield unquote(rtype), unquote(name), body


def load_terraform(tf_dir: Path, problems: Problems) -> dict:
    files = sorted(tf_dir.glob("*.tf"))
    if not files:
        problems.add(str(tf_dir), "no .tf files")
    parsed = {}
    for f in files:
        try:
            parsed[f.name] = hcl2.load(f.open())
        except Exception as e:  # the parser's errors have no common base class
            problems.add(f.name, f"does not parse: {str(e).splitlines()[0][:200]}")
    return parsed


def check_terraform(tf_dir: Path, code: dict, problems: Problems) -> None:
    parsed = load_terraform(tf_dir, problems)
    if problems:
        return
    resources, data, variables, locals_, where = {}, {}, {}, {}, {}
    for fname, p in parsed.items():
        for rtype, name, body in blocks(p, "resource"):
            resources[f"{rtype}.{name}"] = body
            where[f"{rtype}.{name}"] = fname
        for rtype, name, body in blocks(p, "data"):
            data[f"data.{rtype}.{name}"] = body
        for entry in p.get("variable", []):
            for name, body in entry.items():
                variables[unquote(name)] = body
        for entry in p.get("locals", []):
            for name, value in entry.items():
                if not name.startswith("__"):
                    if name in locals_:
                        problems.add(fname, f"local.{name} is defined twice")
                    locals_[name] = value

    # Every reference resolves; every variable and local is used.
    used_vars, used_locals = set(), set()
    for fname, p in parsed.items():
        for s in strings(p):
            for name in re.findall(r"\bvar\.([A-Za-z_][\w-]*)", s):
                used_vars.add(name)
                if name not in variables:
                    problems.add(fname, f"var.{name} is not declared")
            for name in re.findall(r"\blocal\.([A-Za-z_]\w*)", s):
                used_locals.add(name)
                if name not in locals_:
                    problems.add(fname, f"local.{name} is not defined")
            for rtype, name in re.findall(r"\bdata\.([a-z]\w*)\.([A-Za-z_][\w-]*)", s):
                if f"data.{rtype}.{name}" not in data:
                    problems.add(fname, f"data.{rtype}.{name} is not declared")
            for rtype, name in re.findall(r"(?<![\w.])(aws_\w+)\.([A-Za-z_][\w-]*)", s):
                if f"{rtype}.{name}" not in resources:
                    problems.add(fname, f"{rtype}.{name} is not declared")
    for name in sorted(set(variables) - used_vars):
        problems.add("variables.tf", f"variable {name} is declared but never used")
    for name in sorted(set(locals_) - used_locals):
        problems.add("locals", f"local.{name} is defined but never used")

    # Authorization is on by default and cannot be switched off.
    auth = variables.get("authorization", {})
    if unquote(str(auth.get("default", ""))) not in ("AWS_IAM", "JWT"):
        problems.add("variables.tf", "authorization must default to AWS_IAM or JWT")
    if '"NONE"' in json.dumps(auth):
        problems.add("variables.tf", "authorization must not offer NONE")

    # Routes.
    routes = locals_.get("routes")
    tf_routes = {unquote(r) for r in routes} if isinstance(routes, list) else set()
    if tf_routes != code["routes"]:
        problems.add("api.tf", f"local.routes {sorted(tf_routes)} != the coordinator's ROUTES {sorted(code['routes'])}")
    for key, body in resources.items():
        if key.startswith("aws_apigatewayv2_route."):
            if "local.routes" not in str(body.get("for_each", "")) and unquote(str(body.get("route_key", ""))) not in code["routes"]:
                problems.add(where[key], f"{key} routes {body.get('route_key')}, which the coordinator does not serve")
            if str(body.get("authorization_type")) != "${var.authorization}":
                problems.add(where[key], f"{key} must use var.authorization")

    # Functions: binaries, runtime, environment, names.
    functions = {k: v for k, v in resources.items() if k.startswith("aws_lambda_function.")}
    if set(functions) != {"aws_lambda_function.coordinator", "aws_lambda_function.worker"}:
        problems.add("lambda.tf", f"expected the coordinator and worker functions, found {sorted(functions)}")

    def env_keys(value) -> set[str]:
        """Keys of an environment map, following local.X and merge(local.X, {...})."""
        if isinstance(value, dict):
            return {k for k in value if not k.startswith("__")}
        keys = set(re.findall(r"\b(SQUASH_\w+)\s*=", str(value)))
        for name in re.findall(r"\blocal\.(\w+)", str(value)):
            keys |= env_keys(locals_.get(name, {}))
        return keys

    for key, body in functions.items():
        fname = where[key]
        binary = "squash-coordinator" if key.endswith(".coordinator") else "squash-worker"
        if binary not in code["bins"]:
            problems.add(fname, f"{key} deploys {binary}, which no functions/*/Cargo.toml builds")
        zip_local = re.findall(r"\blocal\.(\w+_zip)\b", str(body.get("filename", "")))
        zip_expr = str(locals_.get(zip_local[0], "")) if zip_local else ""
        if f"target/lambda/{binary}/bootstrap.zip" not in zip_expr:
            problems.add(fname, f"{key} must deploy target/lambda/{binary}/bootstrap.zip (make build-lambda)")
        for attr, want in [("runtime", "provided.al2023"), ("handler", "bootstrap")]:
            if unquote(str(body.get(attr, ""))) != want:
                problems.add(fname, f"{key}.{attr} must be {want}")
        if [unquote(a) for a in body.get("architectures", [])] != ["arm64"]:
            problems.add(fname, f"{key}.architectures must be [\"arm64\"]")
        envs = body.get("environment", [{}])
        env = envs[0].get("variables", {}) if envs else {}
        keys = env_keys(env)
        for k in sorted(keys - code["env"]):
            problems.add(fname, f"{key} sets {k}, which no function reads (squash_lambda::config::ENV_VARS)")
        for k in DEPLOYED:
            if k not in keys:
                problems.add(fname, f"{key} does not set {k}")
    pattern = unquote(str(locals_.get("worker_pattern", "")))
    if "{i}" not in pattern:
        problems.add("lambda.tf", "local.worker_pattern must contain {i}")
    if str(locals_.get("function_env", {}).get("SQUASH_WORKER_FUNCTION")) != "${local.worker_pattern}":
        problems.add("lambda.tf", "SQUASH_WORKER_FUNCTION must be local.worker_pattern")
    if 'replace(local.worker_pattern, "{i}"' not in str(locals_.get("worker_names", "")):
        problems.add("lambda.tf", "local.worker_names must be local.worker_pattern with {i} = 0..W-1")
    worker = functions.get("aws_lambda_function.worker", {})
    if str(worker.get("function_name")) != "${local.worker_names[count.index]}":
        problems.add("lambda.tf", "the worker functions must be named local.worker_names[count.index]")
    check_terraform_w0(parsed, resources, data, locals_, where, problems)
    check_terraform_limits(variables, locals_, resources, problems)
    check_terraform_writes(variables, data, problems)


def is_write(action: str) -> bool:
    """An IAM action that changes objects (or could: wildcards)."""
    a = unquote(str(action)).lower()
    return a in ("*", "s3:*") or any(a.startswith(p) for p in ("s3:put", "s3:delete", "s3:abort", "s3:restore", "s3:replicate"))


def check_terraform_writes(variables: dict, data: dict, problems: Problems) -> None:
    """Read-only unless var.writes: writes default off; an object-writing statement is
    only ever a dynamic block on var.writes, only in the coordinator's policy."""
    if variables.get("writes", {}).get("default") is not False:
        problems.add("variables.tf", "writes must default to false (a read-only deployment)")
    for key, body in data.items():
        if not key.startswith("data.aws_iam_policy_document."):
            continue
        allows = [st for st in body.get("statement", []) if unquote(str(st.get("effect", "Allow"))) == "Allow"]
        for st in allows:
            if any(is_write(a) for a in st.get("actions", [])):
                problems.add("iam.tf", f"{key}: statement {unquote(str(st.get('sid', '?')))} writes objects unconditionally; put it in a dynamic block on var.writes")
        for dyn in body.get("dynamic", []):
            for name, block in dyn.items():
                for content in block.get("content", []):
                    if not any(is_write(a) for a in content.get("actions", [])):
                        continue
                    sid = unquote(str(content.get("sid", "?")))
                    if not key.endswith(".coordinator"):
                        problems.add("iam.tf", f"{key}: statement {sid} writes objects; only the coordinator writes")
                    if "var.writes" not in str(block.get("for_each", "")):
                        problems.add("iam.tf", f"{key}: statement {sid} writes objects; its for_each must depend on var.writes")


def tf_default(variables: dict, name: str):
    v = variables.get(name, {}).get("default")
    return unquote(v) if isinstance(v, str) else v


def check_terraform_w0(parsed: dict, resources: dict, data: dict, locals_: dict, where: dict, problems: Problems) -> None:
    """With worker_count = 0: no IAM statement without resources, no counted resource read
    without an index."""
    blocks_ = {**resources, **data}
    counted = {k for k, b in blocks_.items() if "var.worker_count" in str(b.get("count", ""))}
    # Locals whose value grows with worker_count (transitively).
    by_workers = set()
    changed = True
    while changed:
        changed = False
        for name, value in locals_.items():
            s = str(value)
            if name not in by_workers and ("var.worker_count" in s or any(re.search(rf"\blocal\.{n}\b", s) for n in by_workers) or any(c in s for c in counted)):
                by_workers.add(name)
                changed = True
    for key, body in blocks_.items():
        if key in counted:
            continue
        fname = where.get(key, "data")
        for s in strings({k: v for k, v in body.items() if k != "count"}):
            for c in counted:
                bare = c[len("data."):] if c.startswith("data.") else c
                for m in re.finditer(rf"(?<![\w.]){re.escape(c if c.startswith('data.') else bare)}(\[\d+\]|\.\w+)", s):
                    if m.group(1) != ".*" and not m.group(1).startswith("[*"):
                        problems.add(fname, f"{key} reads {c}{m.group(1)}, which does not exist when worker_count = 0 (give {key} the same count)")
        if key.startswith("data.aws_iam_policy_document."):
            for st in body.get("statement", []):
                res = str(st.get("resources", ""))
                grows = [c for c in counted if (c[len('data.'):] if c.startswith('data.') else c) in res] + [
                    f"local.{n}" for n in by_workers if re.search(rf"\blocal\.{n}\b", res)
                ]
                if grows:
                    problems.add(fname, f"{key}: statement {st.get('sid', '?')} takes its resources from {grows[0]}, so with worker_count = 0 it has none (IAM: MalformedPolicyDocument); count the document by worker_count")


def tf_eval(expr: str, locals_: dict, values: dict, depth: int = 0):
    """Evaluates a small arithmetic Terraform expression (var.X, local.X, floor, min, max,
    tostring) for the given variable values."""
    if depth > 10:
        raise ValueError("locals nest too deep")
    e = expr.strip()
    if e.startswith("${") and e.endswith("}"):
        e = e[2:-1]
    e = re.sub(r"\blocal\.(\w+)", lambda m: f"({tf_eval(str(locals_[m.group(1)]), locals_, values, depth + 1)})", e)
    e = re.sub(r"\bvar\.(\w+)", lambda m: repr(values[m.group(1)]), e)
    import math
    return eval(e, {"__builtins__": {}}, {"floor": math.floor, "min": min, "max": max, "tostring": lambda x: x})


def check_terraform_limits(variables: dict, locals_: dict, resources: dict, problems: Problems) -> None:
    # Function names at the longest name allowed.
    cond = str(variables.get("name", {}).get("validation", [{}])[0].get("condition", ""))
    m = re.search(r"\{0,(\d+)\}", cond)
    longest = 1 + int(m.group(1)) if m else None
    if longest is None:
        problems.add("variables.tf", "var.name must be limited in length by its validation ({0,N})")
    else:
        for local in ("coordinator_name", "worker_pattern"):
            name = unquote(str(locals_.get(local, ""))).replace("${var.name}", "x" * longest).replace("{i}", "255")
            if len(name) > MAX_FUNCTION_NAME:
                problems.add("lambda.tf", f"local.{local} is {len(name)} characters at the longest var.name ({longest}); Lambda allows {MAX_FUNCTION_NAME}")
    # The invoke timeout is shorter than the function timeout, for every timeout allowed.
    env = locals_.get("function_env", {})
    expr = str(env.get("SQUASH_INVOKE_TIMEOUT_MS", ""))
    for timeout in (3, 10, 30, 900):
        try:
            ms = float(tf_eval(expr, locals_, {"timeout_s": timeout}))
        except Exception as e:  # noqa: BLE001 - any failure to evaluate is the finding
            problems.add("lambda.tf", f"SQUASH_INVOKE_TIMEOUT_MS = {expr!r} cannot be evaluated: {e}")
            break
        if ms >= timeout * 1000:
            problems.add("lambda.tf", f"the invoke timeout ({ms:.0f} ms at timeout_s = {timeout}) must be shorter than the worker's timeout, so a timed-out child can be retried")
            break
    check_memory("variables.tf", "coordinator_memory_mb", tf_default(variables, "coordinator_memory_mb"), problems)
    urls = {k: v for k, v in resources.items() if k.startswith("aws_lambda_function_url.")}
    if not urls:
        problems.add("api.tf", "no aws_lambda_function_url for the coordinator")
    for k, v in urls.items():
        if unquote(str(v.get("authorization_type", ""))) != "AWS_IAM":
            problems.add("api.tf", f"{k}: the function URL must use authorization_type AWS_IAM")
    if tf_default(variables, "endpoints") != "both":
        problems.add("variables.tf", "var.endpoints must default to both (HTTP API and function URL)")


# ---------------------------------------------------------------------------------------
# SAM


def plain(node):
    """cfn-lint's YAML nodes as plain dicts and lists."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def check_sam(path: Path, code: dict, problems: Problems) -> None:
    try:
        t = plain(cfn_yaml.load(str(path)))
    except Exception as e:  # the YAML loader's errors have no common base class
        problems.add(path.name, f"does not parse: {str(e).splitlines()[0][:200]}")
        return
    resources = t.get("Resources", {})
    globals_ = t.get("Globals", {}).get("Function", {})
    functions = {k: v for k, v in resources.items() if v.get("Type") == "AWS::Serverless::Function"}
    slots = []
    for name, f in functions.items():
        meta, props = f.get("Metadata", {}), {**globals_, **f.get("Properties", {})}
        binary = meta.get("BuildProperties", {}).get("Binary")
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.add(path.name, f"{name}: Metadata.BuildMethod must be rust-cargolambda")
        if binary not in code["bins"]:
            problems.add(path.name, f"{name} builds {binary!r}, which no functions/*/Cargo.toml defines")
        elif (path.parent / props.get("CodeUri", "")).resolve() != code["bins"][binary].resolve():
            problems.add(path.name, f"{name}: CodeUri must be the crate of {binary} ({code['bins'][binary].relative_to(ROOT)})")
        for attr, want in [("Runtime", "provided.al2023"), ("Handler", "bootstrap"), ("Architectures", ["arm64"])]:
            if props.get(attr) != want:
                problems.add(path.name, f"{name}.{attr} must be {want}")
        env = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **f.get("Properties", {}).get("Environment", {}).get("Variables", {}),
        }
        for k in sorted(set(env) - code["env"]):
            problems.add(path.name, f"{name} sets {k}, which no function reads (squash_lambda::config::ENV_VARS)")
        for k in DEPLOYED:
            if k not in env:
                problems.add(path.name, f"{name} does not set {k}")
        if binary == "squash-worker":
            m = re.fullmatch(r"Worker(\d+)", name)
            pattern = env.get("SQUASH_WORKER_FUNCTION", {}).get("Fn::Sub", "")
            fn_name = props.get("FunctionName", {}).get("Fn::Sub", "")
            if not m or "{i}" not in pattern or pattern.replace("{i}", m.group(1)) != fn_name:
                problems.add(path.name, f"{name}: FunctionName {fn_name!r} is not SQUASH_WORKER_FUNCTION {pattern!r} with its number")
                continue
            n = int(m.group(1))
            slots.append(n)
            want = f"HasWorker{n}"
            if f.get("Condition") != want:
                problems.add(path.name, f"{name} must have Condition {want} (exists when WorkerCount > {n})")
    for name, r in resources.items():
        m = re.fullmatch(r"WorkerLogGroup(\d+)", name)
        want = f"HasWorker{m.group(1)}" if m else None
        if m and r.get("Condition") != want:
            problems.add(path.name, f"{name} must have Condition {want}, as Worker{m.group(1)} does")
    for n in range(len(slots)):
        if f"HasWorker{n}" not in t.get("Conditions", {}):
            problems.add(path.name, f"condition HasWorker{n} is missing")
    allowed = [int(v) for v in t.get("Parameters", {}).get("WorkerCount", {}).get("AllowedValues", [])]
    if sorted(slots) != list(range(len(slots))) or not slots:
        problems.add(path.name, f"worker slots {sorted(slots)} must be Worker0..WorkerN-1")
    elif allowed != list(range(0, len(slots) + 1)):
        problems.add(path.name, f"WorkerCount allows {allowed}, the template has {len(slots)} worker slots")
    routes = {k: v for k, v in resources.items() if v.get("Type") == "AWS::ApiGatewayV2::Route"}
    keys = {r.get("Properties", {}).get("RouteKey") for r in routes.values()}
    if keys != code["routes"]:
        problems.add(path.name, f"routes {sorted(map(str, keys))} != the coordinator's ROUTES {sorted(code['routes'])}")
    for name, r in routes.items():
        if r.get("Properties", {}).get("AuthorizationType") != {"Ref": "Authorization"}:
            problems.add(path.name, f"{name}: AuthorizationType must be the Authorization parameter")
    allowed = t.get("Parameters", {}).get("Authorization", {}).get("AllowedValues", [])
    if "NONE" in allowed or not allowed:
        problems.add(path.name, "the Authorization parameter must allow only AWS_IAM and JWT")
    check_sam_limits(path, t, functions, globals_, problems)
    if params_default(t, "Writes") != "off":
        problems.add(path.name, "the Writes parameter must default to off (a read-only deployment)")
    for workers in (0, 8):
        for endpoints in t.get("Parameters", {}).get("Endpoints", {}).get("AllowedValues", ["both"]):
            for auth in ("AWS_IAM", "JWT"):
                for writes in ("off", "on"):
                    values = {"WorkerCount": str(workers), "Endpoints": endpoints, "Authorization": auth, "Writes": writes}
                    check_sam_deploys(path, t, values, problems)


def params_default(t: dict, name: str):
    return t.get("Parameters", {}).get(name, {}).get("Default")


def check_sam_limits(path: Path, t: dict, functions: dict, globals_: dict, problems: Problems) -> None:
    params = t.get("Parameters", {})
    # Function names at the longest Name allowed.
    m = re.search(r"\{0,(\d+)\}", str(params.get("Name", {}).get("AllowedPattern", "")))
    longest = 1 + int(m.group(1)) if m else None
    if longest is None:
        problems.add(path.name, "the Name parameter must be limited in length by its AllowedPattern ({0,N})")
    for fname, f in functions.items():
        sub = f.get("Properties", {}).get("FunctionName", {})
        sub = sub.get("Fn::Sub", "") if isinstance(sub, dict) else str(sub)
        if "AWS::StackName" in sub:
            problems.add(path.name, f"{fname}: FunctionName {sub!r} uses the stack name, which may exceed Lambda's {MAX_FUNCTION_NAME} characters; use the Name parameter")
        elif longest is not None and len(sub.replace("${Name}", "x" * longest)) > MAX_FUNCTION_NAME:
            problems.add(path.name, f"{fname}: FunctionName {sub!r} exceeds Lambda's {MAX_FUNCTION_NAME} characters at the longest Name ({longest})")
    # The invoke timeout is shorter than the function timeout, for every timeout allowed.
    env = globals_.get("Environment", {}).get("Variables", {})
    fim = env.get("SQUASH_INVOKE_TIMEOUT_MS", {})
    fim = fim.get("Fn::FindInMap") if isinstance(fim, dict) else None
    timeouts = params.get("TimeoutS", {}).get("AllowedValues")
    if not (isinstance(fim, list) and len(fim) == 3 and fim[1] == {"Ref": "TimeoutS"}) or not timeouts:
        problems.add(path.name, "SQUASH_INVOKE_TIMEOUT_MS must be !FindInMap [MAP, !Ref TimeoutS, KEY] over TimeoutS's AllowedValues (shorter than the worker's timeout)")
    else:
        table = t.get("Mappings", {}).get(fim[0], {})
        for timeout in timeouts:
            ms = table.get(str(timeout), {}).get(fim[2])
            if ms is None or int(ms) >= int(timeout) * 1000:
                problems.add(path.name, f"the invoke timeout at TimeoutS = {timeout} is {ms} ms: it must be shorter than the worker's timeout, so a timed-out child can be retried")
    check_memory(path.name, "CoordinatorMemoryMb", params.get("CoordinatorMemoryMb", {}).get("Default"), problems)
    urls = {k: v for k, v in t.get("Resources", {}).items() if v.get("Type") == "AWS::Lambda::Url"}
    if not urls:
        problems.add(path.name, "no AWS::Lambda::Url for the coordinator")
    for k, v in urls.items():
        if v.get("Properties", {}).get("AuthType") != "AWS_IAM":
            problems.add(path.name, f"{k}: the function URL must use AuthType AWS_IAM")
    if params.get("Endpoints", {}).get("Default") != "both":
        problems.add(path.name, "the Endpoints parameter must default to both (HTTP API and function URL)")


PSEUDO = {"AWS::AccountId", "AWS::Region", "AWS::Partition", "AWS::StackName", "AWS::StackId", "AWS::URLSuffix", "AWS::NoValue", "AWS::NotificationARNs"}


def check_sam_deploys(path: Path, t: dict, values: dict, problems: Problems) -> None:
    """The template with these parameter values: every reference of an existing resource
    resolves, every IAM statement has a Resource."""
    params = t.get("Parameters", {})
    conds = t.get("Conditions", {})
    memo: dict = {}

    def value(ref):
        return str(values.get(ref, params.get(ref, {}).get("Default", "")))

    def ev(node):
        if isinstance(node, dict) and len(node) == 1:
            (k, v), = node.items()
            if k == "Fn::Equals":
                return str(resolve(v[0])) == str(resolve(v[1]))
            if k == "Fn::Not":
                return not ev(v[0])
            if k == "Fn::And":
                return all(ev(x) for x in v)
            if k == "Fn::Or":
                return any(ev(x) for x in v)
            if k == "Condition":
                return cond(v)
        raise ValueError(f"cannot evaluate condition {node!r}")

    def resolve(node):
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return value(node["Ref"])
        return node

    def cond(name):
        if name not in memo:
            memo[name] = ev(conds[name])
        return memo[name]

    label = ", ".join(f"{k}={v}" for k, v in values.items())
    try:
        live = {k for k, r in t.get("Resources", {}).items() if "Condition" not in r or cond(r["Condition"])}
    except (KeyError, ValueError) as e:
        problems.add(path.name, f"conditions do not evaluate ({label}): {e}")
        return

    def prune(node):
        """The node with Fn::If resolved and AWS::NoValue dropped."""
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                c, yes, no = node["Fn::If"]
                return prune(yes if cond(c) else no)
            return {k: prune(v) for k, v in node.items() if prune(v) != {"Ref": "AWS::NoValue"}}
        if isinstance(node, list):
            return [prune(v) for v in node if prune(v) != {"Ref": "AWS::NoValue"}]
        return node

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "Ref":
                    yield v
                elif k == "Fn::GetAtt":
                    yield (v[0] if isinstance(v, list) else str(v).split(".")[0])
                elif k == "Fn::Sub":
                    text = v[0] if isinstance(v, list) else v
                    for name in re.findall(r"\$\{([^}!]+)\}", text):
                        yield name.split(".")[0]
                    if isinstance(v, list):
                        yield from refs(v[1])
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    def statements(node):
        if isinstance(node, dict):
            if "Effect" in node and "Action" in node and "Principal" not in node:
                yield node
            for v in node.values():
                yield from statements(v)
        elif isinstance(node, list):
            for v in node:
                yield from statements(v)

    sections = {f"Resources.{k}": t["Resources"][k] for k in live}
    sections.update({f"Outputs.{k}": o for k, o in t.get("Outputs", {}).items() if "Condition" not in o or cond(o["Condition"])})
    sections["Globals"] = t.get("Globals", {})
    for where, body in sections.items():
        body = prune(body)
        for name in set(refs(body)):
            if name not in live and name not in params and name not in PSEUDO:
                problems.add(path.name, f"{where} refers to {name}, which does not exist with {label}")
        for st in statements(body):
            if not st.get("Resource"):
                problems.add(path.name, f"{where}: statement {st.get('Sid', '?')} has no Resource with {label} (IAM: MalformedPolicyDocument)")
        # Read-only unless Writes=on, and then only the coordinator puts objects.
        if where.startswith("Resources.") and t["Resources"][where.split(".", 1)[1]].get("Type") == "AWS::IAM::Role":
            writes = [
                st for st in statements(body.get("Properties", {}).get("Policies", []))
                if st.get("Effect") == "Allow" and any(is_write(a) for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]]))
            ]
            role = where.split(".", 1)[1]
            if writes and (values.get("Writes") != "on" or role != "CoordinatorRole"):
                problems.add(path.name, f"{role} may write objects ({writes[0].get('Sid', '?')}) with {label}: only the coordinator, and only with Writes=on")
            if values.get("Writes") == "on" and role == "CoordinatorRole" and not writes:
                problems.add(path.name, f"CoordinatorRole cannot put objects with {label}: the write routes would fail")


def check_all(infra: Path, code: dict) -> Problems:
    problems = Problems()
    check_terraform(infra / "terraform", code, problems)
    check_sam(infra / "sam" / "template.yaml", code, problems)
    return problems


# ---------------------------------------------------------------------------------------
# Self-test: each breakage must be caught.

BREAKAGES = [
    ("terraform/lambda.tf", "var.worker_memory_mb", "var.worker_memory", "var.worker_memory is not declared"),
    ("terraform/lambda.tf", "SQUASH_WORKERS ", "SQUASH_WORKER_COUNT ", "sets SQUASH_WORKER_COUNT"),
    ("terraform/lambda.tf", "aws_iam_role.worker[0].arn", "aws_iam_role.workers[0].arn", "aws_iam_role.workers is not declared"),
    ("terraform/lambda.tf", "squash-worker/bootstrap.zip", "squash-wrker/bootstrap.zip", "target/lambda/squash-worker/bootstrap.zip"),
    ("terraform/api.tf", '"GET /v1/indexes/{index}"', '"GET /v1/index/{index}"', "local.routes"),
    ("terraform/api.tf", "authorization_type = var.authorization", 'authorization_type = "NONE"', "must use var.authorization"),
    ("terraform/variables.tf", 'default     = "AWS_IAM"', 'default     = "NONE"', "authorization must default"),
    ("terraform/s3.tf", "resource \"aws_s3_bucket_policy\" \"indexes\" {", "resource \"aws_s3_bucket_policy\" \"indexes\" {{", "does not parse"),
    ("terraform/variables.tf", 'variable "region" {', 'variable "region_unused" {\n  default = 1\n}\n\nvariable "region" {', "region_unused is declared but never used"),
    ("sam/template.yaml", "Binary: squash-worker", "Binary: squash-wrker", "builds 'squash-wrker'"),
    ("sam/template.yaml", 'RouteKey: "GET /v1/indexes/{index}"', 'RouteKey: "GET /v1/indexes"', "routes"),
    ("sam/template.yaml", "SQUASH_MANIFEST_TTL: !Ref ManifestTtlS", "SQUASH_MANIFEST_TTL_S: !Ref ManifestTtlS", "sets SQUASH_MANIFEST_TTL_S,"),
    ("sam/template.yaml", 'FunctionName: !Sub "${Name}-worker-2"', 'FunctionName: !Sub "${Name}-worker-3"', "is not SQUASH_WORKER_FUNCTION"),
    ("sam/template.yaml", "    Condition: HasWorker5\n", "", "must have Condition HasWorker5"),
    ("sam/template.yaml", "  Worker5:\n    Type: AWS::Serverless::Function\n    Condition: HasWorker5\n", "  Worker5:\n    Type: AWS::Serverless::Function\n", "Worker5 must have Condition HasWorker5"),
    ("sam/template.yaml", "AllowedValues: [0, 1, 2, 3, 4, 5, 6, 7, 8]", "AllowedValues: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "the template has 8 worker slots"),
    ("sam/template.yaml", "AllowedValues: [0, 1, 2, 3, 4, 5, 6, 7, 8]", "AllowedValues: [1, 2, 3, 4, 5, 6, 7, 8]", "WorkerCount allows [1,"),
    # W = 0: a worker without its condition reads the worker role, which W = 0 does not create.
    ("sam/template.yaml", "  Worker0:\n    Type: AWS::Serverless::Function\n    Condition: HasWorker0\n", "  Worker0:\n    Type: AWS::Serverless::Function\n", "refers to WorkerRole, which does not exist with WorkerCount=0"),
    ("sam/template.yaml", 'FunctionName: !Sub "${Name}-coordinator"', 'FunctionName: !Sub "${AWS::StackName}-coordinator"', "uses the stack name"),
    ("sam/template.yaml", 'AllowedPattern: "^[a-z][a-z0-9-]{0,39}$"', 'AllowedPattern: "^[a-z][a-z0-9-]{0,59}$"', "exceeds Lambda's 64 characters"),
    ("sam/template.yaml", '"30": {Ms: 9000}', '"30": {Ms: 30000}', "invoke timeout at TimeoutS = 30"),
    ("sam/template.yaml", "SQUASH_INVOKE_TIMEOUT_MS: !FindInMap [InvokeTimeouts, !Ref TimeoutS, Ms]", 'SQUASH_INVOKE_TIMEOUT_MS: !Sub "${TimeoutS}000"', "SQUASH_INVOKE_TIMEOUT_MS must be"),
    ("sam/template.yaml", "      AuthType: AWS_IAM", "      AuthType: NONE", "function URL must use AuthType AWS_IAM"),
    ("sam/template.yaml", "    Default: 2048\n    MinValue: 128\n    MaxValue: 10240\n    Description: Coordinator memory", "    Default: 1024\n    MinValue: 128\n    MaxValue: 10240\n    Description: Coordinator memory", "CoordinatorMemoryMb defaults to 1024"),
    ("terraform/iam.tf", 'data "aws_iam_policy_document" "worker" {\n  count = var.worker_count > 0 ? 1 : 0\n', 'data "aws_iam_policy_document" "worker" {\n', "with worker_count = 0 it has none"),
    ("terraform/iam.tf", 'resource "aws_iam_role_policy" "worker" {\n  count  = var.worker_count > 0 ? 1 : 0\n', 'resource "aws_iam_role_policy" "worker" {\n', "which does not exist when worker_count = 0"),
    # The JWT authorizer of an HTTP API that a function-URL-only stack does not create.
    ("sam/template.yaml", "    Condition: UseJwtOnHttpApi\n", "    Condition: UseJwt\n", "refers to HttpApi, which does not exist with WorkerCount=0, Endpoints=function-url, Authorization=JWT"),
    ("terraform/lambda.tf", "SQUASH_INVOKE_TIMEOUT_MS = tostring(local.invoke_timeout_ms)", "SQUASH_INVOKE_TIMEOUT_MS = tostring(var.timeout_s * 1000)", "must be shorter than the worker's timeout"),
    ("terraform/api.tf", 'authorization_type = "AWS_IAM"', 'authorization_type = "NONE"', "function URL must use authorization_type AWS_IAM"),
    ("terraform/variables.tf", "  default     = 2048\n}", "  default     = 1024\n}", "coordinator_memory_mb defaults to 1024"),
    ("terraform/variables.tf", 'regex("^[a-z][a-z0-9-]{0,39}$", var.name)', 'regex("^[a-z][a-z0-9-]{0,59}$", var.name)', "Lambda allows 64"),
    ("sam/template.yaml", "CodeUri: ../../functions/worker", "CodeUri: ../../functions/coordinator", "CodeUri must be the crate"),
    ("sam/template.yaml", "Runtime: provided.al2023", "Runtime: provided.al2", "Runtime must be provided.al2023"),
    # Read-only unless writes are turned on.
    ("terraform/iam.tf", 'for_each = var.writes ? ["on"] : []', 'for_each = ["on"]', "its for_each must depend on var.writes"),
    ("terraform/variables.tf", "read-only.\"\n  type        = bool\n  default     = false", "read-only.\"\n  type        = bool\n  default     = true", "writes must default to false"),
    ("terraform/iam.tf", '    sid       = "ListIndexPrefix"\n    actions   = ["s3:ListBucket"]', '    sid       = "ListIndexPrefix"\n    actions   = ["s3:ListBucket", "s3:PutObject"]', "writes objects unconditionally"),
    ("sam/template.yaml", '    Default: "off"\n    AllowedValues: ["off", "on"]', '    Default: "on"\n    AllowedValues: ["off", "on"]', "Writes parameter must default to off"),
    ("sam/template.yaml", "                - WritesOn\n                - Sid: WriteIndexes", "                - UseHttpApi\n                - Sid: WriteIndexes", "only the coordinator, and only with Writes=on"),
]


def break_copy(infra: Path, rel: str, old: str, new: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="squash-infra-"))
    # Keep the layout (infra/sam's CodeUri is relative to the repository).
    dst = tmp / "infra"
    shutil.copytree(infra, dst, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".aws-sam"))
    f = dst / rel
    text = f.read_text()
    if old not in text:
        raise SystemExit(f"self-test is stale: {old!r} is not in {rel}")
    f.write_text(text.replace(old, new, 1))
    (tmp / "functions").symlink_to(ROOT / "functions")
    return dst


def self_test(infra: Path, code: dict) -> int:
    failed = 0
    for rel, old, new, expect in BREAKAGES:
        broken = break_copy(infra, rel, old, new)
        problems = check_all(broken, code)
        shutil.rmtree(broken.parent)
        caught = any(expect in p for p in problems)
        print(f"  {'caught' if caught else 'MISSED'}: {rel}: {old!r} -> {new!r}" + (f" ({problems[0]})" if problems and caught else ""))
        failed += not caught
    return failed


# ---------------------------------------------------------------------------------------
# The linters.


def run(cmd: list[str], cwd: Path = ROOT) -> tuple[int, str]:
    env = {"SAM_CLI_TELEMETRY": "0", "BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return p.returncode, (p.stdout + p.stderr).strip()


def linters(tools: Path, infra: Path, expect_pass: bool) -> int:
    bin_ = tools / "infra-venv" / "bin"
    checkov = tools / "checkov-venv" / "bin" / "checkov"
    template = infra / "sam" / "template.yaml"
    checks = [
        ("cfn-lint", [str(bin_ / "cfn-lint"), str(template)]),
        ("sam validate --lint", [str(bin_ / "sam"), "validate", "--lint", "--region", "us-east-1", "-t", str(template)]),
        ("checkov terraform", [str(checkov), "-d", str(infra / "terraform"), "--framework", "terraform", "--compact", "--quiet", "--skip-download"]),
        ("checkov sam", [str(checkov), "-f", str(template), "--framework", "cloudformation", "--compact", "--quiet", "--skip-download"]),
    ]
    failed = 0
    for name, cmd in checks:
        rc, out = run(cmd)
        ok = rc == 0
        summary = [line for line in out.splitlines() if "checks:" in line or line.startswith(("E", "W")) or "valid" in line]
        verdict = "pass" if ok else ("FAIL" if expect_pass else "rejected, as it must be")
        print(f"  {name}: {verdict}: {' | '.join(summary[:4])[:240]}")
        if ok != expect_pass:
            failed += 1
            if expect_pass:
                print(out[-4000:])
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--infra", type=Path, default=ROOT / "infra")
    ap.add_argument("--self-test", action="store_true", help="break copies of the templates; each must be caught")
    ap.add_argument("--tools", type=Path, help="folder with infra-venv/ and checkov-venv/: also run the linters")
    args = ap.parse_args()
    code = contract(ROOT)
    print(f"contract: {len(code['env'])} env variables, routes {sorted(code['routes'])}, binaries {sorted(code['bins'])}")
    problems = check_all(args.infra, code)
    for p in problems:
        print(f"  {p}")
    print(f"references and drift: {'pass' if not problems else f'{len(problems)} problem(s)'}")
    failed = len(problems)
    if args.self_test:
        print("self-test: broken templates must be caught")
        failed += self_test(args.infra, code)
    if args.tools:
        print("linters on the templates (zero failed checks):")
        failed += linters(args.tools, args.infra, expect_pass=True)
        if args.self_test:
            print("linters on broken templates (each must fail):")
            # A reference to a resource that does not exist, which cfn-lint and sam must flag ...
            broken = break_copy(args.infra, "sam/template.yaml", "IntegrationUri: !GetAtt Coordinator.Arn", "IntegrationUri: !GetAtt Coordinatr.Arn")
            # ... and a bucket that may be made public, which checkov must flag in both.
            sam = broken / "sam" / "template.yaml"
            sam.write_text(sam.read_text().replace("BlockPublicPolicy: true", "BlockPublicPolicy: false"))
            tf = broken / "terraform" / "s3.tf"
            tf.write_text(tf.read_text().replace("block_public_policy     = true", "block_public_policy     = false"))
            failed += linters(args.tools, broken, expect_pass=False)
            shutil.rmtree(broken.parent)
    print("infra-check:", "pass" if failed == 0 else f"FAIL ({failed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
