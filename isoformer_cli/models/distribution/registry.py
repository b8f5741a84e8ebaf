"""The models ``isoformer models`` knows: where their files live, what is known about them, their licences.

Three entries (:data:`KNOWN_MODELS`):

* ``official``: the published IsoFormer weights, repository ``InstaDeepAI/isoformer``; ``pull`` downloads
  ``config.json``, the tokenizer files and ``pytorch_model.bin`` and converts them (``isoformer convert``).
* ``encoders``: the three pretrained encoders IsoFormer starts from (Enformer, Nucleotide Transformer v2 250M,
  ESM-2 150M); ``pull`` downloads each repository's configuration and weights and combines them with
  ``isoformer init`` (a new aggregation and head: a starting point for ``isoformer finetune``, not a predictor).
* ``demo``: the tiny random checkpoint bundled with the package (nothing to download).

What is known and what is not. A revision is pinned only where its full commit id is known, a size and a
SHA-256 only where they were read from the repository itself; everything else is ``None`` (unknown) and is
never invented. ``pull`` then resolves the branch to the commit the hub serves, checks every file against
the hub's own size and checksum (the SHA-256 of a large file, the git blob id of a small one) and records
what it got in the checkpoint's manifest, so ``isoformer models verify`` can re-check it later.

Unknown today (left ``None`` below): the commit ids of all four repositories (only abbreviated ids have
been seen), the exact byte sizes and SHA-256 of every weight file. Approximate sizes are given for the
listing only (``approximate_size``).
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RepoFile:
    """One file of a repository.

    Attributes:
        name: path in the repository.
        size: exact size in bytes, or None when unknown.
        sha256: SHA-256 (64 hex digits), or None when unknown.
        alternatives: other names that may hold the same content, tried in order when ``name`` is absent
            (weights shipped as ``model.safetensors`` or ``pytorch_model.bin``).
        optional: a missing optional file is not an error.
    """

    name: str
    size: int | None = None
    sha256: str | None = None
    alternatives: tuple = ()
    optional: bool = False

    @property
    def candidates(self):
        """``name`` then the alternatives."""
        return (self.name, *self.alternatives)


@dataclass(frozen=True)
class Repository:
    """A Hugging Face model repository and the files ``pull`` takes from it.

    Attributes:
        repo_id: ``owner/name`` on the hub.
        revision: a full commit id when pinned, None when unknown (``pull`` then follows ``default_branch``
            and records the commit it got).
        role: what the files are for (``"official"``, or the encoder option of ``isoformer init``:
            ``"dna_encoder"``, ``"rna_encoder"``, ``"protein_encoder"``).
        licence: the licence of the weights, as stated by the repository.
        approximate_size: for listings, e.g. ``"2.8 GB"``.
        repo_type: ``"model"`` or ``"dataset"`` (the hub keeps them apart: ``/datasets/OWNER/NAME``).
    """

    repo_id: str
    role: str
    files: tuple
    licence: str
    approximate_size: str
    revision: str | None = None
    default_branch: str = "main"
    repo_type: str = "model"

    @property
    def folder_name(self):
        """Folder name of this repository's downloads (``owner__name``)."""
        return self.repo_id.replace("/", "__")


@dataclass(frozen=True)
class KnownModel:
    """An entry of ``isoformer models list``.

    Attributes:
        name: what ``pull`` takes and the default checkpoint name.
        kind: ``"convert"`` (official release), ``"init"`` (pretrained encoders), ``"bundled"`` (demo).
        description: one line.
        licence: what the licence allows, in one line.
        repositories: where the files come from.
    """

    name: str
    kind: str
    description: str
    licence: str
    repositories: tuple = field(default_factory=tuple)

    @property
    def pullable(self):
        return self.kind != "bundled"


OFFICIAL_REPOSITORY = Repository(
    repo_id="InstaDeepAI/isoformer",
    role="official",
    files=(
        RepoFile("config.json"),
        # The tokenizer files: checked against this tool's own tokenizers (same vocabularies, same order).
        RepoFile("dna_vocab_list.txt", size=15, optional=True),
        RepoFile("rna_vocab_list.txt", optional=True),
        RepoFile("protein_vocab_list.txt", size=99, optional=True),
        RepoFile("tokenizer_config.json", optional=True),
        RepoFile("special_tokens_map.json", optional=True),
        RepoFile("pytorch_model.bin"),
    ),
    licence="none stated (the repository's licence was removed; treat as non-commercial research use)",
    approximate_size="2.8 GB",
)

ENFORMER_REPOSITORY = Repository(
    repo_id="EleutherAI/enformer-official-rough",
    role="dna_encoder",
    files=(RepoFile("config.json"), RepoFile("pytorch_model.bin", alternatives=("model.safetensors",))),
    licence="Apache-2.0",
    approximate_size="1 GB",
)

NT_REPOSITORY = Repository(
    repo_id="InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",
    role="rna_encoder",
    files=(RepoFile("config.json"), RepoFile("model.safetensors", alternatives=("pytorch_model.bin",))),
    licence="CC BY-NC-SA 4.0",
    approximate_size="0.94 GB",
)

ESM2_REPOSITORY = Repository(
    repo_id="facebook/esm2_t30_150M_UR50D",
    role="protein_encoder",
    files=(RepoFile("config.json"), RepoFile("model.safetensors", alternatives=("pytorch_model.bin",))),
    licence="MIT",
    approximate_size="0.6 GB",
)

KNOWN_MODELS = {
    "official": KnownModel(
        name="official",
        kind="convert",
        description="the published IsoFormer (Enformer + NT-v2 250M + ESM-2 150M, 30 GTEx tissues), converted",
        licence="no licence stated on the weights; they include NT-v2 weights (CC BY-NC-SA 4.0): "
        "non-commercial research use",
        repositories=(OFFICIAL_REPOSITORY,),
    ),
    "encoders": KnownModel(
        name="encoders",
        kind="init",
        description="pretrained Enformer, NT-v2 250M and ESM-2 150M with a new, untrained aggregation and head "
        "(a starting point for isoformer finetune)",
        licence="CC BY-NC-SA 4.0 (NT-v2: non-commercial, share alike) with Apache-2.0 (Enformer) and MIT (ESM-2)",
        repositories=(ENFORMER_REPOSITORY, NT_REPOSITORY, ESM2_REPOSITORY),
    ),
    "demo": KnownModel(
        name="demo",
        kind="bundled",
        description="tiny architecture with random weights, bundled with isoformer (runs offline; its numbers "
        "are not biological predictions)",
        licence="MIT (part of isoformer)",
    ),
}


def known_model(name):
    """The :class:`KnownModel` called ``name``, or None."""
    return KNOWN_MODELS.get(name)


#: The folder inside the official dataset that holds the transcript-expression task.
OFFICIAL_DATASET_TABLE = "transcript_expression/GTEx_final.csv"
OFFICIAL_DATASET_NORMALIZATION = "transcript_expression/normalization_values.csv"


@dataclass(frozen=True)
class KnownDataset:
    """An entry of ``isoformer datasets pull``: ``name`` (the pull argument and the default folder name),
    ``description``, ``licence`` and the ``repository`` (repo type dataset) with the files it takes."""

    name: str
    description: str
    licence: str
    repository: Repository


KNOWN_DATASETS = {
    "isoformer-gtex": KnownDataset(
        name="isoformer-gtex",
        description="the labels the official IsoFormer was trained on: GTEx v8 transcripts, log(TPM+1) averaged "
        "over donors in 30 tissues, with their gene-level train / validation / test split",
        licence="none stated on the dataset (GTEx v8 TPMs are open access)",
        repository=Repository(
            repo_id="InstaDeepAI/multi_omics_transcript_expression",
            role="dataset",
            repo_type="dataset",
            files=(RepoFile(OFFICIAL_DATASET_TABLE), RepoFile(OFFICIAL_DATASET_NORMALIZATION, optional=True)),
            licence="none stated",
            approximate_size="650 MB",
        ),
    ),
}
