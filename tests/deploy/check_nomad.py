"""Checks the Nomad job files in deploy/nomad without Nomad (it cannot be installed here): each file parses as
HCL (python-hcl2, an independent HCL2 parser; it does not know Nomad's schema of blocks), and every task runs a `ladder` subcommand
whose arguments the binary accepts (`ladder <args> --help` exits 0) with environment variables it reads (each
LADDER_*/AWS_* name appears in that subcommand's --help as `env: NAME`, or is one read outside the flags).
Every service check that asks /readyz or /healthz is on a port the task serves its metrics on. The examples
for what ladder runs on: the NATS server's configuration (its template, with the Nomad template actions left
out) is accepted by `nats-server -t`, Garage's parses as TOML with the settings a node needs, and the init
script parses as sh (`sh -n`). Every port a task or service names is in its group's network.

usage: check_nomad.py LADDER_BINARY FILE...
"""
import re
import subprocess
import sys
import tempfile
import tomllib

import hcl2
from hcl2 import SerializationOptions

# Read by the services themselves, not flags.
OUTSIDE_FLAGS = {"LADDER_INSTANCE", "LADDER_NATS_REPLICAS"}
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


def render(data):
    """A template's text with Nomad's template actions left out: ranges dropped, values replaced by `x`.
    (python-hcl2 gives a heredoc's quotes escaped, as in a quoted string.)"""
    data = data.replace('\\"', '"')
    # HCL interpolations of job variables: the list of routes, or any value.
    data = re.sub(r"\$\{jsonencode\(var\.routes\)\}", '["nats-route://192.0.2.1:6222", "nats-route://192.0.2.2:6222"]', data)
    data = re.sub(r"\$\{[^}]*\}", "x", data)
    data = re.sub(r'\{\{\s*env "NOMAD_ADDR_\w+"\s*\}\}', "192.0.2.1:4222", data)
    data = re.sub(r"\{\{-?\s*range.*?\{\{-?\s*end\s*-?\}\}", "", data, flags=re.S)
    data = re.sub(r"\{\{-?\s*(with|end)\b.*?\}\}", "", data, flags=re.S)
    return re.sub(r"\{\{.*?\}\}", "x", data, flags=re.S)


def check_nats(where, task):
    errors = []
    templates = [t for t in task.get("template", []) if t.get("destination", "").endswith(".conf")]
    if not templates:
        return [f"{where}: no NATS configuration template"]
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write(render(templates[0]["data"]))
        conf.flush()
        run = subprocess.run(["nats-server", "-c", conf.name, "-t"], capture_output=True, text=True)
        if run.returncode != 0:
            errors.append(f"{where}: nats-server refuses the configuration: {(run.stdout + run.stderr).strip()}")
    text = templates[0]["data"]
    for needed in ("jetstream", "cluster", "routes", "server_name", "client_advertise", "advertise"):
        if needed not in text:
            errors.append(f"{where}: the NATS configuration has no {needed}")
    return errors


def check_garage(where, task, server):
    errors = []
    templates = [t for t in task.get("template", []) if t.get("destination", "").endswith(".toml")]
    if not templates:
        return [f"{where}: no Garage configuration template"]
    try:
        config = tomllib.loads(render(templates[0]["data"]))
    except tomllib.TOMLDecodeError as e:
        return [f"{where}: the Garage configuration is not TOML: {e}"]
    needed = ["metadata_dir", "data_dir", "replication_factor", "rpc_bind_addr", "rpc_secret"]
    errors += [f"{where}: the Garage configuration has no {key}" for key in needed if key not in config]
    if server:
        for table in ("s3_api", "admin"):
            if "api_bind_addr" not in config.get(table, {}):
                errors.append(f"{where}: the Garage configuration has no [{table}] api_bind_addr")
    for script in [t for t in task.get("template", []) if t.get("destination", "").endswith(".sh")]:
        run = subprocess.run(["sh", "-n"], input=render(script["data"]), capture_output=True, text=True)
        if run.returncode != 0:
            errors.append(f"{where}: {script['destination']} does not parse as sh: {run.stderr.strip()}")
    return errors


def check(ladder, path):
    errors = []
    with open(path) as f:
        doc = hcl2.load(f, serialization_options=OPTIONS)
    tasks = 0
    for job_name, job in blocks(doc, "job"):
        for group_name, group in blocks(job, "group"):
            ports = [label for net in group.get("network", []) for label, _ in blocks(net, "port")]
            for service in group.get("service", []):
                named = [service.get("port")] + [probe.get("port") for probe in service.get("check", [])]
                for port in filter(None, named):
                    if port not in ports:
                        errors.append(f"{path}: {job_name}.{group_name}: service port {port} is not in the network")
            for task_name, task in blocks(group, "task"):
                tasks += 1
                where = f"{path}: {job_name}.{group_name}.{task_name}"
                config = (task.get("config") or [{}])[0]
                for label in config.get("ports", []):
                    if label not in ports:
                        errors.append(f"{where}: port {label} is not in the group's network")
                if job_name == "nats":
                    errors += check_nats(where, task)
                    continue
                if job_name == "garage":
                    errors += check_garage(where, task, server=task_name == "garage")
                    continue
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
