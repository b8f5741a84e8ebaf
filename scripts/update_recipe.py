"""Fill recipe/meta.yaml's version and sha256 from a built sdist.

Release steps:

    python -m build --sdist                       # dist/isoformer-X.Y.Z.tar.gz
    python scripts/update_recipe.py dist/isoformer-X.Y.Z.tar.gz
    python scripts/check_recipe.py --sdist dist/isoformer-X.Y.Z.tar.gz
    twine upload dist/isoformer-X.Y.Z.tar.gz      # upload exactly this file: the sha256 is its own

then copy recipe/meta.yaml to bioconda-recipes as recipes/isoformer/meta.yaml. The recipe's source
URL is PyPI's, built from the name and version; this script rewrites only the two
`{% set version = ... %}` and `{% set sha256 = ... %}` lines (and resets the build number to 0 when
the version changes).
"""

import argparse
import hashlib
import re

from recipe_tools import RECIPE, Sdist, fail


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def set_variable(text, variable, value):
    pattern = re.compile(r'({%\s*set\s+' + variable + r'\s*=\s*")([^"]*)("\s*%})')
    if len(pattern.findall(text)) != 1:
        fail(f'{RECIPE}: needs exactly one line `{{% set {variable} = "..." %}}` near the top')
    old = pattern.search(text).group(2)
    return pattern.sub(lambda m: m.group(1) + value + m.group(3), text), old


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sdist", help="the built sdist (.tar.gz) that will be uploaded to PyPI")
    args = parser.parse_args()

    sdist = Sdist(args.sdist)
    expected_file = f"{sdist.name}-{sdist.version}.tar.gz"
    if sdist.path.name != expected_file:
        fail(f"{sdist.path}: PyPI serves this sdist as {expected_file}; rename it or rebuild with `python -m build --sdist`")
    checksum = sha256_of(sdist.path)

    text = RECIPE.read_text()
    text, old_version = set_variable(text, "version", sdist.version)
    text, _ = set_variable(text, "sha256", checksum)
    if old_version != sdist.version:
        text, count = re.subn(r"(?m)^(\s*number:\s*)\d+", r"\g<1>0", text, count=1)
        if count != 1:
            fail(f"{RECIPE}: no `number:` line under build:")
    RECIPE.write_text(text)
    print(f"{RECIPE.relative_to(RECIPE.parent.parent)}: version {sdist.version}, sha256 {checksum}")


if __name__ == "__main__":
    main()
