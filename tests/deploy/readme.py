"""deploy/README.md as an operator runs it: the files its commands name exist, the Secrets it
creates are the ones (and keys) the values read, every Sentry install and upgrade carries the
same chart version, values and post-renderer, and what it says the Yandex Cloud example
creates is what the example creates."""

import re
import shlex

import hcl2
import yaml

from pycheck import check


def shell_commands(readme):
    """The commands of the README's sh blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def words(command):
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def check_paths(root, commands):
    for command in commands:
        for word in words(command):
            for token in re.split(r"[=;()]", word):
                token = token.removeprefix("./")
                if re.match(r"^(deploy|helm)/[\w./-]+$", token) and "…" not in token:
                    check((root / token).exists(), f"deploy/README.md names {token}, which does not exist: {command}")


def example_secrets(deploy):
    docs = [d for d in yaml.safe_load_all((deploy / "secrets/secrets.example.yaml").read_text()) if d]
    return {(d["metadata"]["namespace"], d["metadata"]["name"]): set(d.get("stringData") or d.get("data"))
            for d in docs}


def check_secret_commands(deploy, commands):
    secrets = example_secrets(deploy)
    created = set()
    for command in commands:
        argv = words(command)
        if argv[:1] != ["kubectl"] or "create" not in argv:
            continue
        namespace = argv[argv.index("-n") + 1] if "-n" in argv else "default"
        kind = argv[argv.index("create") + 1]
        if kind not in ("secret", "configmap"):
            continue
        name = argv[argv.index("create") + (3 if kind == "secret" else 2)]
        keys = set()
        for arg in argv:
            if arg.startswith(("--from-literal=", "--from-file=")):
                source = arg.split("=", 1)[1]
                # KEY=VALUE, KEY=PATH, or a bare PATH whose file name is the key
                keys.add(source.split("=", 1)[0] if "=" in source else source.rsplit("/", 1)[-1])
        created.add((namespace, name))
        check((namespace, name) in secrets,
              f"deploy/README.md creates {kind} {namespace}/{name}, which deploy/secrets/secrets.example.yaml lacks")
        if (namespace, name) in secrets:
            check(keys == secrets[(namespace, name)],
                  f"deploy/README.md creates {namespace}/{name} with keys {sorted(keys)}; the values read "
                  f"{sorted(secrets[(namespace, name)])}")
    check(set(secrets) <= created, f"deploy/README.md never creates {sorted(set(secrets) - created)}")


def check_helm_commands(facts, commands):
    version = facts["chart"]["version"]
    releases = [c for c in commands if re.match(r"helm (install|upgrade) sentry sentry/sentry", c)]
    check(len(releases) >= 3, f"deploy/README.md installs and upgrades Sentry: {releases}")
    for command in releases:
        for part in (f"--version {version}", "-n sentry", '-f "$VALUES"', '--post-renderer "$POST_RENDERER"'):
            check(part in command, f"deploy/README.md: `{command}` lacks {part}")
    renders = [c for c in commands if c.startswith("helm template sentry sentry/sentry")]
    check(any(f"--version {version}" in c and '-f "$VALUES"' in c and "python3 deploy/check-render.py" in c
              for c in renders), "deploy/README.md pipes the chart's render with $VALUES into deploy/check-render.py")


def one(value):
    """python-hcl2 gives an attribute's value either as is or in a one-item list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def check_yandex_example(deploy, readme):
    example = deploy / "terraform/examples/yandex-cloud"
    main = hcl2.loads((example / "main.tf").read_text())
    secrets = {k for block in main["locals"] for k in block.get("secrets", [{}])[0]}
    said = re.search(r"The Yandex Cloud example has created (.*?); skip those", readme, re.S)
    named = set(re.findall(r"`([a-z0-9-]+)`", said.group(1))) if said else set()
    check(named == secrets | {"sentry-ca-bundle"},
          f"deploy/README.md says the Yandex example creates {sorted(named)}; it creates "
          f"{sorted(secrets | {'sentry-ca-bundle'})}")
    config_map = next(r["kubernetes_config_map_v1"]["ca_bundle"] for r in main["resource"] if "kubernetes_config_map_v1" in r)
    check(one(config_map["metadata"][0]["name"]) == "sentry-ca-bundle" and "ca-bundle.crt" in one(config_map["data"]),
          "the Yandex example's ConfigMap is sentry-ca-bundle with key ca-bundle.crt")
    url = one(next(d["http"]["yandex_ca"]["url"] for d in main["data"] if "http" in d))
    check(f"curl -fsSL {url}" in readme, f"deploy/README.md fetches Yandex's CA from {url}, as the example does")
    # The example feeds the module only variables it declares, and every one without a default.
    module = deploy / "terraform/sentry-values"
    declared = {}
    for tf in module.glob("*.tf"):
        for block in hcl2.loads(tf.read_text()).get("variable", []):
            declared.update(block)
    call = main["module"][0]["sentry_values"]
    given = {k for k in call if k not in ("source",) and not k.startswith("__")}
    check(given <= set(declared), f"the Yandex example passes unknown module variables {sorted(given - set(declared))}")
    required = {name for name, spec in declared.items() if "default" not in spec}
    check(required <= given, f"the Yandex example leaves required module variables unset: {sorted(required - given)}")
    variables = {}
    for block in hcl2.loads((example / "variables.tf").read_text()).get("variable", []):
        variables.update(block)
    needed = {name for name, spec in variables.items() if "default" not in spec}
    command = re.search(r"terraform apply(.*?)\)", readme, re.S)
    passed = set(re.findall(r"-var (\w+)=", command.group(1))) if command else set()
    check(needed <= passed, f"deploy/README.md's terraform apply of the Yandex example misses {sorted(needed - passed)}")


def check_readme(root, deploy, facts):
    print("deploy/README.md, as an operator runs it")
    readme = (deploy / "README.md").read_text()
    commands = shell_commands(readme)
    check(len(commands) > 30, f"found the README's commands: {len(commands)}")
    check_paths(root, commands)
    check_secret_commands(deploy, commands)
    check_helm_commands(facts, commands)
    check_yandex_example(deploy, readme)
    values = re.findall(r"^VALUES=(\S+)", readme, re.M)
    for path in values:
        check(path.startswith("$PWD/") or (root / path).exists(), f"deploy/README.md sets VALUES to {path}, which does not exist")
    check({"deploy/sentry/values.yaml", "deploy/sentry/values-nodeport.yaml",
           "deploy/sentry/values-clickhouse-operator.yaml"} <= set(values), "deploy/README.md names each values file")
