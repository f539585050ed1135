"""The Helm chart's checks (scripts/packaging-check runs this in target/chart-venv).

Each check is one line of the summary; the exit status is non-zero when any failed.

  lint      Helm's own linter (strict: warnings fail) with the default values and with each
            example values file (charts/flotilla/ci/*-values.yaml)
  render    Helm's template engine, with the same values; the manifests are written to
            <out>/rendered/<case>.yaml, where tests/tests/chart_args.rs reads them to run
            every container's arguments through the binary's own parser
  validate  every rendered object against the Kubernetes API schemas (kubernetes-validate,
            strict: unknown fields fail) of the oldest and newest version the chart supports
  yamllint  the chart's plain YAML (Chart.yaml, values, examples; not the templates)
  schema    each charts/flotilla/bad-values/*.yaml is refused by values.schema.json, with
            an error containing the text of its `# expect:` line

Helm runs in-process through PyPI's helm-python-sdk (Helm's Go SDK behind a C ABI), which
renders offline; nothing here needs a cluster or the network.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import traceback

import helm_python as helm
import kubernetes_validate
import yaml

# The chart says kubeVersion >=1.27; validate against that and the newest schemas shipped.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
RELEASE = "flotilla"
NAMESPACE = "flotilla"


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, name: str, fn) -> None:
        try:
            detail = fn()
        except Exception as e:  # every failure is reported, none stops the others
            msg = str(e).strip() or traceback.format_exc()
            self.failed.append(name)
            print(f"FAIL  {name}\n      " + msg.replace("\n", "\n      "))
            return
        self.passed += 1
        print(f"ok    {name}" + (f"  ({detail})" if detail else ""))


def load_values(path: pathlib.Path | None) -> dict:
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text())
    return data or {}


def lint(chart: pathlib.Path, values: dict) -> str:
    report = helm.lint(str(chart), values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    # Chart.yaml's icon is a recommendation (severity 1, info): not a problem.
    errors = report.get("errors") or []
    if problems or errors:
        lines = [f"{m.get('path')}: {m.get('error')}".strip() for m in problems]
        lines += [str(e).strip() for e in errors]
        raise RuntimeError("\n".join(dict.fromkeys(lines)))
    return f"{report.get('total_charts_linted', 0)} chart"


def render(chart: pathlib.Path, values: dict) -> dict[str, str]:
    c = helm.Chart.load(str(chart))
    c.validate_schema(values)
    return c.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    out = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def write_rendered(out_dir: pathlib.Path, case: str, rendered: dict[str, str]) -> pathlib.Path:
    target = out_dir / "rendered" / f"{case}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for path, text in sorted(rendered.items()):
        if path.endswith((".yaml", ".yml")) and text.strip():
            parts.append(f"# Source: {path}\n{text.strip()}\n")
    target.write_text("---\n".join(parts))
    notes = rendered.get(f"{chart_name}/templates/NOTES.txt", "")
    (out_dir / "rendered" / f"{case}.NOTES.txt").write_text(notes)
    return target


def validate(docs: list[tuple[str, dict]]) -> str:
    errors = []
    for version in KUBE_VERSIONS:
        for path, doc in docs:
            kind = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = "/".join(str(p) for p in e.path)
                errors.append(f"{path}: {kind} (Kubernetes {version}) at {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{path}: {kind}: no schema in Kubernetes {version}: {e}")
    if errors:
        raise RuntimeError("\n".join(errors))
    return f"{len(docs)} objects x Kubernetes {', '.join(KUBE_VERSIONS)}"


def bad_values(chart: pathlib.Path, path: pathlib.Path) -> str:
    first = path.read_text().splitlines()[0]
    if not first.startswith("# expect:"):
        raise RuntimeError(f"{path.name} must start with `# expect: <part of the error>`")
    expected = first.removeprefix("# expect:").strip()
    values = load_values(path)
    try:
        render(chart, values)
    except helm.HelmError as e:
        message = str(e)
        if expected not in message:
            raise RuntimeError(f"refused, but the error does not say {expected!r}:\n{message}")
        return message.strip().splitlines()[-1].strip()
    raise RuntimeError(f"accepted, but must be refused with {expected!r}")


def yamllint(repo: pathlib.Path, files: list[pathlib.Path]) -> str:
    cmd = [sys.executable, "-m", "yamllint", "--strict", "-c", str(repo / ".yamllint.yaml")]
    proc = subprocess.run(cmd + [str(f) for f in files], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr).strip())
    return f"{len(files)} files"


chart_name = "flotilla"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=pathlib.Path, required=True)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args()
    repo = args.repo.resolve()
    args.out = args.out.resolve()
    chart = repo / "charts" / chart_name
    res = Results()

    cases: list[tuple[str, pathlib.Path | None]] = [("default", None)]
    for f in sorted((chart / "ci").glob("*-values.yaml")):
        cases.append((f.name.removesuffix("-values.yaml"), f))

    for case, vf in cases:
        label = "default values" if vf is None else f"ci/{vf.name}"
        values = load_values(vf)
        res.check(f"lint {label}", lambda: lint(chart, values))
        rendered: dict[str, str] = {}

        def do_render() -> str:
            rendered.update(render(chart, values))
            target = write_rendered(args.out, case, rendered)
            return f"{len(documents(rendered))} objects -> {target.relative_to(repo)}"

        res.check(f"render {label}", do_render)
        if rendered:
            res.check(f"validate {label}", lambda: validate(documents(rendered)))

    plain = [chart / "Chart.yaml", chart / "values.yaml"]
    plain += sorted((chart / "ci").glob("*.yaml"))
    plain += sorted((chart / "bad-values").glob("*.yaml"))
    res.check("yamllint chart values and examples", lambda: yamllint(repo, plain))

    for f in sorted((chart / "bad-values").glob("*.yaml")):
        res.check(f"schema refuses bad-values/{f.name}", lambda f=f: bad_values(chart, f))

    print(f"\nchart-check: {res.passed} passed, {len(res.failed)} failed")
    for name in res.failed:
        print(f"  failed: {name}")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
