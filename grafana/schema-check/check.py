#!/usr/bin/env python3
"""Check Grafana dashboards against Grafana's published schema: the TypeScript types of @grafana/schema.

    npm ci --prefix grafana/schema-check          # once: @grafana/schema and typescript, as pinned here
    python3 grafana/schema-check/check.py         # grafana/dashboards/*.json, or the files named

Each dashboard becomes a TypeScript module in which every panel is an object literal passed to the function
for its panel type in kinds.ts, and `tsc --noEmit` type-checks them: a misspelt field, a value of the wrong
type or outside an enum, a missing required field or a panel type with no schema fails with tsc's message
(file and line name the dashboard and the place). Exit status: 0 all match, 1 a dashboard does not, 2 the
tools are not installed.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TSC = os.path.join(HERE, "node_modules", "typescript", "bin", "tsc")
DASHBOARDS = os.path.join(os.path.dirname(HERE), "dashboards")


def typescript_module(dashboard: dict) -> str:
    """The dashboard as an expression of kinds.ts's types; the panels one call each, in their order."""
    dashboard = dict(dashboard)
    panels = dashboard.pop("panels", [])
    calls = [f"panel[{json.dumps(p.get('type'))}]({json.dumps(p, indent=2, ensure_ascii=False)})" for p in panels]
    body = json.dumps(dashboard, indent=2, ensure_ascii=False)
    assert body.endswith("\n}")
    return ("import { dashboard, panel } from './kinds';\n\nexport default dashboard(" + body[:-2]
            + ',\n"panels": [\n' + ",\n".join(calls) + "\n]\n});\n")


def check(paths) -> int:
    if not os.path.exists(TSC):
        print(f"{os.path.relpath(HERE)}: the TypeScript compiler and @grafana/schema are not installed: "
              f"run npm ci --prefix {os.path.relpath(HERE)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dashboard-schema-") as tmp:
        os.symlink(os.path.join(HERE, "node_modules"), os.path.join(tmp, "node_modules"))
        for name in ("kinds.ts", "tsconfig.json"):
            shutil.copy(os.path.join(HERE, name), tmp)
        for path in paths:
            with open(path, encoding="utf-8") as f:
                module = typescript_module(json.load(f))
            stem = os.path.splitext(os.path.basename(path))[0]
            with open(os.path.join(tmp, stem + ".ts"), "w", encoding="utf-8") as f:
                f.write(module)
        result = subprocess.run(["node", TSC, "-p", tmp, "--pretty", "false"], capture_output=True, text=True)
    if result.returncode:
        print(result.stdout + result.stderr, end="", file=sys.stderr)
        print(f"dashboards do not match @grafana/schema ({len(paths)} checked)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:]) or sorted(glob.glob(os.path.join(DASHBOARDS, "*.json")))
    return check(paths)


if __name__ == "__main__":
    sys.exit(main())
