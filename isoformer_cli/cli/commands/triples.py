"""``isoformer triples`` (placeholder until the builder lands)."""

import click


@click.command("triples")
def triples_command():
    """Build DNA/RNA/protein triples (not implemented yet)."""
    raise click.UsageError("not implemented yet")
