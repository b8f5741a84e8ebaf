"""Write pip constraints that pin every requirement to its declared lower bound.

    python scripts/lower_bounds.py SDIST [--extra test] [-o constraints.txt]

For each requirement of the built sdist (install_requires, plus the named extras) the `>=X`
bound becomes `name==X`, so that `pip install -c constraints.txt 'SDIST[test]'` builds the oldest
environment setup.cfg allows; CI runs tests in it to keep the lower bounds true. A requirement
without a `>=` bound is an error: give it the oldest version a CI job exercises.
"""

import argparse
import sys

from recipe_tools import Sdist, fail


def lower_bounds(requirements, source):
    pins = {}
    for requirement in requirements:
        bounds = [s.version for s in requirement.specifier if s.operator == ">="]
        if len(bounds) != 1:
            fail(f"{source}: `{requirement}` needs exactly one `>=` lower bound in setup.cfg")
        pins[requirement.name] = f"{requirement.name}=={bounds[0]}"
    return pins


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sdist", help="the built sdist (.tar.gz)")
    parser.add_argument("--extra", action="append", default=[], help="also pin this extra's requirements")
    parser.add_argument("-o", "--output", help="write here (default: stdout)")
    args = parser.parse_args()

    sdist = Sdist(args.sdist)
    pins = lower_bounds(sdist.install_requires(), f"{sdist.path.name} install_requires")
    for extra in args.extra:
        requirements = sdist.extra_requires(extra)
        if not requirements:
            fail(f"{sdist.path.name}: no extra named {extra!r}")
        pins.update(lower_bounds(requirements, f"{sdist.path.name} extra {extra!r}"))
    text = "".join(line + "\n" for line in pins.values())
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
        print(f"{args.output}: {len(pins)} lower bounds: {' '.join(pins.values())}", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
