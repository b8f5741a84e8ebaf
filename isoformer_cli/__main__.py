"""Entry point for ``python -m isoformer_cli`` (what ``torchrun -m isoformer_cli`` runs)."""

from isoformer_cli.cli.main import main

if __name__ == "__main__":
    main()
