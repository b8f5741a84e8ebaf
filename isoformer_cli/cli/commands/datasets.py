"""``isoformer datasets``: the official IsoFormer training data, pulled and converted into this tool's formats."""

import click


@click.group("datasets")
def datasets_command():
    """Download and convert labelled datasets (for isoformer models calibrate and evaluate).

    'isoformer datasets pull isoformer-gtex' gets the data the official IsoFormer was trained on (Hugging
    Face dataset InstaDeepAI/multi_omics_transcript_expression) and stores it, converted, in the dataset
    folder: triples tables (all transcripts and one per split), the labels as log(TPM+1) and split.tsv.
    """


@datasets_command.command("pull")
@click.argument("dataset")
@click.option("--name", metavar="NAME", help="Store the converted dataset under this name (default: DATASET).")
@click.option("--dataset-dir", type=click.Path(file_okay=False), envvar="ISOFORMER_DATASET_DIR", metavar="DIR",
              help="Folder of converted datasets [env: ISOFORMER_DATASET_DIR; default: datasets beside the model "
                   "folder, ~/.local/share/isoformer/datasets on Linux].")
@click.option("--source", type=click.Path(file_okay=False), metavar="DIR",
              help="Take the dataset's files from this local folder (the dataset's own layout: "
                   "transcript_expression/GTEx_final.csv) instead of downloading them.")
@click.option("--revision", metavar="REV",
              help="Branch, tag or commit of the dataset (un-standardized-values: labels as log(TPM+1)).")
@click.option("--genome", metavar="FASTA", help="With --annotation: build the RNA of each transcript to compare.")
@click.option("--annotation", metavar="GTF|GFF3",
              help="Compare the dataset's RNA with the RNA built from this annotation (reported as a share).")
@click.option("--force", is_flag=True, help="Replace an existing converted dataset of that name.")
def pull_command(dataset, name, dataset_dir, source, revision, genome, annotation, force):
    """Download DATASET (isoformer-gtex) and convert it into this tool's formats.

    Downloads go through huggingface_hub like 'isoformer models pull': resumable, checked against the
    hub's size and checksum, and honouring HF_ENDPOINT, HF_TOKEN, HF_HOME and HF_HUB_OFFLINE. The
    table's layout is checked (its columns, splits, strands, coordinates, sequences and labels); a
    layout this tool does not know is refused. Standardised labels (the default revision) are turned
    back into log(TPM+1) with normalization_values.csv. Writes DATASET_DIR/NAME/: triples.tsv,
    triples.train.tsv, triples.validation.tsv, triples.test.tsv, expression.tsv, split.tsv, dataset.json.
    """
    # Imported here, not at the top (start-up cost): the app module loads the genome readers.
    from isoformer_cli.app.datasets import DatasetPullConfig, run_dataset_pull
    from isoformer_cli.cli.options import usage_errors

    config = usage_errors(DatasetPullConfig, dataset=dataset, name=name, dataset_dir=dataset_dir, source=source,
                          revision=revision, genome=genome, annotation=annotation, force=force)
    run_dataset_pull(config)
