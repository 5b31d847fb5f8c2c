"""Checks the Nomad job files in deploy/nomad without Nomad (it cannot be installed here): each file parses as
HCL (python-hcl2, the parser Nomad's HCL is specified by, not ours), and every task runs a `ladder` subcommand
whose arguments the binary accepts (`ladder <args> --help` exits 0) with environment variables it reads (each
LADDER_*/AWS_* name appears in that subcommand's --help as `env: NAME`, or is one read outside the flags).
Every service check that asks /readyz or /healthz is on a port the task serves its metrics on.

usage: check_nomad.py LADDER_BINARY FILE...
"""
import re
import subprocess
import sys

import hcl2
from hcl2 import SerializationOptions

# Read by the services themselves, not flags.
OUTSIDE_FLAGS = {"LADDER_INSTANCE"}
OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False, preserve_heredocs=False
)


def blocks(node, kind):
    """The labelled blocks of one kind: [(label, body)]."""
    out = []
    for entry in node.get(kind, []):
        for label, body in entry.items():
            out.append((label, body))
    return out


def check(ladder, path):
    errors = []
    with open(path) as f:
        doc = hcl2.load(f, serialization_options=OPTIONS)
    tasks = 0
    for job_name, job in blocks(doc, "job"):
        for group_name, group in blocks(job, "group"):
            ports = [label for net in group.get("network", []) for label, _ in blocks(net, "port")]
            for task_name, task in blocks(group, "task"):
                tasks += 1
                where = f"{path}: {job_name}.{group_name}.{task_name}"
                config = (task.get("config") or [{}])[0]
                args = config.get("args") or []
                if not args:
                    errors.append(f"{where}: no args (a ladder subcommand)")
                    continue
                run = subprocess.run([ladder, *args, "--help"], capture_output=True, text=True)
                if run.returncode != 0:
                    errors.append(f"{where}: ladder {' '.join(args)} is refused: {run.stderr.strip()}")
                    continue
                help_text = run.stdout
                names = set()
                for env in task.get("env", []):
                    names.update(env.keys())
                for template in task.get("template", []):
                    if template.get("env"):
                        names.update(re.findall(r"([A-Z][A-Z0-9_]+)=", template.get("data", "")))
                for name in sorted(names):
                    if not (name.startswith("LADDER_") or name.startswith("AWS_")):
                        continue
                    if name not in OUTSIDE_FLAGS and not re.search(rf"env: {name}[=\]]", help_text):
                        errors.append(f"{where}: ladder {args[0]} does not read {name}")
                for label in config.get("ports", []):
                    if label not in ports:
                        errors.append(f"{where}: port {label} is not in the group's network")
                env = {k: v for e in task.get("env", []) for k, v in e.items()}
                for service in group.get("service", []):
                    for probe in service.get("check", []):
                        if probe.get("path") in ("/readyz", "/healthz"):
                            port = service.get("port")
                            if f"${{NOMAD_PORT_{port}}}" not in env.get("LADDER_METRICS_LISTEN", ""):
                                errors.append(f"{where}: {probe['path']} is checked on port {port}, "
                                              "which LADDER_METRICS_LISTEN does not serve")
    if tasks == 0:
        errors.append(f"{path}: no task")
    return tasks, errors


def main():
    ladder, files = sys.argv[1], sys.argv[2:]
    total, problems = 0, []
    for path in files:
        tasks, errors = check(ladder, path)
        total += tasks
        problems += errors
    for problem in problems:
        print(problem)
    print(f"{total} tasks in {len(files)} files, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
