#!/usr/bin/env python3
"""`make infra-check`: the deployment templates checked offline, against themselves and
against the code.

No terraform binary can be installed here, so the Terraform stack is parsed with
python-hcl2 and every reference between resources, data sources, variables, locals and
outputs is resolved by hand; an unused variable is an error too (a setting that does
nothing). Both stacks are then compared with the code's contract, read from the sources:

  - environment variables: only names in squash_lambda::config::ENV_VARS, and the ones a
    deployment needs (DEPLOYED) on every function;
  - routes: exactly squash_lambda::service::ROUTES, none of them unauthenticated;
  - binaries: the [[bin]] names of functions/*/Cargo.toml, built for arm64 on
    provided.al2023 with handler bootstrap;
  - worker names: SQUASH_WORKER_FUNCTION with {i} = 0..W-1 is each worker's name.

The SAM template's worker slots must be Worker0..WorkerN-1, each WorkerN created under
condition HasWorkerN, with WorkerCount allowing exactly 1..N.

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
        "routes": set(rust_strings(root / "functions/squash-lambda/src/service.rs", "ROUTES")),
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
            want = f"HasWorker{n}" if n else None
            if f.get("Condition") != want:
                problems.add(path.name, f"{name} must have Condition {want} (exists when WorkerCount > {n})")
    for name, r in resources.items():
        m = re.fullmatch(r"WorkerLogGroup(\d+)", name)
        want = f"HasWorker{m.group(1)}" if m and m.group(1) != "0" else None
        if m and r.get("Condition") != want:
            problems.add(path.name, f"{name} must have Condition {want}, as Worker{m.group(1)} does")
    for n in range(1, len(slots)):
        if f"HasWorker{n}" not in t.get("Conditions", {}):
            problems.add(path.name, f"condition HasWorker{n} is missing")
    allowed = [int(v) for v in t.get("Parameters", {}).get("WorkerCount", {}).get("AllowedValues", [])]
    if sorted(slots) != list(range(len(slots))) or not slots:
        problems.add(path.name, f"worker slots {sorted(slots)} must be Worker0..WorkerN-1")
    elif allowed != list(range(1, len(slots) + 1)):
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
    ("terraform/lambda.tf", "aws_iam_role.worker.arn", "aws_iam_role.workers.arn", "aws_iam_role.workers is not declared"),
    ("terraform/lambda.tf", "squash-worker/bootstrap.zip", "squash-wrker/bootstrap.zip", "target/lambda/squash-worker/bootstrap.zip"),
    ("terraform/api.tf", '"GET /v1/indexes/{index}"', '"GET /v1/index/{index}"', "local.routes"),
    ("terraform/api.tf", "authorization_type = var.authorization", 'authorization_type = "NONE"', "must use var.authorization"),
    ("terraform/variables.tf", 'default     = "AWS_IAM"', 'default     = "NONE"', "authorization must default"),
    ("terraform/s3.tf", "resource \"aws_s3_bucket_policy\" \"indexes\" {", "resource \"aws_s3_bucket_policy\" \"indexes\" {{", "does not parse"),
    ("terraform/variables.tf", 'variable "region" {', 'variable "region_unused" {\n  default = 1\n}\n\nvariable "region" {', "region_unused is declared but never used"),
    ("sam/template.yaml", "Binary: squash-worker", "Binary: squash-wrker", "builds 'squash-wrker'"),
    ("sam/template.yaml", 'RouteKey: "GET /v1/indexes/{index}"', 'RouteKey: "GET /v1/indexes"', "routes"),
    ("sam/template.yaml", "SQUASH_MANIFEST_TTL_S: !Ref ManifestTtlS", "SQUASH_MANIFEST_TTL: !Ref ManifestTtlS", "sets SQUASH_MANIFEST_TTL,"),
    ("sam/template.yaml", 'FunctionName: !Sub "${AWS::StackName}-worker-2"', 'FunctionName: !Sub "${AWS::StackName}-worker-3"', "is not SQUASH_WORKER_FUNCTION"),
    ("sam/template.yaml", "    Condition: HasWorker5\n", "", "must have Condition HasWorker5"),
    ("sam/template.yaml", "  Worker5:\n    Type: AWS::Serverless::Function\n    Condition: HasWorker5\n", "  Worker5:\n    Type: AWS::Serverless::Function\n", "Worker5 must have Condition HasWorker5"),
    ("sam/template.yaml", "AllowedValues: [1, 2, 3, 4, 5, 6, 7, 8]", "AllowedValues: [1, 2, 3, 4, 5, 6, 7, 8, 9]", "the template has 8 worker slots"),
    ("sam/template.yaml", "CodeUri: ../../functions/worker", "CodeUri: ../../functions/coordinator", "CodeUri must be the crate"),
    ("sam/template.yaml", "Runtime: provided.al2023", "Runtime: provided.al2", "Runtime must be provided.al2023"),
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
